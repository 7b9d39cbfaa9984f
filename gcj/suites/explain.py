"""Paper 002 §4.3: explanations read off the latent space of a family whose classes are unit
Gaussians in it (``Family.latent``: the IB-INN). Class similarity and App. B's expected pairwise
posterior beside the measured one (Fig. 8); the decision space of four automatically picked
inputs (Fig. 6: confident, ambiguous, uncertain between distinct classes, out-of-distribution);
the class means constrained to a plane and fine-tuned on training latents (Fig. 7, Voronoi cells);
class-posterior heatmaps (eqs. 14-21, Fig. 10), whose sum over positions is checked to be
log q(y|x)."""
import jax
import numpy as np
from matplotlib.patches import Ellipse
from scipy import stats

from gcj import classifier, explain, keys
from gcj.suites import ood
from gcj.suites.base import Context, Option, Suite, figure, pct

KINDS = ("confident", "ambiguous", "uncertain_distinct", "ood")


def latents(clf, images: np.ndarray, batch_size: int, key) -> tuple[np.ndarray, np.ndarray]:
    """(z ``[N, D]``, means ``[C, D]``) of uint8 or [0, 1] images, batched (the last batch padded:
    one compile)."""
    zs, means = [], None
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size]
        n = len(x)
        x = np.concatenate([x, np.repeat(x[-1:], batch_size - n, 0)])
        z, means = clf.latent(x / np.float32(255) if x.dtype == np.uint8 else x, jax.random.fold_in(key, i))
        zs.append(np.asarray(z)[:n])
    return np.concatenate(zs), np.asarray(means)


def pick(ll: np.ndarray, means: np.ndarray, uncertain_fraction: float = 0.05) -> dict:
    """Fig. 6's test inputs by rule: ``confident``, the most likely x (log p(x)) of those with
    max q(y|x) >= 0.99 (else the most confident); among the ``uncertain_fraction`` least confident,
    ``ambiguous`` is the one whose top-2 class means are closest, ``uncertain_distinct`` the one
    whose are farthest apart."""
    post = np.exp(np.asarray(classifier.log_posterior(ll)))
    conf, log_px = post.max(1), np.asarray(classifier.log_marginal(ll))
    sure = np.flatnonzero(conf >= 0.99)
    confident = int(sure[np.argmax(log_px[sure])]) if len(sure) else int(np.argmax(conf))
    unsure = np.argsort(conf)[:max(1, int(uncertain_fraction * len(conf)))]
    top2 = np.argsort(-ll[unsure], 1)[:, :2]
    gap = np.linalg.norm(means[top2[:, 0]] - means[top2[:, 1]], axis=1)
    return dict(confident=confident, ambiguous=int(unsure[np.argmin(gap)]),
                uncertain_distinct=int(unsure[np.argmax(gap)]))


def _example(kind, source, index, label, z, ll_row, means, top):
    post = np.exp(np.asarray(classifier.log_posterior(ll_row[None])))[0]
    r = explain.decision_space(z, means, top)
    return dict(kind=kind, source=source, index=int(index), label=None if label is None else int(label),
                posterior_top2=[round(float(post[c]), 4) for c in r["classes"][:2]],
                log_px=float(classifier.log_marginal(ll_row[None])[0]), **r)


