"""Evaluation suites, written once against the contract: every family's workdir is evaluated the
same way, from its ``[N, C]`` class log-likelihoods only."""

from __future__ import annotations

import contextlib
import json
import os

import jax
import numpy as np

import gcj

from gcj import classifier, corruptions, data, diffusion, metrics, ops, rejection, robustness, stopwatch

DEFAULT_SUITES = ("clean", "rejection", "ood", "calibration")
SUITES = DEFAULT_SUITES + ("adversarial", "corruptions", "interpolation", "nll_gap")
CURVE_PERCENTILES = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0)


def evaluate(workdir: str, suites=DEFAULT_SUITES, ood_datasets=(), out: str | None = None,
             ood_split: str = "test", data_dir: str | None = None, plots: bool = True,
             max_images: int | None = None, options: robustness.Options | None = None,
             log=print, max_test_images: int | None = None) -> dict:
    """Runs ``suites`` on a train.py workdir; writes ``out`` (JSON) and PNG plots beside it.

    ``max_images`` caps the sets scored besides the test set (the training scores of the rejection
    curve and typicality tests, each OOD set) by a seeded random subset, for families whose
    likelihood is expensive (the score family's ODE); the thresholds are those fitted at training."""
    classifier.read_config(workdir)  # a missing workdir is the first thing to say
    clock = stopwatch.Stopwatch()
    opts = options or robustness.Options()
    for name, v in (("max_images", max_images), ("max_test_images", max_test_images)):
        if v is not None and v < 2:
            raise ValueError(f"{name} must be at least 2, got {v}")
    unknown = set(suites) - set(SUITES)
    if unknown:
        raise ValueError(f"unknown suites {sorted(unknown)}; known: {', '.join(SUITES)}")
    if "ood" in suites and not ood_datasets:
        raise ValueError("the 'ood' suite needs at least one --ood_dataset (e.g. mnist5k)")
    for name in ood_datasets:
        data.check_name(name)
    if "corruptions" in suites and max_test_images is not None:
        # the corrupted sets are the first test images, not the random subset
        raise ValueError("the corruptions suite uses the first --corruption_images test images; "
                         "it cannot be combined with max_test_images")
    baseline = None
    if "corruptions" in suites and opts.baseline_report:  # checked before any work
        with open(opts.baseline_report) as f:
            base = json.load(f)
        if "corruptions" not in base:
            raise ValueError(f"{opts.baseline_report} has no corruptions suite to compare with")
        baseline = dict(base["corruptions"], name=f"{base['family']} on {base['dataset']} "
                        f"({opts.baseline_report})")
    clf = classifier.load(workdir)
    need_train = bool({"rejection", "ood", "adversarial"} & set(suites))  # thresholds and training scores
    if clf.thresholds is None and need_train:
        raise FileNotFoundError(f"{workdir} has no thresholds.json: training did not finish")
    cfg = clf.config
    bs = cfg.eval_batch_size
    clock.lap("load")
    key = jax.random.key(cfg.seed)
    test = _subset(data.load_dataset(cfg.data, "test"), max_test_images, jax.random.fold_in(key, 8))
    ll_test = classifier.batched_log_likelihoods(clf, test.images, bs, jax.random.fold_in(key, 0))
    if need_train:
        train = _subset(data.load_train_val(cfg)[0], max_images, jax.random.fold_in(key, 3))
        ll_train = classifier.batched_log_likelihoods(clf, train.images, bs, jax.random.fold_in(key, 1))
    clock.lap("scoring")
    thresholds, not_fitted = rejection.split_fitted(clf.thresholds or {}, cfg.thresholds.conformal_alpha,
                                                    cfg.data.val_size)
    report = dict(gcj_version=gcj.__version__, workdir=os.path.abspath(workdir), dataset=cfg.data.name,
                  family=cfg.model.family,
                  num_test=int(len(test.labels)))
    if not_fitted:
        report["thresholds_not_fitted"] = not_fitted
    if need_train:
        report["num_train_scored"] = int(len(train.labels))
    plot_dir = os.path.dirname(os.path.abspath(out)) if out else None
    if plot_dir:
        os.makedirs(plot_dir, exist_ok=True)

    if "clean" in suites:
        report["clean"] = dict(accuracy=float(np.mean(ll_test.argmax(1) == test.labels)))
        if clf.family.density:  # log p(x|y) is a density of the (dequantized) pixels
            dim = int(np.prod(clf.image_shape))
            report["clean"]["bits_per_dim"] = float(np.mean(diffusion.bits_per_dim(
                np.asarray(classifier.log_marginal(ll_test)), dim)))
            report["clean"]["bits_per_dim_given_label"] = float(np.mean(diffusion.bits_per_dim(
                ops.pick(ll_test, test.labels), dim)))

    if "rejection" in suites:
        report["rejection"] = {k: rejection.rejection_metrics(ll_test, test.labels, t)
                               for k, t in thresholds.items()}
        curve = []
        for p in CURVE_PERCENTILES:
            t = rejection.percentile_thresholds(ll_train, train.labels, p)
            curve.append(dict(percentile=p, **rejection.rejection_metrics(ll_test, test.labels, t)))
        report["rejection"]["curve"] = curve

    if "ood" in suites:
        report["ood"] = {}
        in_max, in_marg = ll_test.max(1), np.asarray(classifier.log_marginal(ll_test))
        train_marg = np.asarray(classifier.log_marginal(ll_train))
        for name in ood_datasets:
            s = _subset(data.load(name, ood_split, data_dir), max_images, jax.random.fold_in(key, 4))
            images = data.to_shape(s.images, cfg.data.image_size, cfg.data.channels, cfg.data.resize)
            ll_out = classifier.batched_log_likelihoods(clf, images, bs, jax.random.fold_in(key, 2))
            out_marg = np.asarray(classifier.log_marginal(ll_out))
            r = dict(num=int(len(images)), split=ood_split)
            per_class = {k: rejection.class_detection_rates(ll_out, t) for k, t in thresholds.items()}
            r["detection_rate"] = {k: float(v.mean()) for k, v in per_class.items()}
            r["detection_rate_per_class"] = {k: v.tolist() for k, v in per_class.items()}
            r["rejection_rate"] = {k: float(rejection.reject(ll_out, t).mean())
                                   for k, t in thresholds.items()}
            r.update(metrics.ood_metrics(in_max, ll_out.max(1)))  # score: max_y log p(x|y)
            r["log_marginal"] = metrics.ood_metrics(in_marg, out_marg)
            r["tests_auroc"] = {name_: metrics.auroc(test_(train_marg, in_marg),
                                                     test_(train_marg, out_marg))
                                for name_, test_ in metrics.TESTS.items()}
            report["ood"][name] = r
            if plots and plot_dir:
                _plot_histograms(os.path.join(plot_dir, f"ood_{name}_hist.png"), in_max,
                                 ll_out.max(1), cfg.data.name, name)

    if "calibration" in suites:
        probs = np.exp(np.asarray(classifier.log_posterior(ll_test)))
        report["calibration"] = metrics.calibration_metrics(probs, test.labels)
        if plots and plot_dir:
            _plot_reliability(os.path.join(plot_dir, "reliability.png"), probs, test.labels)

    if "adversarial" in suites:
        log("adversarial suite:")
        median_log_q = float(np.median(np.asarray(classifier.log_marginal(ll_train))))
        report["adversarial"] = robustness.adversarial_suite(
            clf, test, ll_test, jax.random.fold_in(key, 5), clf.thresholds, median_log_q,
            opts.attack_images, opts.black_box_images, opts.attacks, opts.cw_steps,
            opts.boundary_steps, opts.ls_rounds, bs, log)
        report["adversarial"]["median_train_log_marginal"] = median_log_q
        if plots and plot_dir:
            _plot_eps_curve(os.path.join(plot_dir, "adversarial_accuracy_vs_eps.png"),
                            report["adversarial"]["attacks"])

    if "corruptions" in suites:
        log("corruption suite:")
        n = opts.corruption_images or len(test.labels)
        report["corruptions"] = robustness.corruption_suite(
            clf, ll_test[:n], test.labels[:n], jax.random.fold_in(key, 6), clf.thresholds or {},
            opts.corruption_source, opts.corruption_images, opts.corruptions or corruptions.NAMES,
            baseline, bs, log)
        if plots and plot_dir:
            _plot_corruptions(os.path.join(plot_dir, "corruptions.png"), report["corruptions"])

    if "interpolation" in suites:
        report["interpolation"] = robustness.interpolation_suite(
            clf, test, ll_test, jax.random.fold_in(key, 7), clf.thresholds or {},
            opts.interpolation_pairs, batch_size=bs)
        if plots and plot_dir:
            _plot_interpolation(os.path.join(plot_dir, "interpolation.png"), report["interpolation"])

    if "nll_gap" in suites:
        report["nll_gap"] = robustness.nll_gap(ll_test, test.labels)
        if plots and plot_dir:
            _plot_nll_gap(os.path.join(plot_dir, "nll_gap.png"), report["nll_gap"])

    if plots and plot_dir and "rejection" in report:
        _plot_rejection_curve(os.path.join(plot_dir, "rejection_curve.png"),
                              report["rejection"]["curve"])
    clock.lap("suites")
    report["seconds"] = clock.laps
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
    return report


