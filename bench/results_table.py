"""Prints the README's paper-vs-gcj tables from the committed pretrained/*/report/report.json.

    .venv/bin/python bench/results_table.py > bench/results/fashion_mnist_table.md
    .venv/bin/python bench/results_table.py glow > bench/results/glow_digits_table.md
    .venv/bin/python bench/results_table.py ibinn > bench/results/ibinn_digits_table.md
    .venv/bin/python bench/results_table.py fashion_ood > bench/results/fashion_mnist_ood_table.md
    .venv/bin/python bench/results_table.py robustness > bench/results/robustness_table.md
    .venv/bin/python bench/results_table.py worst_case > bench/results/worst_case_table.md
    .venv/bin/python bench/results_table.py cross_family > bench/results/cross_family_table.md
    .venv/bin/python bench/results_table.py ablations > bench/results/ablations_table.md
"""
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import jax  # noqa: E402

import gcj  # noqa: E402
from gcj import classifier, data  # noqa: E402
from gcj.metric_writer import records  # noqa: E402
from gcj.suites.adversarial import ENSEMBLES  # noqa: E402

# paper 000 (Tab. 2, 4, 6) and paper 003 targets; None where the paper gives no number
PAPER = {
    "disc_fashion_mnist": dict(acc=94.25, epochs=100),
    "sdim_fashion_mnist": dict(acc=94.58, acc_left_p1=96.45, rej_p1=4.63, acc_left_p2=96.94,
                               rej_p2=6.60, det_p1=99.36, det_p2=99.64, epochs=100),
    "sdim_logit_fashion_mnist": dict(acc="base − 0.15 (CIFAR-10)", epochs=20),
}


def cell(v):
    return "—" if v is None else (v if isinstance(v, str) else f"{v:.2f}")