def run(ctx: Context) -> dict:
    clf, top = ctx.clf, ctx.request.get("explain_top")
    grid = clf.latent_space.grid
    z, means = latents(clf, ctx.test.images, ctx.batch_size, keys.named(ctx.key, "explain", "test"))
    labels, num_classes = ctx.test.labels, clf.num_classes
    # Fig. 8 / App. B
    dist = np.asarray(explain.mean_distances(means))
    expected = np.asarray(explain.expected_pairwise_posterior(means))
    empirical = explain.empirical_pairwise_posterior(ctx.ll_test, labels, num_classes)
    upper = np.triu_indices(num_classes, 1)
    ok = np.isfinite(empirical[upper])
    e, m = expected[upper][ok], empirical[upper][ok]
    similarity = dict(distances=np.round(dist, 3).tolist(), expected=np.round(expected, 4).tolist(),
                      empirical=np.round(empirical, 4).tolist(), pairs=int(ok.sum()),
                      pearson=float(stats.pearsonr(e, m)[0]) if len(e) > 2 else None,
                      spearman=float(stats.spearmanr(e, m)[0]) if len(e) > 2 else None,
                      mean_abs_difference=float(np.mean(np.abs(e - m))),
                      mean_ratio=float(np.mean(m) / np.mean(e)))
    line = explain.along_line(z, labels, means, num_classes)  # why measured and expected differ
    off = ~np.eye(num_classes, dtype=bool)
    similarity.update(along_line_offset=np.round(line["offset"], 3).tolist(),
                      along_line_spread=np.round(line["spread"], 3).tolist(),
                      mean_along_line_offset=float(np.nanmean(line["offset"][off])),
                      mean_along_line_spread=float(np.nanmean(line["spread"][off])))
    # Fig. 6
    examples = [_example(k, "test", i, labels[i], z[i], ctx.ll_test[i], means, top)
                for k, i in pick(ctx.ll_test, means).items()]
    images = [ctx.test.images[ex["index"]] for ex in examples]
    zs = [z[ex["index"]] for ex in examples]
    if ctx.request.ood_datasets:
        name = ctx.request.ood_datasets[0]  # as the ood suite scores it
        out_images, ll_out = ood.ood_set(ctx, name)
        post = np.exp(np.asarray(classifier.log_posterior(ll_out))).max(1)
        log_px = np.asarray(classifier.log_marginal(ll_out))
        pool = np.flatnonzero(post < 0.9)
        i = int(pool[np.argmin(log_px[pool])]) if len(pool) else int(np.argmin(log_px))
        z_out, _ = latents(clf, out_images[i:i + 1], ctx.batch_size, keys.named(ctx.key, "explain", "ood"))
        examples.append(_example("ood", name, i, None, z_out[0], ll_out[i], means, top))
        images.append(out_images[i])
        zs.append(z_out[0])
    # Fig. 7: the means constrained to a plane, fitted on training latents, judged on the test ones
    z_train, _ = latents(clf, ctx.train.images, ctx.batch_size, keys.named(ctx.key, "explain", "train"))
    fit = jax.jit(explain.fit_plane, static_argnums=2)(z_train, ctx.train.labels, num_classes)
    plane_acc = float(np.mean(np.asarray(explain.plane_predict(z, fit)) == labels))
    # Fig. 10 and eq. 21 on (at most) 500 test images
    n = min(len(z), 500)
    q = np.asarray(explain.posterior_heatmaps(z[:n], means, grid))
    log_q = np.asarray(classifier.log_posterior(-0.5 * np.sum((z[:n, None] - means[None]) ** 2, -1)))
    ctx.arrays["explain"] = dict(images=np.stack(images), means=means, expected=expected, empirical=empirical,
                                 heatmaps=np.asarray(explain.posterior_heatmaps(np.stack(zs), means, grid)),
                                 plane_points=np.asarray(explain.project(z[:1000], fit)),
                                 plane_labels=labels[:1000], plane_means=np.asarray(fit["means"]))
    plane = dict(accuracy=plane_acc, full_accuracy=float(np.mean(ctx.ll_test.argmax(1) == labels)),
                 train_images=int(len(ctx.train.labels)), means=np.round(np.asarray(fit["means"]), 3).tolist())
    return dict(similarity=similarity, decision_space=examples, top=top, grid=list(grid), plane=plane,
                heatmap_sum_max_error=float(np.max(np.abs(q.sum((1, 2)) - log_q))), heatmap_images=n)


def table(b: dict, report: dict) -> list:
    s = b["similarity"]
    corr = "n/a" if s["pearson"] is None else f"{s['pearson']:.3f} (Spearman {s['spearman']:.3f})"
    lines = [f"explain               expected vs measured pairwise posterior over {s['pairs']} pairs: "
             f"Pearson {corr}, mean |difference| {s['mean_abs_difference']:.4f}",
             *([f"  class latents along the line between two means: {s['mean_along_line_offset']:.2f} x half "
                f"the distance from the midpoint, sd {s['mean_along_line_spread']:.2f} (App. B assumes 1 and 1)"]
               if "mean_along_line_offset" in s else []),
             f"  heatmaps: sum over positions minus log q(y|x), max {b['heatmap_sum_max_error']:.1e} "
             f"nats ({b['heatmap_images']} test images)"]
    p = b["plane"]
    lines.append(f"  means in a plane (Fig. 7; fitted on {p['train_images']} training latents): test accuracy "
                 f"{pct(p['accuracy'])} (all dimensions {pct(p['full_accuracy'])})")
    for ex in b["decision_space"]:
        lines.append(f"  {ex['kind']:<19} {ex['source']} #{ex['index']}: top classes {ex['classes'][:2]} "
                     f"q {ex['posterior_top2']}, at ({ex['point'][0]:.2f}, {ex['point'][1]:.2f}), "
                     f"means at {ex['means'][0][0]:.2f} / {ex['means'][1][0]:.2f}")
    return lines


