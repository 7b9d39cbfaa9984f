"""The cost and accuracy of the score model's input gradient (paper 004's attacks through the ODE).

    .venv/bin/python bench/score_gradient.py --workdir pretrained/sbgc_digits --num_images 5 \
        --out bench/results/score_gradient_cpu.json

On ``--num_images`` test images, with the classifier's own ODE settings, times (after compiling):
- the all-class forward pass ``log p(x|y)`` [B, C] (the unit of every ratio);
- one attack gradient, ``attacks.loss_gradient`` with the margin loss: as gcj computes it (all C
  classes forward, then 2 classes differentiated: the true one and the best other), and through a
  plain function of all C classes (what an attack did before: C differentiated solves);
- the same with the continuous adjoint (``ode.adjoint = 'backsolve'``).
Accuracy: on the first image and its true class, the directional derivative of log p(x|y) along a
fixed random direction from each adjoint (float32, the classifier as it runs) against a central
finite difference of the float64 likelihood (x64, the network in float64, tolerances 1e-10, the
same dequantization and probe), whose own error is estimated from two step sizes, and against
reverse mode on that float64 solve.
"""
import argparse
import json
import os
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from machine import best_seconds, cpu_model, write_report  # noqa: E402


def _setup(workdir, num_images, x64=False):
    import jax
    if x64:
        jax.config.update("jax_enable_x64", True)
    import gcj
    from gcj import data
    clf = gcj.load(workdir)
    test = data.load_dataset(clf.config.data, "test")
    return clf, data.to_float(test.images[:num_images]), test.labels[:num_images]


def _with_ode(clf, **kw):
    import gcj
    from gcj import classifier
    cfg = clf.config.copy_and_resolve_references()
    cfg.model.score.ode.update(kw)
    return gcj.Classifier(cfg, clf.params, classifier.make_log_likelihood_fn(classifier.build_module(cfg), cfg),
                          clf.thresholds)


def finite_difference(workdir, h):
    """Central differences of the float64 log p(x|y) of image 0 along the fixed direction."""
    import jax
    import jax.numpy as jnp
    from gcj import classifier, diffusion
    from gcj.models import score
    clf, x, labels = _setup(workdir, 1, x64=True)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), clf.params)
    x = jnp.asarray(x, jnp.float64)
    v = direction(x.shape)
    key = jax.random.key(0)
    module = classifier.build_module(clf.config)
    ode = clf.config.model.score.ode
    # the float32 run's dequantization and probe, in float64
    xc, probes = score.ode_inputs(ode, jnp.asarray(x, jnp.float32), key)
    y = int(labels[0])

    def logp(xx):
        xcc = xc.astype(jnp.float64) + 2.0 * (xx - x) * (255.0 / 256.0 if ode.dequantize else 1.0)
        f = lambda vv, t: module.apply(params, vv, t, jnp.full(t.shape, y), method="score")  # noqa: E731
        return diffusion.log_likelihood(
            f, module.sde, xcc, probes=probes.astype(jnp.float64), rtol=1e-10, atol=1e-10,
            eps=ode.eps, max_steps=100000).logp[0]

    f = jax.jit(logp)
    out = dict(fd=float((f(x + h * v) - f(x - h * v)) / (2 * h)))
    if h == 1e-4:  # and reverse mode on the float64 solve (the default adjoint)
        out["grad"] = float(jnp.vdot(jax.jit(jax.grad(logp))(x), v))
    return out


def direction(shape):
    import jax
    import jax.numpy as jnp
    d = jax.random.normal(jax.random.key(7), shape, jnp.float32)
    return d / jnp.linalg.norm(d)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="pretrained/sbgc_digits")
    p.add_argument("--num_images", type=int, default=5)
    p.add_argument("--out", default=None)
    p.add_argument("--fd", type=float, default=None, help=argparse.SUPPRESS)  # the float64 child
    a = p.parse_args()
    if a.fd is not None:
        print(json.dumps(finite_difference(a.workdir, a.fd)))
        return

    import jax
    import jax.numpy as jnp
    from gcj import attacks
    clf, x, labels = _setup(a.workdir, a.num_images)
    key = jax.random.key(0)
    y = jnp.asarray(labels)
    fwd = jax.jit(clf.log_likelihood_fn)
    t_fwd = best_seconds(lambda: fwd(clf.params, x, key), repeats=2)
    rows = {}
    for adjoint in ("recursive", "backsolve"):
        c = _with_ode(clf, adjoint=adjoint)
        pure = lambda xx, k, c=c: c.log_likelihood_fn(c.params, xx, k)  # noqa: E731 (no class subsets)
        two = best_seconds(lambda: attacks.loss_gradient(c, x, y, key, loss="margin"), repeats=2)
        every = best_seconds(lambda: attacks.loss_gradient(pure, x, y, key, loss="margin"), repeats=1)
        # accuracy on image 0, true class: d/dx log p(x|y) . v
        v = direction(x[:1].shape)
        g = jax.jit(jax.grad(lambda xx: c.log_likelihood_fn(c.params, xx, key, classes=y[:1, None])[0, 0]))(x[:1])
        rows[adjoint] = dict(attack_gradient_seconds=two, attack_gradient_over_forward=two / t_fwd,
                             all_class_gradient_seconds=every, all_class_gradient_over_forward=every / t_fwd,
                             directional_derivative=float(jnp.vdot(g, v)))
        print(adjoint, json.dumps(rows[adjoint]), flush=True)
    fd = {}
    for h in (1e-3, 1e-4):
        out = subprocess.run([sys.executable, __file__, "--workdir", a.workdir, "--fd", str(h)],
                             capture_output=True, text=True, check=True)
        fd[str(h)] = json.loads(out.stdout.strip().splitlines()[-1])
    ref = fd["0.0001"]["fd"]
    for r in rows.values():
        r["relative_error_vs_float64_fd"] = abs(r["directional_derivative"] - ref) / abs(ref)
        r["relative_error_vs_float64_grad"] = (abs(r["directional_derivative"] - fd["0.0001"]["grad"])
                                               / abs(fd["0.0001"]["grad"]))
    result = dict(command="python bench/score_gradient.py " + " ".join(sys.argv[1:]), cpu=cpu_model(),
                  cpu_count=os.cpu_count(), jax=jax.__version__, num_images=a.num_images,
                  num_classes=clf.num_classes, ode=clf.config.model.score.ode.to_dict(),
                  forward_all_classes_seconds=t_fwd, adjoints=rows,
                  float64_fd_directional_derivative=fd,
                  fd_step_disagreement=abs(fd["0.001"]["fd"] - ref) / abs(ref),
                  float64_grad_vs_fd=abs(fd["0.0001"]["grad"] - ref) / abs(ref))
    write_report(result, a.out)


if __name__ == "__main__":
    main()
