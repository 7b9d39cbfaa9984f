"""Paper 001's interpolations against training (bench/interpolation_trend.sh's reports): per
evaluated epoch, the test bits/dim, paper 001's threshold (the highest test bits/dim), the share of
the 1,200 paths never rejected under it (and under the per-class 1st percentiles), the mean path
below its chord and the midpoint's dip in bits/dim. Writes bench/results/interpolation_trend.md
and interpolation_trend.png.

    .venv/bin/python bench/interpolation_trend.py
"""
import glob
import json
import os
import sys

import matplotlib.figure
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # gcj from this checkout
from gcj import ops  # noqa: E402

OUT = os.path.join(ROOT, "bench", "results")


def rows():
    found = []
    for f in glob.glob(os.path.join(OUT, "interpolation_trend", "epoch_*.json")):
        with open(f) as fh:
            r = json.load(fh)
        i = r["interpolation"]
        lp = np.asarray(i["mean_log_px"])
        d = r["config"]["data"]
        dims = d["image_size"] ** 2 * d["channels"]  # (the data pads these models' digits to 32x32)
        dip = float(ops.bits_per_dim(lp[len(lp) // 2], dims) - ops.bits_per_dim((lp[0] + lp[-1]) / 2, dims))
        found.append(dict(epoch=int(os.path.basename(f)[6:-5]), bpd=r["clean"]["bits_per_dim"],
                          accuracy=r["clean"]["accuracy"], threshold=i["paper_rule"]["threshold_bits_per_dim"],
                          never=i["fraction_never_rejected"], never_p1=i["fraction_never_rejected_percentile"],
                          gap=i["mean_gap_to_chord"], dip=dip, convex=i["fraction_convex"]))
    return sorted(found, key=lambda d: d["epoch"])


def main():
    rs = rows()
    header = ("| epoch | test accuracy | test bits/dim | threshold (highest test bits/dim) | paths never rejected | "
              "same, at p1 | mean path minus chord | midpoint dip (bits/dim) | convex paths |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {d['epoch']} | {100 * d['accuracy']:.1f}% | {d['bpd']:.2f} | {d['threshold']:.2f} | "
              f"{100 * d['never']:.1f}% | {100 * d['never_p1']:.1f}% | {d['gap']:+.1f} nats | {d['dip']:.2f} | "
              f"{100 * d['convex']:.1f}% |" for d in rs]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with open(os.path.join(OUT, "interpolation_trend.md"), "w") as f:
        f.write(text)
    fig = matplotlib.figure.Figure(figsize=(4.5, 3.2))
    ax = fig.add_subplot()
    bpd = [d["bpd"] for d in rs]
    ax.plot(bpd, [100 * d["never"] for d in rs], "o-", label="paper 001's threshold")
    ax.plot(bpd, [100 * d["never_p1"] for d in rs], "s--", label="per-class p1")
    for d in rs:
        ax.annotate(str(d["epoch"]), (d["bpd"], 100 * d["never"]), fontsize=7)
    ax.invert_xaxis()
    ax.set_xlabel("test bits/dim (training goes right)")
    ax.set_ylabel("paths never rejected %")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "interpolation_trend.png"), dpi=120)


if __name__ == "__main__":
    main()
