"""Where the score model's likelihood time goes, against this machine's float32 matmul peak; and
other ODE solvers / step controllers at the same tolerances.

    .venv/bin/python bench/likelihood_roofline.py --workdir pretrained/sbgc_digits --num_images 10 \
        --out bench/results/likelihood_roofline_cpu.json

- peak: the best float32 GFLOP/s of a jitted 2048x2048 matmul (XLA:CPU, every core);
- the network (one score evaluation), the drift with its divergence (``jax.vjp`` and one
  probe's vjp, what the solver evaluates per stage), each on B*C image-class pairs at once: seconds
  and XLA's own FLOP count (``cost_analysis``) -> achieved GFLOP/s;
- the whole likelihood (``log_likelihood_fn``, all classes): seconds, NFE, and the seconds per
  drift evaluation it implies (the vmapped solve steps all pairs until the slowest finishes:
  max NFE evaluations of every pair) against the drift alone: the solver's own overhead;
- solvers (Dopri5, Tsit5, Dopri8) and PID coefficients: NFE, seconds, and the largest change of
  any log p(x|y) against Dopri5 beside the Hutchinson noise (the std of log p over 8 probe draws),
  so that a faster setting is kept only if its likelihoods agree within that noise.
"""
import argparse
import os
import sys

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gcj  # noqa: E402
from gcj import classifier, data, diffusion  # noqa: E402
from gcj.models import score  # noqa: E402
from machine import best_seconds, cpu_model, write_report  # noqa: E402


def flops(f, *args) -> float:
    cost = f.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def matmul_peak(n=2048):
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    return 2 * n ** 3 / best_seconds(f, a, repeats=10) / 1e9


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="pretrained/sbgc_digits")
    p.add_argument("--num_images", type=int, default=10)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    clf = gcj.load(a.workdir)
    cfg, ode = clf.config, clf.config.model.score.ode
    module = classifier.build_module(cfg)
    test = data.load_dataset(cfg.data, "test")
    x = data.to_float(test.images[:a.num_images])
    key = jax.random.key(0)
    C = clf.num_classes
    n_pairs = a.num_images * C

    peak = matmul_peak()
    # one batch of B*C pairs at a mid-trajectory time
    xc, probes = score.ode_inputs(ode, x, key)
    xs = jnp.repeat(xc, C, axis=0)
    ys = jnp.tile(jnp.arange(C), a.num_images)
    t = jnp.full((n_pairs,), 0.5)
    net = jax.jit(lambda v: module.apply(clf.params, v, t, ys, method="score"))

    def drift(v):
        def flow(u):
            return module.sde.drift(u, t) - 0.5 * diffusion._bcast(module.sde.diffusion_squared(t), u) * \
                module.apply(clf.params, u, t, ys, method="score")
        dx, vjp = jax.vjp(flow, v)
        e = jnp.broadcast_to(probes[0], v.shape)
        return dx, jnp.sum((e * vjp(e)[0]).reshape(n_pairs, -1), 1)
    drift = jax.jit(drift)
    rows = {}
    for name, f in (("network", net), ("drift_and_divergence", drift)):
        s, fl = best_seconds(f, xs), flops(f, xs)
        rows[name] = dict(seconds=s, gflop=fl / 1e9, gflop_per_s=fl / s / 1e9, fraction_of_peak=fl / s / 1e9 / peak)
        print(name, rows[name], flush=True)

    def likelihood(solver=None, controller=None):
        """jitted (params, images, key, probe_key) -> (log p(x|y) [B, C], NFE [B, C]): the
        classifier's solve (dequantization from ``key``, probes from ``probe_key``), any solver."""
        def f(params, v, k, probe_key):
            xc_, _ = score.ode_inputs(ode, v, k)
            _, pr = score.ode_inputs(ode, v, probe_key)
            b, shape = v.shape[0], v.shape[1:]
            res = diffusion.log_likelihood(
                lambda u, tt, y: module.apply(params, u, tt, y, method="score"), module.sde,
                jnp.repeat(xc_, C, axis=0), cond=jnp.tile(jnp.arange(C), b), probes=pr, rtol=ode.rtol,
                atol=ode.atol, eps=ode.eps, max_steps=ode.max_steps, solver=solver, controller=controller)
            to_unit = np.prod(shape) * np.log(2.0)  # as score.class_likelihoods
            return res.logp.reshape(b, C) + to_unit, res.nfe.reshape(b, C)
        return jax.jit(f)

    base = likelihood()
    s = best_seconds(base, clf.params, x, key, key, repeats=2)
    ll, nfe = (np.asarray(v) for v in base(clf.params, x, key, key))
    ll_fn = np.asarray(jax.jit(clf.log_likelihood_fn)(clf.params, x, key))
    assert np.allclose(ll, ll_fn, rtol=1e-4, atol=0.05), "the bench's solve is not the classifier's"
    per_eval = s / nfe.max()
    whole = dict(seconds=s, nfe_mean=float(nfe.mean()), nfe_max=int(nfe.max()),
                 seconds_per_drift_evaluation=per_eval,
                 drift_alone_seconds=rows["drift_and_divergence"]["seconds"],
                 solver_overhead=per_eval / rows["drift_and_divergence"]["seconds"] - 1.0,
                 gflop_per_s=rows["drift_and_divergence"]["gflop"] * nfe.mean() / nfe.max() / per_eval)
    print("likelihood", whole, flush=True)
    # Hutchinson noise: log p over 8 probe draws (dequantization fixed: same key for it)
    draws = [np.asarray(base(clf.params, x, key, jax.random.fold_in(key, 100 + i))[0]) for i in range(8)]
    noise = float(np.mean(np.std(np.stack(draws), axis=0, ddof=1)))
    solvers = {}
    for name, solver, controller in [
            ("dopri5", None, None), ("tsit5", diffrax.Tsit5(), None), ("dopri8", diffrax.Dopri8(), None),
            ("dopri5_pi_0.3_0.4", None, diffrax.PIDController(rtol=ode.rtol, atol=ode.atol, pcoeff=0.3, icoeff=0.4)),
            ("dopri5_pid_h211", None, diffrax.PIDController(rtol=ode.rtol, atol=ode.atol, pcoeff=0.25, icoeff=0.5,
                                                            dcoeff=0.0))]:
        f = likelihood(solver, controller)
        s2 = best_seconds(f, clf.params, x, key, key, repeats=1)
        l2, n2 = (np.asarray(v) for v in f(clf.params, x, key, key))
        solvers[name] = dict(seconds=s2, nfe_mean=float(n2.mean()), nfe_max=int(n2.max()),
                             max_abs_change_nats=float(np.max(np.abs(l2 - ll))),
                             within_hutchinson_noise=bool(np.max(np.abs(l2 - ll)) < noise))
        print(name, solvers[name], flush=True)
    out = dict(command="python bench/likelihood_roofline.py " + " ".join(sys.argv[1:]), cpu=cpu_model(),
               cpu_count=os.cpu_count(), jax=jax.__version__, devices=jax.device_count(),
               num_images=a.num_images, num_classes=C, pairs=n_pairs, ode=ode.to_dict(),
               matmul_peak_gflop_per_s=peak, **rows, likelihood=whole,
               hutchinson_noise_std_nats=noise, solvers=solvers)
    write_report(out, a.out)


if __name__ == "__main__":
    main()