def plot(b: dict, ctx: Context, directory: str) -> None:
    a = ctx.arrays["explain"]
    examples = b["decision_space"]
    # 90% of a unit Gaussian's mass: along the line, and radially in the other top - 2 dimensions
    half_h, half_v = stats.norm.ppf(0.95), np.sqrt(stats.chi2.ppf(0.9, max(b["top"] - 2, 1)))
    with figure(f"{directory}/decision_space.png", 1, len(examples), figsize=(3.2 * len(examples), 3.2)) as axes:
        for ax, ex in zip(np.atleast_1d(axes), examples):
            for (h, v), colour in zip(ex["means"][:2], ("tab:red", "tab:blue")):
                ax.add_patch(Ellipse((h, v), 2 * half_h, 2 * half_v, fill=False, color=colour))
            hs, vs = zip(*ex["means"])
            ax.scatter(hs[:2], vs[:2], c=["tab:red", "tab:blue"], zorder=3)
            ax.scatter(hs[2:], vs[2:], c="grey", s=12, zorder=3)
            ax.scatter(*ex["point"], c="k", marker="x", zorder=4)
            ax.set_title(f"{ex['kind']} ({ex['source']} #{ex['index']})\nclasses {ex['classes'][:2]}, "
                         f"q {ex['posterior_top2']}", fontsize=7)
            ax.set_xlabel("along mean 1 -> mean 2", fontsize=7)
            ax.set_ylabel(f"radial, top-{b['top']} span", fontsize=7)
    n = len(a["expected"])
    with figure(f"{directory}/class_similarity.png", 1, 3, figsize=(11, 3.4)) as (a1, a2, a3):
        for ax, mat, title in ((a1, a["expected"], "expected (App. B)"), (a2, a["empirical"], "measured")):
            im = ax.imshow(np.where(np.eye(n, dtype=bool), np.nan, mat), cmap="viridis")
            ax.set_title(f"pairwise posterior, {title}", fontsize=8)
            ax.figure.colorbar(im, ax=ax, fraction=0.046)
        upper = np.triu_indices(n, 1)
        a3.scatter(a["expected"][upper], a["empirical"][upper], s=8)
        lim = max(np.nanmax(a["empirical"][upper]), np.nanmax(a["expected"][upper]))
        a3.plot([0, lim], [0, lim], "k--", lw=1)
        a3.set_xlabel("expected from ||mu_i - mu_j||")
        a3.set_ylabel("measured on test images")
    with figure(f"{directory}/decision_plane.png", figsize=(5.5, 5)) as ax:
        pts, m = a["plane_points"], a["plane_means"]
        lo, hi = np.minimum(pts.min(0), m.min(0)) - 1, np.maximum(pts.max(0), m.max(0)) + 1
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
        d2 = (gx[..., None] - m[:, 0]) ** 2 + (gy[..., None] - m[:, 1]) ** 2
        density = np.exp(-0.5 * d2).max(-1)   # each component's density, the largest
        ax.imshow(d2.argmin(-1), origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]), cmap="tab10",
                  alpha=0.25 + 0.5 * density, vmin=0, vmax=9, interpolation="nearest")
        ax.contour(gx, gy, d2.argmin(-1), levels=np.arange(len(m)) + 0.5, colors="k", linewidths=0.7)
        ax.scatter(pts[:, 0], pts[:, 1], c=a["plane_labels"], cmap="tab10", vmin=0, vmax=9, s=3)
        ax.scatter(m[:, 0], m[:, 1], c="k", s=30)
        for c, (u, v) in enumerate(m):
            ax.annotate(str(c), (u, v), fontsize=9, xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"class means in a plane: test accuracy {100 * b['plane']['accuracy']:.1f}%", fontsize=8)
    heat, images = a["heatmaps"], a["images"]
    show = 3
    with figure(f"{directory}/heatmaps.png", len(examples), show + 1, figsize=(1.9 * (show + 1), 1.9 * len(examples))) as axes:
        for row, (ex, img, q) in enumerate(zip(examples, images, heat)):
            axes[row, 0].imshow(np.asarray(img)[..., 0], cmap="gray")
            axes[row, 0].set_title(f"{ex['kind']}", fontsize=7)
            total = q.sum((0, 1))
            for col, c in enumerate(np.argsort(-total)[:show], start=1):
                axes[row, col].imshow(q[..., c], cmap="RdBu_r", vmin=-np.abs(q).max(), vmax=np.abs(q).max())
                axes[row, col].set_title(f"class {c}: log q {total[c]:.2f}", fontsize=7)
        for ax in np.ravel(axes):
            ax.set_xticks([])
            ax.set_yticks([])


def check_model(clf) -> None:
    clf.latent_space  # noqa: B018 (raises for a family without the latent, naming those with it)


SUITE = Suite("explain", run, table, plot, check_model=check_model, needs_train=True, reads=("ood_datasets", "ood_split", "max_images", "data_dir"),
              options=(Option("explain_top", 5, "classes spanning the decision space of Fig. 6 "
                                                "(paper 002: 5)."),))