def _subset(split, n, key):
    """At most ``n`` examples of a split, a random subset drawn with ``key`` (all if ``n`` is None)."""
    if n is None or n >= len(split.labels):
        return split
    idx = np.sort(np.asarray(jax.random.permutation(key, len(split.labels))[:n]))
    return type(split)(split.images[idx], split.labels[idx])


def format_tables(report: dict) -> str:
    """Plain-text tables of a report (what evaluate.py prints)."""
    pct = lambda v: f"{100 * v:6.2f}%"
    lines = [f"{report['family']} on {report['dataset']} ({report['num_test']} test images): "
             f"{os.path.basename(report['workdir'])}"]
    if "clean" in report:
        lines.append(f"clean accuracy        {pct(report['clean']['accuracy'])}")
        if "bits_per_dim" in report["clean"]:
            c = report["clean"]
            lines.append(f"bits/dim              {c['bits_per_dim']:.3f} (given the label "
                         f"{c['bits_per_dim_given_label']:.3f})")
    not_fitted = [f"{k:<10} n/a ({why})" for k, why in report.get("thresholds_not_fitted", {}).items()]
    if "rejection" in report:
        lines.append("rejection             threshold   acc-left   rejected")
        for k, v in report["rejection"].items():
            if k != "curve":
                lines.append(f"                      {k:<10} {pct(v['acc_left'])}   {pct(v['rejection_rate'])}")
        lines += [f"                      {line}" for line in not_fitted]
    for name, r in report.get("ood", {}).items():
        lines.append(f"OOD vs {name} ({r['num']} images, split {r['split']})")
        for k, v in r["detection_rate"].items():
            lines.append(f"  detection rate {k:<10} {pct(v)}   (max-class rejection {pct(r['rejection_rate'][k])})")
        lines += [f"  detection rate {line}" for line in not_fitted]
        lines.append(f"  max_y log p(x|y): AUROC {pct(r['auroc'])}  AUPR {pct(r['aupr'])}  FPR@95 {pct(r['fpr95'])}")
        m = r["log_marginal"]
        lines.append(f"  log p(x):         AUROC {pct(m['auroc'])}  AUPR {pct(m['aupr'])}  FPR@95 {pct(m['fpr95'])}")
        lines.append("  tests on log p(x) AUROC: " + "  ".join(f"{k} {pct(v)}" for k, v in r["tests_auroc"].items()))
    if "calibration" in report:
        c = report["calibration"]
        lines.append(f"calibration           ECE {pct(c['ece'])}  MCE {pct(c['mce'])}  OCE {c['oce']:.2f}"
                     f" ({pct(c['oce_fraction'])} at conf>=0.997)  entropy {c['entropy']:.3f} nats")
    if "adversarial" in report:
        a = report["adversarial"]
        lines.append(f"adversarial ({a['num_images']} correctly classified test images; black-box "
                     f"{a['num_black_box']})")
        lines.append(f"  {'attack':<30} {'success':>8} {'undet p1':>8} {'det p1':>8} {'acc':>7} "
                     f"{'L2':>6} {'Linf':>6} {'conf':>6} {'AUROC':>7}")
        for name, r in a["attacks"].items():
            lines.append(f"  {name:<30} {pct(r['success_rate'])} {pct(r['undetected_success_rate'].get('p1', np.nan))}"
                         f" {pct(r['detection_rate'].get('p1', np.nan))} {pct(r['accuracy'])}"
                         f" {r['mean_l2']:6.3f} {r['mean_linf']:6.3f} {r['wrong_class_confidence']:6.3f}"
                         f" {pct(r['auroc'])}")
        lines += [f"  sanity {line}" for line in a["sanity"]]
    if "corruptions" in report:
        c = report["corruptions"]
        lines.append(f"corruptions ({c['num_images']} test images, {'/'.join(c['source'])}): clean "
                     f"{pct(c['clean_accuracy'])}, mean over the {len(c['sets'])} sets {pct(c['mean_accuracy'])}"
                     + (f", mCE {100 * c['mce']:.1f}%, relative mCE {100 * c['relative_mce']:.1f}% vs "
                        f"{c['baseline']}" if "mce" in c else ""))
        for sev, r in c["per_severity"].items():
            lines.append(f"  severity {sev}: accuracy {pct(r['accuracy'])}" + "".join(
                f"  {k} acc-left {pct(v['acc_left'])} rejected {pct(v['rejection_rate'])}"
                for k, v in r.items() if k != "accuracy"))
        for name, r in c["per_corruption"].items():
            lines.append(f"  {name:<18} accuracy {pct(r['accuracy'])}  OOD AUROC {pct(r['auroc'])}  "
                         f"entropy change {r['entropy_change']:+.3f}")
    if "interpolation" in report:
        i = report["interpolation"]
        lines.append(f"interpolation ({i['num_pairs']} pairs): never rejected {pct(i['fraction_never_rejected'])},"
                     f" convex {pct(i['fraction_convex'])}, concave {pct(i['fraction_concave'])}, mean "
                     f"log p(x) minus chord {i['mean_gap_to_chord']:.1f} nats")
    if "nll_gap" in report:
        g = report["nll_gap"]
        lines.append(f"nll gap (log p(x|y_true) - max wrong): median {g['median_gap']:.1f} nats, "
                     f"true class most likely {pct(g['fraction_true_more_likely'])}")
    if "seconds" in report:
        lines.append(f"time: {stopwatch.format_laps(report['seconds'])}")
    return "\n".join(lines)


