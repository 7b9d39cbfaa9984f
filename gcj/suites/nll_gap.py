"""Paper 001 Fig. 3: -log p(x|y_true) against the most likely wrong class's."""
import numpy as np

from gcj import ops
from gcj.suites.base import Context, Suite, figure, pct


def run(ctx: Context) -> dict:
    """−log p(x|y_true) against the most likely wrong class's −log p(x|y') (paper 001 Fig. 3)."""
    true = ops.pick(ctx.ll_test, ctx.test.labels)
    wrong, _ = ops.best_other(ctx.ll_test, ctx.test.labels)
    gap = true - wrong  # > 0: the true class is the most likely
    return dict(num=int(len(ctx.test.labels)), median_gap=float(np.median(gap)), mean_gap=float(gap.mean()),
                gap_quantiles={str(q): float(np.quantile(gap, q)) for q in (0.01, 0.1, 0.5, 0.9)},
                fraction_true_more_likely=float((gap > 0).mean()),
                nll_true=(-true).tolist(), nll_wrong=(-wrong).tolist())


def table(g: dict, report: dict) -> list:
    return [f"nll gap (log p(x|y_true) - max wrong): median {g['median_gap']:.1f} nats, "
            f"true class most likely {pct(g['fraction_true_more_likely'])}"]


def plot(g: dict, ctx: Context, directory: str) -> None:
    with figure(f"{directory}/nll_gap.png", figsize=(4, 4)) as ax:
        a, b = np.asarray(g["nll_true"]), np.asarray(g["nll_wrong"])
        ax.scatter(a, b, s=3, alpha=0.5)
        lo, hi = np.percentile(np.r_[a, b], [0.5, 99.5])
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel("-log p(x|y_true) [nats]")
        ax.set_ylabel("-log p(x|most likely wrong y) [nats]")


SUITE = Suite("nll_gap", run, table, plot)
