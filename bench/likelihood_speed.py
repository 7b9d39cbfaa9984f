"""log p(x|y) for all classes: gcj (one jitted diffrax solve, vmapped over classes and images)
against the score_flow method (SciPy solve_ivp RK45 on the host calling a jitted drift +
divergence, one class at a time, the batch sharing one error norm), same network, tolerances,
dequantization and probes. Also the cost of jax.grad w.r.t. the input and its compiled temporary
memory against max_steps, for diffrax's default log2(max_steps) checkpoints and for more.

    .venv/bin/python bench/likelihood_speed.py --workdir pretrained/sbgc_digits --num_images 10 \
        --out bench/results/likelihood_speed_cpu.json
"""
import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gcj  # noqa: E402
from gcj import classifier, data, diffusion  # noqa: E402
from gcj.models import score  # noqa: E402
from machine import cpu_model, write_report  # noqa: E402


def reference(module, variables, xc, probes, ode, num_classes):
    """score_flow's likelihood: host RK45 over float64 state [x, delta], one class at a time."""
    sde, shape, b = module.sde, xc.shape[1:], xc.shape[0]
    dim = math.prod(shape)
    e = jnp.asarray(probes[0])

    @jax.jit
    def drift_div(x, t, y):
        def flow(x):
            tb = jnp.full((b,), t)
            s = module.apply(variables, x, tb, jnp.full((b,), y), method="score")
            return sde.drift(x, tb) - 0.5 * sde.diffusion_squared(tb)[:, None, None, None] * s
        dx, vjp = jax.vjp(flow, x)
        div = jnp.sum((vjp(jnp.broadcast_to(e, x.shape))[0] * e).reshape(b, -1), 1)
        return dx, div

    out, nfe = [], 0
    for y in range(num_classes):
        def f(t, state):
            x = jnp.asarray(state[:-b].reshape(b, *shape), jnp.float32)
            dx, div = drift_div(x, jnp.float32(t), y)
            return np.concatenate([np.asarray(dx, np.float64).ravel(), np.asarray(div, np.float64)])
        y0 = np.concatenate([np.asarray(xc, np.float64).ravel(), np.zeros(b)])
        sol = solve_ivp(f, (ode.eps, sde.T), y0, rtol=ode.rtol, atol=ode.atol, method="RK45")
        z = sol.y[:-b, -1].reshape(b, -1)
        prior = -0.5 * dim * math.log(2 * math.pi) - 0.5 * np.sum(z ** 2, 1)
        out.append(prior + sol.y[-b:, -1] + dim * math.log(2.0))
        nfe += sol.nfev
    return np.stack(out, 1), nfe


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="pretrained/sbgc_digits")
    p.add_argument("--num_images", type=int, default=20)
    p.add_argument("--checkpoints", type=lambda v: None if v == "None" else int(v), nargs="*",
                   default=[None, 128], help="backward-pass checkpoints to time jax.grad with (none: no gradient)")
    p.add_argument("--out", default=None)
    p.add_argument("--cpu_devices", type=int, default=0,
                   help="CPU devices gcj's evaluation shards the images over (0: as evaluate.py chooses)")
    a = p.parse_args()
    from gcj import cli
    cli.use_cpu_devices(a.cpu_devices)
    clf = gcj.load(a.workdir)
    cfg = clf.config
    ode = cfg.model.score.ode
    if ode.num_probes != 1 or not ode.dequantize:
        raise ValueError("the reference uses one probe and dequantization, as the config must")
    module = classifier.build_module(cfg)
    test = data.load_dataset(cfg.data, "test")
    x = data.to_float(test.images[:a.num_images])
    key = jax.random.key(0)
    # gcj as evaluate.py runs it: batched_log_likelihoods, the images sharded over the devices; its
    # (only) batch gets the key fold_in(key, 0), which the reference gets too
    xc, probes = score.ode_inputs(ode, x, jax.random.fold_in(key, 0))  # the classifier's own
    shape = x.shape[1:]
    C, dim = clf.num_classes, math.prod(shape)

    def gcj_ll():
        return classifier.batched_log_likelihoods(clf, np.asarray(x), a.num_images, key)
    gcj_ll()  # compile
    t0 = time.perf_counter()
    ll = gcj_ll()
    t_gcj = time.perf_counter() - t0

    nfe = np.asarray(jax.jit(  # gcj's NFE: the same solve, asking for the counts
        lambda p, x, k: score.class_likelihoods(module, ode, p, x, k).nfe)(clf.params, x, jax.random.fold_in(key, 0)))

    t0 = time.perf_counter()
    ll_ref, nfe_ref = reference(module, clf.params, xc, probes, ode, C)
    t_ref = time.perf_counter() - t0
    bpd, bpd_ref = (np.asarray(diffusion.bits_per_dim(jnp.asarray(l), dim)) for l in (ll, ll_ref))

    def with_ode(**kw):  # the classifier's likelihood with other ODE settings
        cfg2 = cfg.copy_and_resolve_references()
        cfg2.model.score.ode.update(kw)
        f2 = classifier.make_log_likelihood_fn(module, cfg2)
        return jax.jit(jax.grad(lambda x: jnp.sum(f2(clf.params, x, key))))

    grad_seconds, memory = {}, {}
    for ck in a.checkpoints:  # None: diffrax's log2(max_steps) checkpoints
        g = with_ode(checkpoints=ck)
        jax.block_until_ready(g(x))
        t0 = time.perf_counter()
        jax.block_until_ready(g(x))
        grad_seconds[str(ck)] = time.perf_counter() - t0
        memory[str(ck)] = {}
        for max_steps in (256, 1024, 4096, 16384):
            m = with_ode(checkpoints=ck, max_steps=max_steps).lower(x).compile().memory_analysis()
            memory[str(ck)][max_steps] = int(m.temp_size_in_bytes) if m is not None else None

    n = a.num_images * C
    result = dict(
        command="python bench/likelihood_speed.py " + " ".join(sys.argv[1:]), cpu=cpu_model(),
        device=str(jax.devices()[0].device_kind), devices=jax.device_count(), num_images=a.num_images, num_classes=C,
        rtol=ode.rtol, atol=ode.atol, eps=ode.eps, num_probes=1,
        gcj_seconds=t_gcj, reference_seconds=t_ref, speedup=t_ref / t_gcj,
        gcj_images_classes_per_s=n / t_gcj, reference_images_classes_per_s=n / t_ref,
        gcj_nfe_mean=float(nfe.mean()), gcj_nfe_max=int(nfe.max()),
        reference_nfe_per_class=nfe_ref / C,
        bpd_gcj=float(bpd.mean()), bpd_reference=float(bpd_ref.mean()),
        bpd_max_abs_difference=float(np.max(np.abs(bpd - bpd_ref))),
        same_predictions=float(np.mean(ll.argmax(1) == ll_ref.argmax(1))),
        gcj_steps_max=int(nfe.max() - 1) // 6,
        grad_seconds_by_checkpoints=grad_seconds,
        grad_over_forward_by_checkpoints={k: v / t_gcj for k, v in grad_seconds.items()},
        grad_temp_bytes_by_checkpoints_and_max_steps=memory)
    write_report(result, a.out)


if __name__ == "__main__":
    main()
