"""The score-based classifier attacked through its probability-flow ODE (paper 004 Tab. 3): PGD
L∞ 8/255 and L2 0.5 on the class log-likelihoods, every gradient an EoT mean over Hutchinson
probe draws (``jax.grad`` through the diffrax solve: second order, the divergence term included).
Reports the seconds per attacked image and per attack gradient (compiled beforehand), the drift
evaluations (NFE) per likelihood, the peak
memory of the process, and how often the returned images are adversarial under fresh draws.
(``forward_seconds_per_image_all_classes`` is the first all-class scoring of the candidate images,
its compilation included; ``bench/score_bound.py`` times the forward alone.) Every figure is
the wall time of this process: on a CPU shared with other jobs it is that share's.

    taskset -c 0 .venv/bin/python bench/score_attack.py --workdir pretrained/sbgc_digits --num_images 4 \
        --steps 5 --eot 2 --cpu_devices 1 --out bench/results/score_attack_sbgc_digits.json

(one core: the figures are for one core of this machine).

``--through elbo`` ascends the variational bound instead (``classifier.surrogate(clf, 'elbo')``,
``model.score.elbo_draws`` draws, no ODE) and judges the returned images by the exact ODE
classifier on fresh draws; ``accuracy_under_fresh_draws`` comes with its 95% Wilson interval:

    .venv/bin/python bench/score_attack.py --workdir pretrained/sbgc_digits --through elbo \
        --num_images 50 --steps 20 --eot 2 --check_draws 4 --out bench/results/score_attack_elbo_sbgc_digits.json

and the same PGD through the ODE on those 50 images (the same seed picks them), for the cost and
the success side by side, 25 images at a time (resumable: a rerun starts after the last chunk
done, in chunks of its own ``--chunk``, and the judging after its last fresh draw; 40 ODE
gradients per image and threat at ~6 s each on 2 CPU cores, about 4 min per image uncontended;
on one GPU (H200, with PY=python3) a chunk of 25 took 212 s, or 100 to 200 s with
``--eot_parallel``; on a 24 GB CPU machine use ``--chunk 5``: 25 outgrew its memory):

    nohup .venv/bin/python bench/score_attack.py --workdir pretrained/sbgc_digits --through ode --chunk 25 \
        --num_images 50 --steps 20 --eot 2 --check_draws 4 --judge_probes 10 \
        --out bench/results/score_attack_ode_sbgc_digits.json > workdirs/score_attack_ode.log 2>&1 &

``--judge_probes K`` judges the returned images and their clean originals once more by the exact
classifier with K Hutchinson probes instead of the model's one (``accuracy_judge``,
``clean_accuracy_judge``): if the attacked images fool a less noisy likelihood more often, part of
the robustness under fresh draws is the noise of the one-probe estimate, not the model.

The checks for gradient masking run the same attack on other radii (``--linf_eps``, ``--l2_eps``,
``--norms``), with more draws per gradient (``--eot``) or steps, on chosen images
(``--test_indices``: e.g. those an earlier run left robust), or Square instead of PGD
(``--square_queries``: the black-box check, no gradients, one fixed draw as its oracle);
``bench/score_gradients.py`` measures how alike the gradients of independent draws are.

Paper 004 attacked 216 CIFAR-10 images with Foolbox PGD on the negative cross-entropy (90 min per
forward + backward pass on a V100); here PGD ascends the margin loss (gcj's strongest for
generative classifiers), from a random start, step eps/2 (L∞: the few steps a CPU hour allows
must be able to reach the boundary of the ball) and the step size 0.25 eps for L2.
"""
import argparse
import json
import os
import resource
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gcj  # noqa: E402
from gcj import attacks, classifier, cli, data  # noqa: E402
from gcj.models import score  # noqa: E402
from machine import cpu_model  # noqa: E402


def wilson(p: float, n: int, z: float = 1.96) -> list:
    """The 95% Wilson score interval of a proportion ``p`` of ``n``."""
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(centre - half), float(centre + half)]


