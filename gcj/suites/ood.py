"""Out-of-distribution detection (paper 000 Tab. 6, paper 002's tests): per OOD set, class-wise
detection and max-class rejection at each threshold, ROC metrics of max_y log p(x|y) and of log p(x)."""
import numpy as np

from gcj import classifier, data, keys, metrics, rejection
from gcj.errors import UserError
from gcj.suites.base import Context, Request, Suite, figure, pct
from gcj.suites.rejection import not_fitted_lines


def check(request: Request) -> None:
    if not request.ood_datasets:
        raise UserError("the 'ood' suite needs at least one --ood_dataset (e.g. mnist5k)")
    for name in request.ood_datasets:
        data.check_name(name)


def ood_set(ctx: Context, name: str):
    """The OOD data set ``name`` as the suites score it: its (seeded) subset of at most
    ``max_images``, shaped as the model's input, and their log-likelihoods ``[N, C]``."""
    req, cfg = ctx.request, ctx.config
    key = keys.named(ctx.key, "ood", name)
    s = data.subset(data.load(name, req.ood_split, req.data_dir), req.max_images, keys.named(key, "subset"))
    images = data.to_shape(s.images, cfg.data.image_size, cfg.data.channels, cfg.data.resize)
    return images, ctx.log_likelihoods(images, keys.named(key, "likelihood"), f"ood_{name}")


def run(ctx: Context) -> dict:
    req = ctx.request
    in_max, in_marg = ctx.ll_test.max(1), np.asarray(classifier.log_marginal(ctx.ll_test))
    train_marg = np.asarray(classifier.log_marginal(ctx.ll_train))
    out = {}
    for name in req.ood_datasets:
        images, ll_out = ood_set(ctx, name)
        out_marg = np.asarray(classifier.log_marginal(ll_out))
        r = dict(num=int(len(images)), split=req.ood_split)
        per_class = {k: rejection.class_detection_rates(ll_out, t) for k, t in ctx.thresholds.items()}
        r["detection_rate"] = {k: float(v.mean()) for k, v in per_class.items()}
        r["detection_rate_per_class"] = {k: v.tolist() for k, v in per_class.items()}
        r["rejection_rate"] = {k: float(rejection.reject(ll_out, t).mean()) for k, t in ctx.thresholds.items()}
        r.update(metrics.ood_metrics(in_max, ll_out.max(1)))  # score: max_y log p(x|y)
        r["log_marginal"] = metrics.ood_metrics(in_marg, out_marg)
        r["tests_auroc"] = metrics.tests_auroc(train_marg, out_marg, in_marg)
        ctx.arrays[f"ood/{name}"] = ll_out.max(1)  # for the plot
        out[name] = r
    return out


def table(block: dict, report: dict) -> list:
    lines = []
    for name, r in block.items():
        lines.append(f"OOD vs {name} ({r['num']} images, split {r['split']})")
        for k, v in r["detection_rate"].items():
            lines.append(f"  detection rate {k:<10} {pct(v)}   (max-class rejection {pct(r['rejection_rate'][k])})")
        lines += [f"  detection rate {line}" for line in not_fitted_lines(report)]
        lines.append(f"  max_y log p(x|y): AUROC {pct(r['auroc'])}  AUPR {pct(r['aupr'])}  FPR@95 {pct(r['fpr95'])}")
        m = r["log_marginal"]
        lines.append(f"  log p(x):         AUROC {pct(m['auroc'])}  AUPR {pct(m['aupr'])}  FPR@95 {pct(m['fpr95'])}")
        lines.append("  tests on log p(x) AUROC: " + "  ".join(f"{k} {pct(v)}" for k, v in r["tests_auroc"].items()))
    return lines


def plot(block: dict, ctx: Context, directory: str) -> None:
    for name, r in block.items():
        ll_in, ll_out = ctx.ll_test.max(1), ctx.arrays[f"ood/{name}"]
        with figure(f"{directory}/ood_{name}_hist.png", figsize=(5, 3.5)) as ax:
            lo, hi = np.percentile(np.r_[ll_in, ll_out], [0.5, 99.9])
            bins = np.linspace(lo, hi, 60)
            ax.hist(ll_in, bins, alpha=0.6, density=True, label=f"{ctx.config.data.name} (in)")
            ax.hist(ll_out, bins, alpha=0.6, density=True, label=f"{name} (out)")
            ax.set_xlabel("max_y log p(x|y) [nats]")
            ax.legend()


SUITE = Suite("ood", run, table, plot, reads=("ood_datasets", "ood_split", "data_dir", "max_images"),
              needs_train=True, needs_thresholds=True, check=check)
