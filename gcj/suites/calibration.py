"""Calibration of p(y|x) (paper 002): ECE, MCE, OCE, entropy; the reliability diagram."""
import numpy as np

from gcj import classifier, metrics
from gcj.suites.base import Context, Suite, figure, pct


def _probs(ctx):
    return np.exp(np.asarray(classifier.log_posterior(ctx.ll_test)))


def run(ctx: Context) -> dict:
    return metrics.calibration_metrics(_probs(ctx), ctx.test.labels)


def table(c: dict, report: dict) -> list:
    return [f"calibration           ECE {pct(c['ece'])}  MCE {pct(c['mce'])}  OCE {c['oce']:.2f}"
            f" ({pct(c['oce_fraction'])} at conf>=0.997)  entropy {c['entropy']:.3f} nats"]


def plot(c: dict, ctx: Context, directory: str) -> None:
    probs, labels = _probs(ctx), ctx.test.labels
    count, conf, acc = metrics.calibration_bins(probs.max(1), probs.argmax(1) == labels)
    centers = (np.arange(15) + 0.5) / 15
    with figure(f"{directory}/reliability.png", figsize=(4, 4)) as ax:
        ax.bar(centers[count > 0], acc[count > 0], width=1 / 15, edgecolor="k", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.legend()


SUITE = Suite("calibration", run, table, plot)