def main():
    rows = []
    for name, paper in PAPER.items():
        path = os.path.join(ROOT, "pretrained", name)
        if not os.path.exists(os.path.join(path, "report", "report.json")):
            continue
        r = json.load(open(os.path.join(path, "report", "report.json")))
        epochs = [e for e in records(path) if "epoch_seconds" in e]
        ood = r["ood"]["mnist5k"]
        ours = dict(acc=100 * r["clean"]["accuracy"],
                    acc_left_p1=100 * r["rejection"]["p1"]["acc_left"],
                    rej_p1=100 * r["rejection"]["p1"]["rejection_rate"],
                    acc_left_p2=100 * r["rejection"]["p2"]["acc_left"],
                    rej_p2=100 * r["rejection"]["p2"]["rejection_rate"],
                    det_p1=100 * ood["detection_rate"]["p1"], det_p2=100 * ood["detection_rate"]["p2"],
                    auroc=100 * ood["auroc"], ece=100 * r["calibration"]["ece"])
        sec = sorted(e["epoch_seconds"] for e in epochs)[len(epochs) // 2]
        rows.append((name, paper, ours, len(epochs), sec))
    keys = ["acc", "acc_left_p1", "rej_p1", "acc_left_p2", "rej_p2", "det_p1", "det_p2"]
    print("| model (Fashion-MNIST, out-set MNIST-5k) | | clean acc % | acc-left p1 % | rejected p1 % "
          "| acc-left p2 % | rejected p2 % | OOD detection p1 % | OOD detection p2 % | OOD AUROC % "
          "| ECE % | epochs | median s/epoch |")
    print("|---|---|" + "---|" * 11)
    for name, paper, ours, n, sec in rows:
        print(f"| {name} | paper | " + " | ".join(cell(paper.get(k)) for k in keys) + f" | — | — | {paper['epochs']} | — |")
        print("| | gcj | " + " | ".join(cell(ours[k]) for k in keys)
              + f" | {ours['auroc']:.2f} | {ours['ece']:.2f} | {n} | {sec:.0f} |")


# paper 001 Tab. 1 (MNIST padded to 32x32; gcj: 8x8 digits, so bits/dim are not comparable)
GLOW_PAPER = {"base": (96.9, 0.95), "reweighted": (99.0, 1.10), "split": (99.3, 1.00)}


def glow():
    print("| Glow variant | paper MNIST acc % | paper MNIST bits/dim | gcj digits acc % | gcj bits/dim "
          "| rejected p1 % | acc-left p1 % | OOD AUROC % (Fashion-MNIST 8×8) | ECE % | epochs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for v, (acc, bpd) in GLOW_PAPER.items():
        path = os.path.join(ROOT, "pretrained", f"glow_digits_{v}")
        r = json.load(open(os.path.join(path, "report", "report.json")))
        cfg = json.load(open(os.path.join(path, "config.json")))
        ood = r["ood"]["fashion_mnist"]
        print(f"| {v} | {acc} | {bpd} | {100 * r['clean']['accuracy']:.2f} "
              f"| {r['clean']['bits_per_dim']:.3f} | {100 * r['rejection']['p1']['rejection_rate']:.2f} "
              f"| {100 * r['rejection']['p1']['acc_left']:.2f} | {100 * ood['log_marginal']['auroc']:.2f} "
              f"| {100 * r['calibration']['ece']:.2f} | {cfg['num_epochs']} |")


# paper 002 Tab. 3 (ImageNet, 10-crop accuracy; gcj: 8x8 digits, so only the trend compares)
IBINN_PAPER = {"1": (-1.90, 8.52, 4.34, 67.30), "4": (1.14, 8.14, 8.72, 73.69),
               "16": (7.17, 8.06, 17.43, 75.54), "inf": (27.68, 7.99, 47.01, 76.27)}


def ibinn():
    """The IB-INN beta trade-off: test L_X and L_Y (the training definitions, with the model's
    label smoothing) recomputed on the test set, bits/dim and the rest from the reports."""
    print("| β | paper L_X | paper L_Y | paper bits/dim | paper acc % | gcj L_X | gcj L_Y | gcj bits/dim "
          "| gcj acc % | rejected p1 % | OOD AUROC % log p(x) / typicality / two-tailed | ECE % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for beta, paper in IBINN_PAPER.items():
        path = os.path.join(ROOT, "pretrained", f"ibinn_digits_beta{beta}")
        r = json.load(open(os.path.join(path, "report", "report.json")))
        clf = gcj.load(path)
        test = data.load(clf.config.data.name, "test", clf.config.data.data_dir)
        x = data.to_float(test.images)
        z, logdet = clf.forward(x, jax.random.key(0))
        module = classifier.build_module(clf.config)
        l_x, l_y, _ = module.apply(clf.params, z, logdet, test.labels, method="ib_losses")
        ood = r["ood"]["fashion_mnist"]["log_marginal"]
        tests = r["ood"]["fashion_mnist"]["tests_auroc"]
        print(f"| {beta} | " + " | ".join(f"{v}" for v in paper)
              + f" | {float(l_x):.3f} | {float(l_y):.3f} | {r['clean']['bits_per_dim']:.3f} "
              f"| {100 * r['clean']['accuracy']:.2f} | {100 * r['rejection']['p1']['rejection_rate']:.2f} "
              f"| {100 * ood['auroc']:.2f} / {100 * tests['typicality']:.2f} / {100 * tests['two_tailed']:.2f} "
              f"| {100 * r['calibration']['ece']:.2f} |")


def fashion_ood():
    """Fashion-MNIST -> MNIST-5k (all 5000) with paper 002's three tests on log p(x), per model."""
    print("| model (Fashion-MNIST) | test acc % | bits/dim | rejected p1 % | acc-left p1 % "
          "| detected p1 % | AUROC % log p(x): one-tailed | typicality | two-tailed | ECE % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in ("ibinn_fashion_mnist_beta1", "ibinn_fashion_mnist_betainf", "sdim_fashion_mnist"):
        r = json.load(open(os.path.join(ROOT, "pretrained", name, "report", "report.json")))
        ood = r["ood"]["mnist5k"]
        t = ood["tests_auroc"]
        bpd = r["clean"].get("bits_per_dim")
        print(f"| {name} | {100 * r['clean']['accuracy']:.2f} | {'—' if bpd is None else f'{bpd:.3f}'} "
              f"| {100 * r['rejection']['p1']['rejection_rate']:.2f} "
              f"| {100 * r['rejection']['p1']['acc_left']:.2f} | {100 * ood['detection_rate']['p1']:.2f} "
              f"| {100 * t['one_tailed']:.2f} | {100 * t['typicality']:.2f} | {100 * t['two_tailed']:.2f} "
              f"| {100 * r['calibration']['ece']:.2f} |")


ROBUSTNESS = {
    "8×8 digits (100 attacked test images, 10 black-box; all 360 test images corrupted)": [
        "glow_digits_base", "glow_digits_reweighted", "glow_digits_split", "ibinn_digits_beta1",
        "ibinn_digits_beta4", "ibinn_digits_beta16", "ibinn_digits_betainf"],
    "Fashion-MNIST (50 attacked test images, 5 black-box; first 300 test images corrupted)": [
        "disc_fashion_mnist", "sdim_fashion_mnist", "sdim_logit_fashion_mnist",
        "ibinn_fashion_mnist_beta1", "ibinn_fashion_mnist_betainf", "glow_fashion_mnist_base",
        "glow_fashion_mnist_reweighted", "glow_fashion_mnist_split"],
}


def robustness():
    """The cross-family tables of the robustness suites (pretrained/*/report/robustness.json)."""
    p = lambda v: "—" if v is None or v != v else f"{100 * v:.1f}"  # noqa: E731
    for title, names in ROBUSTNESS.items():
        reports = {n: json.load(open(f)) for n in names
                   if os.path.exists(f := os.path.join(ROOT, "pretrained", n, "report", "robustness.json"))}
        if not reports:
            continue
        print(f"**{title}.** Attacks: success % / undetected success % (fooled AND accepted at the "
              "1st-percentile thresholds); CW: + mean L2 of the successes.\n")
        print("| model | clean acc | FGSM 8/255 | PGD L∞ 4/255 margin | PGD L∞ 8/255 CE | PGD L∞ 8/255 margin "
              "| PGD L2 0.5 | rejection-aware PGD L∞ 8/255 | rejection-aware PGD unbounded | CW κ=1 "
              "| CW κ=1 d=1000 | CW paper 001 | boundary (L2) | LocalSearch |")
        print("|---|" + "---|" * 13)
        for n, r in reports.items():
            a = r["adversarial"]["attacks"]
            su = lambda k: (f"{p(a[k]['success_rate'])} / {p(a[k]['undetected_success_rate']['p1'])}"  # noqa: E731
                            if k in a else "—")
            cw = lambda k: (su(k) + f" ({a[k]['mean_l2']:.2f})" if k in a else "—")  # noqa: E731
            print(f"| {n} | {p(r['clean']['accuracy'])} | {su('fgsm_linf_8')} | {su('pgd_linf_4_margin')} | "
                  f"{su('pgd_linf_8_ce')} | {su('pgd_linf_8_margin')} | {su('pgd_l2_0.5')} | "
                  f"{su('pgd_linf_8_rejection')} | {su('pgd_linf_unbounded_rejection')} | {cw('cw_l2_kappa1')} | "
                  f"{cw('cw_l2_kappa1_d1000')} | {cw('cw_l2_kappa1_threshold')} | "
                  f"{su('boundary')} ({a['boundary']['median_l2']:.2f}) | {su('local_search')} |")
        print("\nCorruptions (15 × 5, generated by gcj.corruptions) and likelihood analyses:\n")
        print("| model | mean acc (75 sets) | severity 1 acc | severity 5 acc | severity 5 acc-left p1 "
              "| severity 5 rejected p1 | mean OOD AUROC | entropy change | interpolations never "
              "rejected | convex | median NLL gap (nats) |")
        print("|---|" + "---|" * 10)
        for n, r in reports.items():
            c, i, g = r["corruptions"], r["interpolation"], r["nll_gap"]
            s1, s5 = c["per_severity"]["1"], c["per_severity"]["5"]
            auroc = sum(v["auroc"] for v in c["per_corruption"].values()) / len(c["per_corruption"])
            dh = sum(v["entropy_change"] for v in c["per_corruption"].values()) / len(c["per_corruption"])
            print(f"| {n} | {p(c['mean_accuracy'])} | {p(s1['accuracy'])} | {p(s5['accuracy'])} | "
                  f"{p(s5['p1']['acc_left'])} | {p(s5['p1']['rejection_rate'])} | {p(auroc)} | {dh:+.3f} | "
                  f"{p(i['fraction_never_rejected'])} | {p(i['fraction_convex'])} | {g['median_gap']:.1f} |")
        print()
        for n, r in reports.items():
            bad = [line for line in r["adversarial"]["sanity"] if not line.startswith("ok")]
            if bad:
                print(f"- {n}: " + "; ".join(bad))
        print()


def worst_case():
    """The per-image worst case over the autoattack ensemble (bench/worst_case_all.sh)."""
    folder = os.path.join(ROOT, "bench", "results", "worst_case")
    names = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".json")) if os.path.isdir(folder) else []
    p = lambda v: f"{100 * v:.1f}"  # noqa: E731
    print("| model | attacked | attacks | clean acc | EoT draws | L∞ 8/255: robust acc | robust-or-rejected p1 | "
          "test robust acc | L2 0.5: robust acc | robust-or-rejected p1 | test robust acc | "
          "images only one attack broke | Square vs gradients | minutes |")
    print("|---|" + "---|" * 13)
    for n in names:
        r = json.load(open(os.path.join(folder, n + ".json")))
        a = r["adversarial"]
        w = a["worst_case"]
        only = {}
        for t in w.values():
            for k, v in t["only_by"].items():
                only[k] = only.get(k, 0) + v
        square = [line for line in a["sanity"] if "square" in line]
        cells = []
        for t in ("linf 8/255", "l2 0.5"):  # (a threat no attack faced: "—")
            cells += ([p(w[t]["robust_accuracy"]), p(w[t]["robust_or_rejected"]["p1"]), p(w[t]["test_robust_accuracy"])]
                      if t in w else ["—"] * 3)
        minutes = sum(v["seconds"] for v in a["attacks"].values()) / 60
        eot = a["eot"] if a["stochastic"] else "— (deterministic)"
        print(f"| {n} | {a['num_images']} | {len(a['attacks'])} | {p(r['clean']['accuracy'])} | {eot} | " + " | ".join(cells) + " | "
              + (", ".join(f"{k} {v}" for k, v in sorted(only.items(), key=lambda kv: -kv[1])) or "—") + " | "
              + ("—" if not square else "ok" if all(s_.startswith("ok") for s_ in square) else "WARNING")
              + f" | {minutes:.0f} |")


# the README's cross-family table: every family on Fashion-MNIST, MNIST-5k out (issue order of rows)
CROSS_FAMILY = ["sdim_fashion_mnist", "disc_fashion_mnist", "sdim_logit_fashion_mnist", "ibinn_fashion_mnist_beta1",
                "ibinn_fashion_mnist_betainf", "glow_fashion_mnist_base", "glow_fashion_mnist_reweighted",
                "glow_fashion_mnist_split", "sbgc_fashion_mnist"]


def _json(*path):
    f = os.path.join(ROOT, *path)
    return json.load(open(f)) if os.path.exists(f) else None


def cross_family():
    """Every family on Fashion-MNIST test images (MNIST-5k out), one row each, every cell from a
    committed file with its image count: parameters (the checkpoint's), training hours (the median
    of metrics.jsonl's epoch_seconds times the epochs, wall time on 2 CPU cores; "CPU-h" where the
    run recorded epoch_cpu_seconds, as runs made beside other jobs do), the report (accuracy, bits/dim, rejection
    and OOD at the 1st-percentile thresholds; OOD on max_y log p(x|y)), the robustness report's
    mean corruption accuracy (15 corruptions x 5 severities) and the worst case over the
    autoattack ensemble at L∞ 8/255 (bench/results/worst_case/; a cell says where a model faced
    fewer attacks, or attacks through a surrogate)."""
    p = lambda v, n: f"{100 * v:.1f} ({n})"  # noqa: E731
    print("| model | parameters | train hours | accuracy % | bits/dim | acc-left p1 % | rejected p1 % "
          "| OOD AUROC % | OOD detected p1 % | corruption acc % (75 sets) | APGD worst case L∞ 8/255: "
          "robust acc % | robust-or-rejected p1 % |")
    print("|---|" + "---|" * 11)
    for name in CROSS_FAMILY:
        path = os.path.join(ROOT, "pretrained", name)
        r = _json("pretrained", name, "report", "report.json")
        if r is None:
            print(f"| {name} | (not trained yet) |" + " |" * 10)
            continue
        params = sum(v.size for v in jax.tree.leaves(gcj.load(path).params))
        logged = records(path)
        epochs = [e for e in logged if "epoch_seconds" in e]
        # an epoch paused or resumed counts as a typical one: the median epoch times the epochs
        # trained (a run stopped after its last step, before its epoch's summary, logged fewer);
        # runs that record CPU time (made beside other jobs) give CPU-hours instead
        trained = max(e.get("epoch", 0) for e in logged)
        cpu = [e["epoch_cpu_seconds"] for e in epochs if "epoch_cpu_seconds" in e]
        hours = (f"{statistics.median(cpu) * trained / 3600:.1f} CPU-h" if cpu else
                 f"{statistics.median(e['epoch_seconds'] for e in epochs) * trained / 3600:.1f}")
        n, c, rej = r["num_test"], r["clean"], r["rejection"]["p1"]
        ood = r["ood"]["mnist5k"]
        bpd = f"{c['bits_per_dim']:.2f}" if "bits_per_dim" in c else "—"
        cells = [f"{params / 1e6:.2f} M", hours, p(c["accuracy"], n), bpd, p(rej["acc_left"], n),
                 p(rej["rejection_rate"], n), p(ood["auroc"], f"{n} + {ood['num']}"),
                 p(ood["detection_rate"]["p1"], ood["num"])]
        rb = _json("pretrained", name, "report", "robustness.json")
        cells.append(p(rb["corruptions"]["mean_accuracy"], rb["corruptions"]["num_images"])
                     if rb and "corruptions" in rb else "—")
        w = _json("bench", "results", "worst_case", name + ".json")
        if w:
            a = w["adversarial"]
            t, m = a["worst_case"]["linf 8/255"], str(a["num_images"])
            if len(a["attacks"]) < len(ENSEMBLES["autoattack"]) or a.get("attack_surrogate"):  # said in the cell
                m += f": {len(a['attacks'])} attacks" + (f" via the {a['attack_surrogate']}"
                                                         if a.get("attack_surrogate") else "")
            cells += [p(t["robust_accuracy"], m), p(t["robust_or_rejected"]["p1"], m)]
        else:
            cells += ["—", "—"]
        print(f"| {name} | " + " | ".join(cells) + " |")


# bench/ablations_fashion_mnist.sh: (committed model, its one-field variant, the field's two values)
ABLATIONS = [("sdim_fashion_mnist", "sdim_fashion_mnist_total", "model.sdim.loss_scale", "per_dim", "total"),
             ("ibinn_fashion_mnist_beta1", "ibinn_fashion_mnist_beta1_nonoise", "model.ibinn.noise", "0.01", "0")]


def ablations():
    """Each committed Fashion-MNIST model beside its variant with one config field changed (same
    recipe, seed and epochs; bench/ablations_fashion_mnist.sh), on all 10,000 test images and the
    5,000 MNIST-5k images out; for the IB-INNs also paper 002's CW table (d = 0, 200 images): the
    one-tailed OOD AUROC of the adversarials against the training images and log q's shift."""
    print("| model | field = value | accuracy % | bits/dim | acc-left p1 % | rejected p1 % | acc-left p2 % "
          "| rejected p2 % | OOD AUROC % | OOD detected p1 % | CW κ = 1 (d = 0): one-tailed AUROC % "
          "| CW κ = 1: log q shift (training sd) | log q fell % |")
    print("|---|---|" + "---|" * 11)
    for base, variant, field, v0, v1 in ABLATIONS:
        for name, value, r in ((base, v0, _json("pretrained", base, "report", "report.json")),
                               (variant, v1, _json("bench", "results", "ablations", variant + ".json"))):
            if r is None:
                print(f"| {name} | {field} = {value} | (not trained yet) |" + " |" * 10)
                continue
            c, p1, p2, ood = r["clean"], r["rejection"]["p1"], r["rejection"]["p2"], r["ood"]["mnist5k"]
            cells = [f"{100 * c['accuracy']:.2f}", f"{c['bits_per_dim']:.2f}" if "bits_per_dim" in c else "—",
                     f"{100 * p1['acc_left']:.2f}", f"{100 * p1['rejection_rate']:.2f}",
                     f"{100 * p2['acc_left']:.2f}", f"{100 * p2['rejection_rate']:.2f}",
                     f"{100 * ood['auroc']:.1f}", f"{100 * ood['detection_rate']['p1']:.1f}"]
            cw = _json("bench", "results", f"paper002_cw_{name}.json") if "ibinn" in name else None
            if cw:
                a = cw["adversarial"]["attacks"]["cw_l2_kappa1"]
                shift = a["log_q_shift"]
                cells += [f"{100 * a['tests_auroc']['one_tailed']:.1f}", f"{shift['mean_shift_train_sd']:+.2f}",
                          f"{100 * shift['fraction_fell']:.0f}"]
            else:
                cells += ["—", "—", "—"]
            print(f"| {name} | {field} = {value} | " + " | ".join(cells) + " |")


# each table by the name the command line takes, and the committed file that holds it
TABLES = {"": (main, "fashion_mnist_table.md"), "glow": (glow, "glow_digits_table.md"),
          "ibinn": (ibinn, "ibinn_digits_table.md"), "fashion_ood": (fashion_ood, "fashion_mnist_ood_table.md"),
          "robustness": (robustness, "robustness_table.md"), "worst_case": (worst_case, "worst_case_table.md"),
          "cross_family": (cross_family, "cross_family_table.md"), "ablations": (ablations, "ablations_table.md")}

if __name__ == "__main__":
    name = sys.argv[1] if sys.argv[1:] else ""
    if name not in TABLES:
        sys.exit(f"no table {name!r}: one of {', '.join(repr(t) for t in TABLES)}")
    TABLES[name][0]()
