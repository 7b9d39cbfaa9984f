"""Paper 002 Tabs. 7-9 from bench/paper002_cw.sh's reports: per model and kappa, for d = 0 / 66 /
1000 the wrong class's confidence, the per-pixel L2 ("corruption"), the success rate and the OOD
AUROC of the adversarials' log p(x) by the one-tailed, typicality and two-tailed tests, and the
posterior entropy.

    .venv/bin/python bench/paper002_tables.py
"""
import glob
import json
import os


def main():
    rows = ["| model | log q in eq. 25 | κ | confidence (d = 0 / 66 / 1000) | corruption | success | "
            "AUROC one-tailed | typicality | two-tailed | entropy (clean: e) | CW stopped by the cap |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(glob.glob("bench/results/paper002_cw_*.json")):
        if "per_dim" in path:
            continue
        a = json.load(open(path))["adversarial"]
        model = os.path.basename(path)[len("paper002_cw_"):-5]
        per_dim = os.path.join(os.path.dirname(path), f"paper002_cw_per_dim_{model}.json")
        variants = [("nats", a["attacks"])]
        if os.path.exists(per_dim):  # the d = 0 runs are the same attack
            variants.append(("per dim", {**a["attacks"], **json.load(open(per_dim))["adversarial"]["attacks"]}))
        for (units, attacks), k in ((v, k) for v in variants for k in ("0.01", "1", "inf")):
            runs = [attacks[n] for n in (f"cw_l2_kappa{k}", f"cw_l2_kappa{k}_d66", f"cw_l2_kappa{k}_d1000")]

            def cells(f, fmt):
                return " / ".join(fmt.format(f(r)) for r in runs)
            rows.append(
                f"| {model} | {units} | {k} | {cells(lambda r: 100 * r['wrong_class_confidence'], '{:.1f}')} | "
                f"{cells(lambda r: r['corruption'], '{:.3f}')} | {cells(lambda r: 100 * r['success_rate'], '{:.0f}')} | "
                + " | ".join(cells(lambda r: 100 * r["tests_auroc"][t], "{:.1f}")
                             for t in ("one_tailed", "typicality", "two_tailed"))
                + f" | {cells(lambda r: r['entropy'], '{:.2f}')} (e {a['clean_entropy']:.2f}) | "
                f"{cells(lambda r: 100 * r.get('hit_step_cap', 0), '{:.0f}%')} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
