"""Paper 001 §5 (and paper 004 Fig. 2): log p(x) and the posteriors along straight lines between
test images of different classes."""
import jax
import jax.numpy as jnp
import numpy as np

from gcj import classifier, data, keys, ops, rejection
from gcj.suites.base import Context, Option, Suite, figure, pct

RECORDED_PAIRS = 100  # the interpolation paths whose curves a report keeps


def run(ctx: Context) -> dict:
    """log p(x) and posteriors along t·x_A + (1−t)·x_B (paper 001 Fig. 1/4, paper 004 Fig. 2).

    Pairs (``interpolation_pairs``): seeded random correctly classified test images of different
    classes, accepted; ``interpolation_steps`` values of t. Accepted means, by
    ``interpolation_rule``: "paper" (paper 001 §4.4, the default), log p(x) at least that of every
    test image (one threshold, at the highest test bits/dim: ``paper_rule``); "percentile", accepted
    at the first percentile threshold (per class, on log p(x|ŷ)). Reports the fraction of paths
    accepted at every t (``fraction_never_rejected``; ``_percentile``: under the percentile
    threshold, on the same paths), and each path's shape against the chord
    between its end points: "convex" (below the chord everywhere inside: a likelihood valley
    between the classes), "concave" (above it everywhere), else "mixed". Curves: the means over
    all pairs (``mean_log_px``, ``mean_posterior_a`` / ``_b``, ``[t]``: paper 001 Figs. 4 and 6)
    and those of the first ``RECORDED_PAIRS`` pairs (``log_px`` ``[pairs, t]``, ``posterior_a`` /
    ``_b``; to 0.01 nats and 1e-4), so that a paper-size run stays small.
    """
    o = ctx.request.options
    test, thresholds, key = ctx.test, ctx.percentile_thresholds, keys.named(ctx.key, "interpolation")
    num_pairs, num_t = o.interpolation_pairs, o.interpolation_steps
    thr = np.asarray(next(iter(thresholds.values()))) if thresholds else np.full(ctx.clf.num_classes, -np.inf)
    test_log_px = np.asarray(ops.log_marginal(jnp.asarray(ctx.ll_test)))
    lowest = float(test_log_px.min())  # paper 001: the threshold above every test image
    accepted_test = (test_log_px >= lowest if o.interpolation_rule == "paper"
                     else ~rejection.reject(ctx.ll_test, thr))
    ok = (ctx.ll_test.argmax(1) == test.labels) & accepted_test
    pool = np.flatnonzero(ok)
    a = pool[np.asarray(jax.random.randint(keys.named(key, "a"), (4 * num_pairs,), 0, len(pool)))]
    b = pool[np.asarray(jax.random.randint(keys.named(key, "b"), (4 * num_pairs,), 0, len(pool)))]
    keep = test.labels[a] != test.labels[b]
    a, b = a[keep][:num_pairs], b[keep][:num_pairs]
    ts = np.linspace(0.0, 1.0, num_t)
    xa, xb = data.to_float(test.images[a]), data.to_float(test.images[b])
    path = np.asarray(ts[None, :, None, None, None] * xa[:, None] + (1 - ts[None, :, None, None, None]) * xb[:, None])
    ll = classifier.batched_log_likelihoods(ctx.clf, path.reshape(-1, *ctx.clf.image_shape), ctx.batch_size, keys.named(key, "likelihood"))
    ll = ll.reshape(len(a), num_t, -1)
    log_px = np.asarray(ops.log_marginal(jnp.asarray(ll.reshape(-1, ll.shape[-1])))).reshape(len(a), num_t)
    post = np.exp(np.asarray(ops.log_posterior(jnp.asarray(ll.reshape(-1, ll.shape[-1]))))).reshape(ll.shape)
    accepted_percentile = ~rejection.reject(ll.reshape(-1, ll.shape[-1]), thr).reshape(len(a), num_t)
    accepted_all = log_px >= lowest if o.interpolation_rule == "paper" else accepted_percentile
    chord = log_px[:, :1] * (1 - ts[None]) + log_px[:, -1:] * ts[None]  # t=0 is x_B, t=1 is x_A
    gap = (log_px - chord)[:, 1:-1]
    shape = np.where((gap < 0).all(1), "convex", np.where((gap > 0).all(1), "concave", "mixed"))
    post_a, post_b = (post[np.arange(len(a)), :, test.labels[i]] for i in (a, b))
    paper = dict(threshold_log_px=lowest)
    if ctx.clf.family.density:
        paper["threshold_bits_per_dim"] = float(ops.bits_per_dim(lowest, ctx.clf.density_dims))
    return dict(num_pairs=int(len(a)), t=ts.tolist(), rule=o.interpolation_rule, paper_rule=paper,
                fraction_never_rejected=float(accepted_all.all(1).mean()),
                fraction_never_rejected_percentile=float(accepted_percentile.all(1).mean()),
                fraction_convex=float((shape == "convex").mean()),
                fraction_concave=float((shape == "concave").mean()),
                mean_gap_to_chord=float(gap.mean()), min_gap_to_chord_median=float(np.median(gap.min(1))),
                mean_log_px=log_px.mean(0).tolist(), mean_posterior_a=post_a.mean(0).tolist(),
                mean_posterior_b=post_b.mean(0).tolist(),
                log_px=np.round(log_px[:RECORDED_PAIRS], 2).tolist(),
                posterior_a=np.round(post_a[:RECORDED_PAIRS], 4).tolist(),
                posterior_b=np.round(post_b[:RECORDED_PAIRS], 4).tolist())


def table(i: dict, report: dict) -> list:
    rule = "paper 001's threshold" if i.get("rule", "paper") == "paper" else "percentile threshold"
    return [f"interpolation ({i['num_pairs']} pairs): never rejected ({rule}) {pct(i['fraction_never_rejected'])},"
            f" convex {pct(i['fraction_convex'])}, concave {pct(i['fraction_concave'])}, mean "
            f"log p(x) minus chord {i['mean_gap_to_chord']:.1f} nats"]


def plot(i: dict, ctx: Context, directory: str) -> None:
    with figure(f"{directory}/interpolation.png", 1, 2, figsize=(8, 3.5)) as (a1, a2):
        t = np.asarray(i["t"])
        for row in i["log_px"][:10]:
            a1.plot(t, row, lw=0.8)
        a1.plot(t, i["mean_log_px"], "k", lw=2, label=f"mean of {i['num_pairs']}")
        a1.set_xlabel("t  (x = t x_A + (1 - t) x_B)")
        a1.set_ylabel("log p(x) [nats]")
        a1.legend()
        a2.plot(t, i["mean_posterior_a"], label="p(y_A|x)")
        a2.plot(t, i["mean_posterior_b"], label="p(y_B|x)")
        a2.set_xlabel("t")
        a2.legend()


SUITE = Suite("interpolation", run, table, plot, options=(
    Option("interpolation_pairs", 50, "number of test image pairs (paper 001: ~1200-1500)."),
    Option("interpolation_steps", 24, "values of t on each path, 0 to 1 (paper 001: 100)."),
    Option("interpolation_rule", "paper", "interpolation: what accepts an image: 'paper' (paper 001: log p(x) "
           "at least every test image's) or 'percentile' (the first percentile threshold).",
           choices=("paper", "percentile")),
))
