"""The score family's variational bound (``gcj.diffusion.elbo`` via ``gcj.models.score.class_bounds``)
against its exact ODE likelihoods, on the same test images, dequantization and key: the gap in
bits/dim (all classes, and the exact winner's), the bound's own accuracy, how often its argmax is
the exact one, where the exact winner ranks under the bound, and the seconds of each (jitted,
after a warm-up batch). Then ``classify='adaptive'`` against the exact classifier, its margin fitted on
``--calibration_images`` validation images (held out from training; the ``--margin_quantile`` of how far below the best
bound the exact winner's bound lies), every class allowed: predictions,
the winner's log-likelihood (judged within the ODE's own reproducibility: the largest difference
between the exact winner and the same pair solved again alone) and the rejections.

    .venv/bin/python bench/score_bound.py --workdir pretrained/sbgc_digits --num_images 360 --draws 64 \\
        --adaptive_top 3 --calibration_images 0 --out bench/results/score_bound_sbgc_digits.json

``--exact_from <report>_log_likelihoods.npz`` (``evaluate.py --save_log_likelihoods``): the test
images an exact evaluation scored, its exact log-likelihoods, and its keys and batch size (so
the same dequantized images and probes); exact is then timed on ``--timing_images`` of them, not
scored again. Each batch is compiled before it is timed (ahead of time: no batch is run twice)
and the last one padded, as evaluate.py does.

Part ``redraw`` scores the same images exactly once more under other draws (``--redraws``; another
dequantization and probe per image) and reports how often that agrees with the first: the exact
classifier's own reproducibility, the floor for any agreement with one draw of it:

    .venv/bin/python bench/score_bound.py --workdir pretrained/sbgc_digits --num_images 360 --parts redraw \
        --out bench/results/score_redraw_sbgc_digits.json

Part ``oracle`` is ``classify='adaptive'`` given a perfect ranking: exact's best two classes of
each image solved again, each alone as adaptive solves them (the same image and probes; only the
batch's shape differs). Its agreement is the most any classifier that solves the ODE again can
keep of exact's decisions:

    .venv/bin/python bench/score_bound.py --workdir pretrained/sbgc_fashion_mnist --parts oracle \
        --exact_from pretrained/sbgc_fashion_mnist/report/report_log_likelihoods.npz \
        --out bench/results/score_oracle_sbgc_fashion_mnist.json

gcj's methods run as evaluate.py runs them (each batch split over the CPU devices it chooses); the
score_flow method on one device, as written.
"""
import argparse
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gcj  # noqa: E402
from gcj import cli, data  # noqa: E402
from gcj.models import score  # noqa: E402
from likelihood_speed import reference  # noqa: E402
from machine import cpu_model  # noqa: E402
from score_attack import wilson  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="pretrained/sbgc_digits")
    p.add_argument("--num_images", type=int, default=0,
                   help="test images (0: 40, or with --exact_from all it scored; else its first n)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--draws", default="16,64,256", help="bound draws per (image, class)")
    p.add_argument("--adaptive_top", type=int, default=3, help="classify='adaptive': classes solved exactly")
    p.add_argument("--adaptive_draws", type=int, default=64)
    p.add_argument("--adaptive_rank", default="bound", choices=score.RANKS,
                   help="classify='adaptive': what ranks the classes (the bound, or a loose ODE solve)")
    p.add_argument("--adaptive_rank_tol", type=float, default=1e-4, help="--adaptive_rank ode: its rtol = atol")
    p.add_argument("--loose_tols", default="1e-3,1e-4",
                   help="part 'loose': the tolerances (rtol = atol) of the loose solves ranked like the bound")
    p.add_argument("--calibration_images", type=int, default=200,
                   help="validation images the adaptive margin is fitted on (0: no margin, --adaptive_top classes)")
    p.add_argument("--margin_quantile", type=float, default=0.995)
    p.add_argument("--parts", default="bound,adaptive,score_flow",
                   help="what to run, of bound, loose, adaptive, oracle, redraw, score_flow (the score_flow method timed on the first "
                        "batch; alone with --exact_from: its bits/dim against the saved exact ones, without "
                        "exact's timing)")
    p.add_argument("--redraws", type=int, default=1,
                   help="part 'redraw': exact scorings under other draws, each against the first")
    p.add_argument("--cpu_devices", type=int, default=0,
                   help="CPU devices each batch is split over (0: as evaluate.py chooses)")
    p.add_argument("--exact_from", default=None,
                   help="evaluate.py --save_log_likelihoods file: its images, exact scores, keys and batch")
    p.add_argument("--timing_images", type=int, default=8, help="with --exact_from: images exact is timed on")
    p.add_argument("--score_flow_images", type=int, default=8,
                   help="images of the first batch the score_flow method solves")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    parts = set(args.parts.split(","))
    known = {"bound", "loose", "adaptive", "oracle", "redraw", "score_flow"}
    if parts - known:
        raise SystemExit(f"--parts: unknown {sorted(parts - known)}; use some of {', '.join(sorted(known))}")
    cli.use_cpu_devices(args.cpu_devices)
    # exact: every class by the ODE, whatever the model's config says (adaptive is built below)
    single = gcj.load(args.workdir, overrides={"model.score.classify": "exact"})  # (the score_flow method's, on one device)
    # gcj's methods as evaluate.py runs them: each batch split over the devices
    clf, put = gcj.classifier.local_data_parallel(single)
    module, ode = gcj.classifier.build_module(clf.config), clf.config.model.score.ode
    test = data.load_dataset(clf.config.data, "test")
    saved = np.load(args.exact_from) if args.exact_from else None
    if saved is None:
        chosen, key = np.arange(min(args.num_images or 40, len(test.labels))), jax.random.key(0)
    else:  # evaluate.py's images, keys and batches (gcj.evaluate.log_likelihoods_path)
        chosen, args.batch = saved["test_indices"][:args.num_images or None], int(saved["batch_size"])
        key = gcj.keys.named(jax.random.key(int(saved["seed"])), "test", "likelihood")
        if not np.array_equal(saved["test_labels"][:len(chosen)], test.labels[chosen]):
            raise SystemExit(f"{args.exact_from} does not hold this test set's labels")
    x_all, y_all = data.to_float(test.images[chosen]), test.labels[chosen]
    dim = math.prod(x_all.shape[1:])
    exact_fn = jax.jit(clf.log_likelihood_fn)

    def solve(params, x, k, tol=None, classes=None):  # the ODE likelihoods, exact or at rtol = atol = tol
        return score.class_likelihoods(module, ode if tol is None else score.loose(ode, tol), params, x, k, classes)

    def run(fn, images=x_all, *per_image, batch=None):  # fn(x, key, *per_image arrays of the batch)
        batch = batch or args.batch
        size = -(-min(batch, len(images)) // jax.local_device_count()) * jax.local_device_count()

        def chunk(a, i):  # padded with its last row to the devices' multiple (one compile), as evaluate.py
            a = np.asarray(a[i:i + batch])
            return put(jnp.asarray(np.concatenate([a, np.repeat(a[-1:], size - len(a), 0)]) if len(a) < size else a))
        compiled = jax.jit(fn).lower(chunk(images, 0), key, *(chunk(a, 0) for a in per_image)).compile()
        out, seconds = [], 0.0
        for i in range(0, len(images), batch):
            t0 = time.time()
            out.append(np.asarray(compiled(chunk(images, i), jax.random.fold_in(key, i),
                                           *(chunk(a, i) for a in per_image)))[:len(images) - i])
            seconds += time.time() - t0
        return np.concatenate(out), seconds

    # the adaptive margin, fitted on validation images: the --margin_quantile of how far below the
    # best estimate the exact winner's estimate lies (the smallest margin that keeps that share of decisions)
    if args.adaptive_rank == "bound":
        rank_fn = jax.jit(lambda x, k: score.class_bounds(module, ode, clf.params, x, k, args.adaptive_draws))
    else:
        rank_fn = jax.jit(lambda x, k: solve(clf.params, x, k, args.adaptive_rank_tol).logp)
    margin, calibration = None, None
    if args.calibration_images and "adaptive" in parts:
        _, val = data.load_train_val(clf.config)  # held out from training, as the conformal thresholds
        x_cal = data.to_float(val.images[:args.calibration_images])
        exact_cal, _ = run(lambda x, k: exact_fn(clf.params, x, k), x_cal)
        bound_cal, _ = run(rank_fn, x_cal)
        lag = bound_cal.max(1) - bound_cal[np.arange(len(x_cal)), exact_cal.argmax(1)]
        margin = float(np.quantile(lag, args.margin_quantile))
        calibration = dict(validation_images=len(x_cal), quantile=args.margin_quantile, margin_nats=margin,
                           lag_quantiles_nats={str(q): float(np.quantile(lag, q)) for q in (0.5, 0.9, 0.99, 1.0)})
        print(json.dumps(dict(calibration=calibration)))

    if saved is None:
        exact, exact_s = run(lambda x, k: exact_fn(clf.params, x, k))
    else:  # scored by evaluate.py; timed here on a few of the images (what the speedups need)
        exact, exact_s = saved["test"][:len(chosen)], None
        if parts & {"bound", "loose", "adaptive"}:
            n = min(args.timing_images, len(y_all))
            exact_s = run(lambda x, k: exact_fn(clf.params, x, k), x_all[:n], batch=n)[1] * len(y_all) / n
    win = exact.argmax(1)
    apart = np.diff(np.sort(exact, 1)[:, -2:], axis=1)[:, 0]  # how far apart exact's best two classes are
    result = dict(workdir=args.workdir, exact_from=args.exact_from, num_images=int(len(y_all)),
                  num_probes=int(ode.num_probes),
                  cpu=cpu_model(), devices=len(jax.local_devices()), batch=args.batch,
                  exact=dict(accuracy=float(np.mean(win == y_all)), winner_margin_nats_median=float(np.median(apart))),
                  bound={})
    if exact_s is not None:
        result["exact"]["seconds_per_image"] = exact_s / len(y_all)

    def ranking(est, seconds):  # a cheap estimate of every class against the exact values
        gap = (exact - est) / (dim * math.log(2))  # bits/dim, > 0: the estimate below
        rank = (est > est[np.arange(len(win)), win][:, None]).sum(1)  # 0: the exact winner is first
        counts = np.bincount(rank, minlength=clf.num_classes)
        return dict(
            accuracy=float(np.mean(est.argmax(1) == y_all)),
            argmax_agrees_with_exact=float(np.mean(est.argmax(1) == win)),
            exact_winner_rank=counts.tolist(),
            # classify='adaptive' with adaptive_top = k keeps the exact prediction iff rank < k
            prediction_kept_by_top_k=(np.cumsum(counts) / len(rank)).tolist(),
            smallest_top_k_keeping_995=int(np.argmax(np.cumsum(counts) >= 0.995 * len(rank)) + 1),
            # how far below the best estimate the exact winner's lies (what a margin must cover)
            winner_lag_nats_quantiles={str(q): float(np.quantile(est.max(1) - est[np.arange(len(win)), win], q))
                                       for q in (0.5, 0.9, 0.99, 1.0)},
            gap_bits_per_dim_all_classes=float(gap.mean()),
            gap_bits_per_dim_exact_winner=float(gap[np.arange(len(win)), win].mean()),
            gap_bits_per_dim_exact_winner_sd=float(gap[np.arange(len(win)), win].std()),
            seconds_per_image=seconds / len(y_all), speedup_vs_exact=exact_s / seconds)

    def agreement(ll, tol=None):  # what must equal exact's: per image, and the winner's |difference|
        diff = np.abs(ll.max(1) - exact.max(1))
        same = dict(prediction=ll.argmax(1) == win)
        if tol is not None:  # within the exact solve's own spread (the same draw solved again)
            same["winner_log_likelihood"] = diff <= tol
        for name, t in (clf.thresholds or {}).items():
            if name.startswith("p"):
                same[f"rejection_{name}"] = (gcj.rejection.reject(ll, np.asarray(t))
                                             == gcj.rejection.reject(exact, np.asarray(t)))
        return same, diff

    def summary(same, diff, tol=None):  # its shares, and how close exact's best two were where the predictions differ
        changed = apart[~same["prediction"]]
        out = dict(agreement={k: float(v.mean()) for k, v in same.items()},
                   prediction_agreement_95=wilson(float(same["prediction"].mean()), len(win)),
                   winner_abs_diff_nats=dict(median=float(np.median(diff)), max=float(diff.max())),
                   disagreements_exact_best_two_apart_nats=sorted(np.round(changed, 3).tolist()),
                   all_agree=float(np.mean(np.all(np.stack(list(same.values())), 0))))
        if tol is not None:  # runner-up within twice the solver's spread
            out["disagreements_with_a_tie"] = int(np.sum(changed <= 2 * tol))
        return out

    for n in map(int, args.draws.split(",")) if "bound" in parts else ():
        result["bound"][str(n)] = ranking(*run(jax.jit(lambda x, k, n=n: score.class_bounds(module, ode, clf.params, x, k, n))))
        print(json.dumps({n: result["bound"][str(n)]}))
    # the loose solves: the same image and probes as exact, at rtol = atol = tol
    for tol in map(float, args.loose_tols.split(",")) if "loose" in parts else ():
        ll, s = run(jax.jit(lambda x, k, tol=tol: solve(clf.params, x, k, tol).logp))
        result.setdefault("loose", {})[str(tol)] = ranking(ll, s)
        print(json.dumps({f"loose {tol}": result["loose"][str(tol)]}))
    if parts & {"adaptive", "oracle"}:
        # the ODE's own reproducibility: the exact winner solved again alone (same key: the same image
        # and probes), as classify='adaptive' solves a class; only the batch shape differs, which
        # changes the rounding and so the adaptive steps: this spread is the tolerance any re-solve
        # of the same (image, class) carries. (Part oracle solves exact's runner-up too.)
        best_two = np.argsort(exact, 1)[:, :-3:-1].astype(np.int32)
        again = [run(jax.jit(lambda x, k, w: solve(clf.params, x, k, classes=w).logp), x_all, best_two[:, j:j + 1])[0][:, 0]
                 for j in range(1 + ("oracle" in parts))]
        noise = np.abs(again[0] - exact.max(1))
        tol = float(noise.max())
        result["exact"]["resolve_abs_diff_nats"] = dict(median=float(np.median(noise)), max=tol)
    if "oracle" in parts:
        # classify='adaptive' with a perfect ranking: exact's best two classes, each solved again
        # alone; the others known to lie below. The most any classifier that solves the ODE again
        # can agree with exact's decisions (only a replay of exact's own batch would do better)
        ll = np.full_like(exact, -np.inf)
        ll[np.arange(len(win))[:, None], best_two] = np.stack(again, 1)
        same, diff = agreement(ll, tol)
        result["oracle"] = summary(same, diff, tol)
        print(json.dumps(dict(oracle=result["oracle"])))
    if "adaptive" in parts:
        # classify='adaptive': the same images and keys; what must equal exact's
        top = clf.num_classes if margin is not None else args.adaptive_top

        def adaptive_fn(x, k):
            ll, solved = score.adaptive_likelihoods(module, ode, clf.params, x, k, args.adaptive_draws, top, margin,
                                                    args.adaptive_rank, args.adaptive_rank_tol)
            return jnp.concatenate([ll, solved.astype(ll.dtype)], 1)
        both, s = run(jax.jit(adaptive_fn))
        adaptive, solved = both[:, :clf.num_classes], both[:, clf.num_classes:] > 0.5
        same, diff = agreement(adaptive, tol)
        result["adaptive"] = dict(top=top, margin_nats=margin, rank=args.adaptive_rank,
                                  rank_tol=args.adaptive_rank_tol if args.adaptive_rank == "ode" else None, calibration=calibration, draws=args.adaptive_draws,
                                  classes_solved_mean=float(solved.sum(1).mean()),
                                  classes_solved_counts=np.bincount(solved.sum(1), minlength=clf.num_classes + 1).tolist(),
                                  seconds_per_image=s / len(y_all),
                                  speedup_vs_exact=exact_s / s, accuracy=float(np.mean(adaptive.argmax(1) == y_all)),
                                  **summary(same, diff, tol))
        print(json.dumps(dict(adaptive=result["adaptive"])))
    # the exact classifier against itself under other draws (another dequantization and probe for
    # every image, fold_in(batch key, r)): how often its own decisions stand, the floor under
    # which no cheaper classifier's agreement with one draw of it means much
    for r in range(1, args.redraws + 1) if "redraw" in parts else ():
        other, _ = run(lambda x, k, r=r: exact_fn(clf.params, x, jax.random.fold_in(k, r)))
        same, diff = agreement(other)
        result.setdefault("redraw", {})[str(r)] = dict(accuracy=float(np.mean(other.argmax(1) == y_all)),
                                                       **summary(same, diff))
        print(json.dumps({f"redraw {r}": result["redraw"][str(r)]}))
    # the score_flow method (SciPy RK45 on the host, one class at a time: bench/likelihood_speed.py)
    # on exact's first batch, with its dequantization and probe (key fold_in(key, 0)); network
    # evaluations per image (summed over classes) beside exact's on the same images
    if "score_flow" in parts:
        n, k0 = min(args.score_flow_images, args.batch, len(y_all)), jax.random.fold_in(key, 0)
        xc, probes = score.ode_inputs(ode, jnp.asarray(x_all[:args.batch]), k0)  # the first batch's,
        x_ref, xc = jnp.asarray(x_all[:n]), xc[:n]                                # its first n images
        t0 = time.time()
        ll_ref, nfe_ref = reference(module, single.params, xc, probes, ode, clf.num_classes)
        ref_s = time.time() - t0
        # exact's network evaluations on these images (counted anew, with their own dequantization)
        nfe = np.asarray(jax.jit(lambda x, k: solve(single.params, x, k).nfe)(x_ref, k0))

        def bpd(ll):
            return np.asarray(gcj.diffusion.bits_per_dim(jnp.asarray(ll), dim))
        per_class = float(nfe.mean())
        result["score_flow"] = dict(
            num_images=len(x_ref), seconds_per_image=ref_s / len(x_ref),
            network_evaluations_per_image=int(nfe_ref),  # (each evaluation covers the whole batch)
            prediction_agrees_with_exact=float(np.mean(ll_ref.argmax(1) == exact[:len(x_ref)].argmax(1))),
            # bits/dim of every (image, class) pair: the same dequantized images and probe
            bits_per_dim_exact=float(np.mean(bpd(exact[:len(x_ref)]))), bits_per_dim_score_flow=float(np.mean(bpd(ll_ref))),
            bits_per_dim_max_abs_difference=float(np.max(np.abs(bpd(exact[:len(x_ref)]) - bpd(ll_ref)))))
        result["exact"]["network_evaluations_per_image"] = float(nfe.sum(1).mean())
        if "adaptive" in result:
            if args.adaptive_rank == "bound":  # the bound's draws, or the loose solves; then the exact solves
                ranked = args.adaptive_draws * clf.num_classes
            else:
                ranked = float(np.asarray(jax.jit(lambda x, k: solve(single.params, x, k, args.adaptive_rank_tol).nfe)(
                    x_ref, k0)).sum(1).mean())
            result["adaptive"]["network_evaluations_per_image"] = (
                ranked + result["adaptive"]["classes_solved_mean"] * per_class)
        for name in ("exact", "adaptive"):
            if "seconds_per_image" in result.get(name, {}):
                result[name]["speedup_vs_score_flow"] = (result["score_flow"]["seconds_per_image"]
                                                         / result[name]["seconds_per_image"])
        print(json.dumps(dict(score_flow=result["score_flow"])))
    print(json.dumps(result["exact"]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
