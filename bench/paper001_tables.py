"""Markdown tables of the paper 000 / 001 experiments from their reports (what the README shows):
Tab. 2 (bench/paper001_table2.sh), Tab. 5's boundary attacks (bench/boundary_fashion_mnist.sh),
Tab. 3 / Figs. 5-6 (bench/bg_mnist.sh, workdirs under W).

    .venv/bin/python bench/paper001_tables.py [--bg_workdirs workdirs]
"""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # gcj from this checkout


def pct(v) -> str:
    return f"{100 * v:.0f}%"


def pct1(v) -> str:
    return f"{100 * v:.1f}%"


def table2():
    """Each cell: undetected success under the attack's own draw (the paper's figure), then in
    brackets the same under a fresh draw, and the success at any distance."""
    rows = ["| model | threshold | CW-L2 | boundary | CW-L2 + threshold term | boundary, rejection as a class |",
            "|---|---|---|---|---|---|"]
    for path in sorted(glob.glob("bench/results/table2_*.json")):
        a = json.load(open(path))["adversarial"]
        t = a["threshold"]

        def cell(name, detector_aware):
            r = a["attacks"][name]
            # the attack's own verdict counts "accepted" only where it aimed under the threshold
            own = r["success_rate_attack_draw"] if detector_aware else None
            fresh = r["undetected_success_rate"][t]
            return (f"{pct(own) if own is not None else '–'} ({pct(fresh)} fresh; {pct(r['success_rate_any_l2'])} "
                    "at any L2)")
        model = os.path.basename(path)[len("table2_"):-len(f"_{t}.json")]
        rows.append(f"| {model} | {t} | {cell('cw_l2_untargeted_c10', False)} | {cell('boundary_untargeted', False)} | "
                    f"{cell('cw_l2_kappa1_threshold', True)} | {cell('boundary', True)} |")
    return rows


def boundary():
    rows = ["| model | attack | success | detected p1 | detected p2 | mean L2 |", "|---|---|---|---|---|---|"]
    for path in sorted(glob.glob("bench/results/boundary_*.json")):
        a = json.load(open(path))["adversarial"]
        for name in ("boundary_untargeted", "boundary"):
            r = a["attacks"][name]
            det = [pct(r["detection_rate"][k]) if k in r["detection_rate"] else "n/a" for k in ("p1", "p2")]
            rows.append(f"| {os.path.basename(path)[9:-5]} | {name} | {pct(r['success_rate'])} | "
                        f"{det[0]} | {det[1]} | {r['mean_l2']:.2f} |")
    return rows


def bg_mnist(w):
    rows = ["| trained on | accuracy | bits/dim | threshold (bits/dim) | paths never rejected | same, at p1 | "
            "mean log p(x) minus the chord | convex paths | concave paths |", "|---|---|---|---|---|---|---|---|---|"]
    for s in ("mnist5k", "bg_mnist_5", "bg_mnist_1", "bg_mnist_0"):
        path = os.path.join(w, f"glow_{s}", "report", "report.json")
        if not os.path.exists(path):
            rows.append(f"| {s} | (not run) | | | | | | | |")
            continue
        r = json.load(open(path))
        i = r["interpolation"]
        rows.append(f"| {s} | {100 * r['clean']['accuracy']:.1f}% | {r['clean']['bits_per_dim']:.2f} | "
                    f"{i['paper_rule']['threshold_bits_per_dim']:.2f} | {pct1(i['fraction_never_rejected'])} | "
                    f"{pct1(i['fraction_never_rejected_percentile'])} | {i['mean_gap_to_chord']:+.1f} nats | "
                    f"{pct1(i['fraction_convex'])} | {pct1(i['fraction_concave'])} |")
    return rows


def bg_mnist_figure(w, path="bench/results/bg_mnist_interpolations.png"):
    """Paper 001 Fig. 6 beside plain digits: mean log p(x) and mean p(y_A|x) along the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.3))
    for s in ("mnist5k", "bg_mnist_5", "bg_mnist_1", "bg_mnist_0"):
        f = os.path.join(w, f"glow_{s}", "report", "report.json")
        if not os.path.exists(f):
            continue
        i = json.load(open(f))["interpolation"]
        t, lp = np.asarray(i["t"]), np.asarray(i["mean_log_px"])
        a1.plot(t, lp - lp[0], label=s)  # relative to x_B's (t = 0)
        a2.plot(t, i["mean_posterior_a"], label=s)
    a1.set_xlabel("t  (x = t x_A + (1 - t) x_B)")
    a1.set_ylabel("mean log p(x) - log p(x_B) [nats]")
    a2.set_xlabel("t")
    a2.set_ylabel("mean p(y_A | x)")
    a1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bg_mnist_samples(w, path="bench/results/bg_mnist_samples.png", temperature=0.5):
    """Paper 001 Fig. 5: per set, one test image of each class and one sample of the trained
    model's p(x|y) for each class (at ``temperature``, as Glow samples are shown)."""
    import jax
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import gcj
    from gcj import data

    sets = [s for s in ("mnist5k", "bg_mnist_5", "bg_mnist_1", "bg_mnist_0")
            if os.path.exists(os.path.join(w, f"glow_{s}", "config.json"))]
    if not sets:
        return
    fig, axes = plt.subplots(2 * len(sets), 10, figsize=(8, 1.7 * len(sets)))
    for row, s in enumerate(sets):
        test = data.load(s, "test")
        clf = gcj.load(os.path.join(w, f"glow_{s}"))
        samples = np.asarray(clf.sample(np.arange(10), jax.random.key(0), temperature))
        for c in range(10):
            axes[2 * row, c].imshow(test.images[test.labels == c][0][..., 0], cmap="gray", vmin=0, vmax=255)
            axes[2 * row + 1, c].imshow(samples[c][..., 0], cmap="gray", vmin=0, vmax=1)
        axes[2 * row, 0].set_ylabel(f"{s}\ndata", fontsize=6)
        axes[2 * row + 1, 0].set_ylabel(f"model T={temperature}", fontsize=6)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bg_workdirs", default="workdirs")
    a = p.parse_args()
    for rows in (table2(), boundary(), bg_mnist(a.bg_workdirs)):
        print("\n".join(rows) + "\n")
    bg_mnist_figure(a.bg_workdirs)
    bg_mnist_samples(a.bg_workdirs)


if __name__ == "__main__":
    main()
