"""Classification with rejection (paper 000): accuracy on the accepted test images and the
rejection rate at each fitted threshold, and the curve over training-percentile thresholds."""
from gcj import rejection
from gcj.suites.base import Context, Suite, figure, pct

CURVE_PERCENTILES = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0)


def run(ctx: Context) -> dict:
    out = {k: rejection.rejection_metrics(ctx.ll_test, ctx.test.labels, t) for k, t in ctx.thresholds.items()}
    out["curve"] = [dict(percentile=p, **rejection.rejection_metrics(
        ctx.ll_test, ctx.test.labels, rejection.percentile_thresholds(ctx.ll_train, ctx.train.labels, p)))
        for p in CURVE_PERCENTILES]
    return out


def not_fitted_lines(report: dict) -> list:
    """``name n/a (why)`` for each threshold that could not be fitted."""
    return [f"{k:<10} n/a ({why})" for k, why in report.get("thresholds_not_fitted", {}).items()]


def table(r: dict, report: dict) -> list:
    lines = ["rejection             threshold   acc-left   rejected"]
    lines += [f"                      {k:<10} {pct(v['acc_left'])}   {pct(v['rejection_rate'])}"
              for k, v in r.items() if k != "curve"]
    return lines + [f"                      {line}" for line in not_fitted_lines(report)]


def plot(r: dict, ctx: Context, directory: str) -> None:
    with figure(f"{directory}/rejection_curve.png", figsize=(4.5, 3.5)) as ax:
        curve = r["curve"]
        ax.plot([100 * c["rejection_rate"] for c in curve], [100 * c["acc_left"] for c in curve], "o-")
        for c in curve:
            ax.annotate(f"{c['percentile']:g}", (100 * c["rejection_rate"], 100 * c["acc_left"]), fontsize=7)
        ax.set_xlabel("rejected test images [%]")
        ax.set_ylabel("accuracy on accepted [%]")
        ax.set_title("threshold percentile annotated")


SUITE = Suite("rejection", run, table, plot, needs_train=True, needs_thresholds=True)