def candidates(test: data.Split, key: jax.Array, num_images: int) -> np.ndarray:
    """The test indices an attack of ``num_images`` picks from (a permutation by ``key``, with room
    for the misclassified): the first ``num_images`` of them that ``correct`` keeps are attacked."""
    return np.asarray(jax.random.permutation(key, len(test.labels)))[:num_images + num_images // 5 + 4]


def correct(clf, put, x, labels, key) -> np.ndarray:
    """The positions of ``x`` that ``clf`` classifies correctly (one draw, key fold_in(key, 1))."""
    ll = np.asarray(clf.class_log_likelihoods(put(x), jax.random.fold_in(key, 1)))
    return np.flatnonzero(ll.argmax(1) == labels)


def attacked(clf, put, test: data.Split, key: jax.Array, num_images: int) -> tuple:
    """``(order, ok)``: the test indices scored (``candidates``, then as many more of the same
    permutation, batch after batch, while fewer than ``num_images`` are classified correctly, as
    on a model that misclassifies many) and the positions in ``order`` of the first
    ``num_images`` that ``correct`` keeps."""
    order = candidates(test, key, num_images)
    ok = correct(clf, put, data.to_float(test.images[order]), test.labels[order], key)
    perm, m = np.asarray(jax.random.permutation(key, len(test.labels))), len(order)
    while len(ok) < num_images and len(order) < len(perm):
        more = perm[len(order):len(order) + m]
        ok = np.concatenate([ok, len(order) + correct(clf, put, data.to_float(test.images[more]), test.labels[more], key)])
        order = perm[:len(order) + len(more)]
    return order, ok[:num_images]


EXACT = {"model.score.classify": "exact"}  # every class by the ODE, whatever the model's config says


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="pretrained/sbgc_digits")
    p.add_argument("--num_images", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--eot", type=int, default=2, help="probe draws per gradient")
    p.add_argument("--check_draws", type=int, default=10, help="fresh draws the results are judged on")
    p.add_argument("--through", choices=("ode", "elbo"), default="ode",
                   help="what PGD ascends: the exact ODE likelihoods, or the variational bound")
    p.add_argument("--ode_gradient_images", type=int, default=8,
                   help="--through elbo: also time the exact ODE's attack gradient on the first n images")
    p.add_argument("--chunk", type=int, default=0,
                   help="images attacked at a time (0: all at once): bounds the memory of the ODE's gradients; "
                        "each chunk is kept in <out>.partial.npz, so a rerun resumes after the last one")
    p.add_argument("--stop_after", type=int, default=0,
                   help="end this process after this many pieces of work, each kept in the partial (an attacked "
                        "chunk, a fresh draw judged; 0: run to the end): a rerun goes on from there. XLA:CPU "
                        "keeps memory from the ODE's gradients of a 28x28 model (measured: 0.3 to 0.45 GB a minute, "
                        "21 GB by the end of a chunk of 2 images, none returned between chunks), so a long CPU "
                        "attack runs best a process per chunk")
    p.add_argument("--judge_probes", type=int, default=0,
                   help="also judge the returned images (and their clean originals) by the exact classifier with "
                        "this many Hutchinson probes (0: not): how much of the robustness is the likelihood's noise")
    p.add_argument("--eot_parallel", action="store_true",
                   help="each gradient's EoT draws at once (attacks.pgd(eot_parallel=True)): on a GPU about one "
                        "draw's time; the same draws (values up to float rounding, which the ODE's adaptive "
                        "steps can amplify), so a rerun may mix chunks made either way")
    p.add_argument("--linf_eps", type=float, default=8, help="the L∞ radius, in steps of 1/255 (paper 004: 8)")
    p.add_argument("--l2_eps", type=float, default=0.5, help="the L2 radius (paper 004: 0.5)")
    p.add_argument("--norms", default="linf,l2", help="the threats attacked, in this order")
    p.add_argument("--square_queries", type=int, default=0,
                   help="run Square (the black-box score attack, L∞ only; one fixed likelihood draw as its oracle) "
                        "with this many queries per image instead of PGD (0: PGD)")
    p.add_argument("--test_indices", default="",
                   help="comma-separated test images to attack (those classified correctly) instead of --num_images "
                        "picked by the seed (e.g. the ones an earlier run's attack left robust: its test_indices)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu_devices", type=int, default=0,
                   help="CPU devices the attacked images are split over (0: as evaluate.py chooses)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.square_queries and args.norms != "linf":
        raise SystemExit("Square is an L∞ attack here: pass --norms linf with --square_queries")
    cli.use_cpu_devices(args.cpu_devices)

    # as evaluate.py attacks: the images split over the devices, the parameters replicated
    clf, put = classifier.local_data_parallel(gcj.load(args.workdir, overrides=EXACT))
    test = data.load_dataset(clf.config.data, "test")
    key = jax.random.key(args.seed)
    # where this process runs (a resumed run's chunks may each have run elsewhere: each records its own)
    device = f"{cpu_model()}, {len(jax.devices())} {jax.devices()[0].platform} device(s)" \
        if jax.default_backend() == "cpu" else f"{jax.devices()[0].device_kind} ({len(jax.devices())})"
    partial = (args.out or "score_attack") + ".partial.npz"  # what a rerun resumes from
    # what makes two runs one (a rerun may change --chunk: each chunk keeps its own images and key)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "eot_parallel", "chunk", "stop_after")}
    done = dict(np.load(partial)) if os.path.exists(partial) else {"settings": np.asarray(json.dumps(settings, sort_keys=True))}
    if {k: v for k, v in json.loads(str(done["settings"])).items() if k != "chunk"} != settings:
        raise SystemExit(f"{partial} holds chunks of another run ({done['settings']}): remove it to start anew")
    attacker = clf if args.through == "ode" else classifier.surrogate(clf, args.through)
    judge = None
    if args.judge_probes:  # the same weights, a less noisy likelihood (its draws: its own keys)
        judge = classifier.local_data_parallel(
            gcj.load(args.workdir, overrides={**EXACT, "model.score.ode.num_probes": args.judge_probes}))[0]
    ode = clf.config.model.score.ode
    chosen = np.asarray([int(i) for i in args.test_indices.split(",")]) if args.test_indices else None
    n = args.chunk or (len(chosen) if args.test_indices else args.num_images)  # images attacked at a time
    if "preamble" not in done:  # the images and the costs before the attacks (minutes): kept for a rerun
        t0 = time.time()
        if chosen is None:
            order, ok = attacked(clf, put, test, key, args.num_images)
        else:
            order, ok = chosen, correct(clf, put, data.to_float(test.images[chosen]), test.labels[chosen], key)
        forward_s = time.time() - t0
        x, y = put(data.to_float(test.images[order[ok]])), put(test.labels[order][ok])
        module = classifier.build_module(clf.config)
        nfe = np.asarray(jax.jit(lambda prm, v, k: score.class_likelihoods(module, ode, prm, v, k).nfe)(
            clf.params, x, jax.random.fold_in(key, 2)))
        pre = dict(preamble_device=device, forward_seconds_per_image_all_classes=forward_s / len(order),
                   nfe_per_likelihood_mean=float(nfe.mean()), nfe_per_likelihood_max=int(nfe.max()))

        # one attack gradient (margin loss, one draw) on these images, compiled first: what each PGD
        # step costs per draw, apart from the attack's compilation (in its ``seconds``)
        def gradient_seconds_per_image(model, m):  # on the first m images, after a compiling call
            grad = lambda: attacks.loss_gradient(model, x[:m], y[:m], jax.random.fold_in(key, 5)).block_until_ready()
            grad()
            t0 = time.time()
            grad()
            return (time.time() - t0) / m

        pre["gradient_seconds_per_image"] = gradient_seconds_per_image(attacker, min(n, len(ok)))
        if args.through != "ode" and args.ode_gradient_images:  # the exact ODE's gradient beside it
            m = args.ode_gradient_images
            pre["ode_gradient_seconds_per_image"] = gradient_seconds_per_image(clf, m)
            pre["ode_gradient_images"] = m
            pre["gradient_cost_ratio_ode_over_surrogate"] = pre["ode_gradient_seconds_per_image"] / pre[
                "gradient_seconds_per_image"]
        if judge is not None:
            clean = np.asarray(attacks.success_under_draws(judge, x, y, jax.random.fold_in(key, 6), draws=1))
            pre.update(judge_probes=args.judge_probes, clean_accuracy_judge=float(1 - clean.mean()))
        done.update(preamble=np.asarray(json.dumps(pre)), ok=ok, order=order)
        np.savez(partial, **done)
    # (a partial written before the order was kept scored candidates() alone)
    order, ok = done.get("order", chosen if chosen is not None else candidates(test, key, args.num_images)), done["ok"]
    x, y = put(data.to_float(test.images[order[ok]])), put(test.labels[order][ok])
    kind = "square" if args.square_queries else "pgd"
    result = dict(workdir=args.workdir, cpu=cpu_model(), devices=str(jax.devices()), num_images=int(len(y)),
                  test_indices=order[ok].tolist(),
                  through=args.through, elbo_draws=int(clf.config.model.score.elbo_draws),
                  attack=kind, steps=args.steps, eot=args.eot, check_draws=args.check_draws, loss="margin",
                  ode=dict(rtol=ode.rtol, atol=ode.atol, num_probes=ode.num_probes, probe=ode.probe),
                  **json.loads(str(done["preamble"])), attacks={})
    print(json.dumps({k: v for k, v in result.items() if k != "attacks"}), flush=True)
    x_np, y_np = np.asarray(x), np.asarray(y)
    threats = {"linf": (f"{kind}_linf_{args.linf_eps:g}", args.linf_eps / 255, "linf", args.linf_eps / 2 / 255),
               "l2": (f"{kind}_l2_{args.l2_eps:g}", args.l2_eps, "l2", args.l2_eps / 4)}
    def write(report):  # the report so far (after each threat)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(report, f, indent=2)

    worked = 0  # pieces of work this process did (--stop_after)

    def stop_here() -> bool:
        nonlocal worked
        worked += 1
        if args.stop_after and worked >= args.stop_after:
            print(f"stopped after {worked} piece(s) of work (--stop_after): run again to go on", flush=True)
            return True
        return False

    for name, eps, norm, step in (threats[t] for t in args.norms.split(",")):
        if f"{name}/report" in done:  # attacked and judged before a stop
            result["attacks"][name] = json.loads(str(done[f"{name}/report"]))
            write(result)
            continue
        starts, i = [], 0  # the chunks, done ones as they were made (a rerun's --chunk may differ)
        while i < len(y_np):
            starts.append(i)
            tag = f"{name}/{i}"
            if f"{tag}/x" in done:
                i += len(done[f"{tag}/x"])
                continue
            t0 = time.time()
            k = jax.random.fold_in(key, 3)  # all images at once: the key of the unchunked runs
            k = k if n >= len(y_np) else jax.random.fold_in(k, i)
            if args.square_queries:
                r = attacks.square(attacker, put(x_np[i:i + n]), put(y_np[i:i + n]), k, eps=eps,
                                   queries=args.square_queries, loss="margin")
            else:
                r = attacks.pgd(attacker, put(x_np[i:i + n]), put(y_np[i:i + n]), k, eps=eps, norm=norm,
                                steps=args.steps, step_size=step, loss="margin", eot=args.eot,
                                eot_parallel=args.eot_parallel)
            done.update({f"{tag}/x": np.asarray(r.x), f"{tag}/success": np.asarray(r.success),
                         f"{tag}/seconds": np.float64(time.time() - t0), f"{tag}/device": np.asarray(device),
                         f"{tag}/eot_parallel": np.asarray(args.eot_parallel)})
            if args.square_queries:
                done[f"{tag}/queries"] = np.asarray(r.queries)
            np.savez(partial, **done)
            print(f"{name}: images {i}-{i + len(r.x) - 1} in {done[f'{tag}/seconds']:.0f} s", flush=True)
            if stop_here():
                return
            i += len(r.x)
        r = attacks.AttackResult(x=put(np.concatenate([done[f"{name}/{i}/x"] for i in starts])),
                                 success=np.concatenate([done[f"{name}/{i}/success"] for i in starts]))
        seconds = float(sum(done[f"{name}/{i}/seconds"] for i in starts))
        # a resumed run's chunks may have run on different machines: each with its own
        chunks = [dict(images=f"{i}-{i + len(done[f'{name}/{i}/x']) - 1}", seconds=float(done[f"{name}/{i}/seconds"]),
                       device=str(done.get(f"{name}/{i}/device", "not recorded")),
                       eot_parallel=bool(done.get(f"{name}/{i}/eot_parallel", False))) for i in starts]
        # attacks.success_under_draws(clf, r.x, y, fold_in(key, 4), draws=check_draws) draw by draw (its
        # keys), each kept as it is made: the judging of many ODE images resumes after its last draw.
        # Images that do not divide over the devices are judged with copies of the last one added
        # (put() would leave them on one device): other draws than the unpadded batch's, as good
        pad = -len(y_np) % len(jax.local_devices())
        xj, yj = (put(np.concatenate([a, np.repeat(a[-1:], pad, 0)])) for a in (np.asarray(r.x), y_np))
        for j, k in enumerate(jax.random.split(jax.random.fold_in(key, 4), args.check_draws)):
            if f"{name}/draw/{j}" not in done:
                ll = clf.log_likelihood_fn(clf.params, xj, k)
                done[f"{name}/draw/{j}"] = np.asarray(attacks.is_success(ll, yj))[:len(y_np)]
                np.savez(partial, **done)
                print(f"{name}: fresh draw {j + 1} of {args.check_draws} judged", flush=True)
                if stop_here():
                    return
        draws = np.mean([done[f"{name}/draw/{j}"] for j in range(args.check_draws)], axis=0)
        d = (np.asarray(r.x, np.float64) - np.asarray(x, np.float64)).reshape(len(y), -1)
        if args.square_queries:  # the queries each image made (it stops at its first success)
            queries = np.concatenate([done[f"{name}/{i}/queries"] for i in starts])
            cost = dict(queries_per_image_max=args.square_queries, queries_per_image_mean=float(queries.mean()),
                        seconds_per_query_per_image=seconds / float(queries.sum()))
        else:
            cost = dict(step_size=step, gradients_per_image=args.steps * args.eot,
                        seconds_per_gradient_per_image=seconds / len(y) / (args.steps * args.eot + 1))
        result["attacks"][name] = dict(
            eps=eps, norm=norm, seconds=seconds, seconds_per_image=seconds / len(y), chunks=chunks, **cost,
            success_during_attack=float(np.mean(np.asarray(r.success))),
            adversarial_under_fresh_draws=draws.tolist(), accuracy_under_fresh_draws=float(1 - draws.mean()),
            robust_under_every_draw=int(np.sum(draws == 0)),
            accuracy_under_fresh_draws_95=wilson(float(1 - draws.mean()), len(y)),
            max_linf=float(np.abs(d).max()), max_l2=float(np.sqrt((d ** 2).sum(1)).max()))
        if judge is not None:  # one draw of the judge per image
            fooled = np.asarray(attacks.success_under_draws(judge, r.x, y, jax.random.fold_in(key, 7), draws=1))
            acc = float(1 - fooled.mean())
            result["attacks"][name].update(accuracy_judge=acc, accuracy_judge_95=wilson(acc, len(y)))
        done[f"{name}/report"] = np.asarray(json.dumps(result["attacks"][name]))
        np.savez(partial, **done)
        result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        print(json.dumps({name: result["attacks"][name]}), flush=True)
        write(result)
    os.remove(partial)  # every chunk is in the report


if __name__ == "__main__":
    main()