@contextlib.contextmanager
def _figure(path, *grid, figsize):
    """The axes of a new figure, laid out, saved to ``path`` (PNG) and closed on exit."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(*grid, figsize=figsize)
    try:
        yield axes
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def _plot_histograms(path, ll_in, ll_out, in_name, out_name):
    with _figure(path, figsize=(5, 3.5)) as ax:
        lo, hi = np.percentile(np.r_[ll_in, ll_out], [0.5, 99.9])
        bins = np.linspace(lo, hi, 60)
        ax.hist(ll_in, bins, alpha=0.6, density=True, label=f"{in_name} (in)")
        ax.hist(ll_out, bins, alpha=0.6, density=True, label=f"{out_name} (out)")
        ax.set_xlabel("max_y log p(x|y) [nats]")
        ax.legend()


def _plot_reliability(path, probs, labels):
    count, conf, acc = metrics.calibration_bins(probs.max(1), probs.argmax(1) == labels)
    centers = (np.arange(15) + 0.5) / 15
    with _figure(path, figsize=(4, 4)) as ax:
        ax.bar(centers[count > 0], acc[count > 0], width=1 / 15, edgecolor="k", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.legend()


def _plot_rejection_curve(path, curve):
    with _figure(path, figsize=(4.5, 3.5)) as ax:
        ax.plot([100 * c["rejection_rate"] for c in curve], [100 * c["acc_left"] for c in curve], "o-")
        for c in curve:
            ax.annotate(f"{c['percentile']:g}", (100 * c["rejection_rate"], 100 * c["acc_left"]), fontsize=7)
        ax.set_xlabel("rejected test images [%]")
        ax.set_ylabel("accuracy on accepted [%]")
        ax.set_title("threshold percentile annotated")


def _plot_eps_curve(path, results):
    with _figure(path, figsize=(4.5, 3.5)) as ax:
        for loss in ("ce", "margin"):
            eps = [e for e in robustness.LINF_EPS if f"pgd_linf_{e}_{loss}" in results]
            if eps:
                acc = [100 * results[f"pgd_linf_{e}_{loss}"]["accuracy"] for e in eps]
                # attacked images were correct: accuracy at eps 0 is 100% of them
                ax.plot([0] + eps, [100] + acc, "o-", label=f"PGD L∞ ({loss})")
        ax.set_xlabel("eps [/255]")
        ax.set_ylabel("accuracy on attacked images [%]")
        if ax.lines:
            ax.legend()


def _plot_corruptions(path, c):
    with _figure(path, figsize=(5, 3.5)) as ax:
        sev = sorted(c["per_severity"], key=int)
        ax.plot([0] + [int(s) for s in sev], [100 * c["clean_accuracy"]] +
                [100 * c["per_severity"][s]["accuracy"] for s in sev], "o-", label="accuracy")
        for k in ("p1", "p2"):
            if k in c["per_severity"][sev[0]]:
                ax.plot([int(s) for s in sev], [100 * c["per_severity"][s][k]["acc_left"] for s in sev], "s--",
                        label=f"acc-left ({k})")
        ax.set_xlabel("severity (0 = clean)")
        ax.set_ylabel("[%]")
        ax.legend()


def _plot_interpolation(path, i):
    with _figure(path, 1, 2, figsize=(8, 3.5)) as (a1, a2):
        t, lp = np.asarray(i["t"]), np.asarray(i["log_px"])
        for row in lp[:10]:
            a1.plot(t, row, lw=0.8)
        a1.plot(t, np.median(lp, 0), "k", lw=2, label="median")
        a1.set_xlabel("t  (x = t x_A + (1 - t) x_B)")
        a1.set_ylabel("log p(x) [nats]")
        a1.legend()
        a2.plot(t, np.mean(i["posterior_a"], 0), label="p(y_A|x)")
        a2.plot(t, np.mean(i["posterior_b"], 0), label="p(y_B|x)")
        a2.set_xlabel("t")
        a2.legend()


def _plot_nll_gap(path, g):
    with _figure(path, figsize=(4, 4)) as ax:
        a, b = np.asarray(g["nll_true"]), np.asarray(g["nll_wrong"])
        ax.scatter(a, b, s=3, alpha=0.5)
        lo, hi = np.percentile(np.r_[a, b], [0.5, 99.5])
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel("-log p(x|y_true) [nats]")
        ax.set_ylabel("-log p(x|most likely wrong y) [nats]")
