"""Adversarial attacks, written once against the contract.

Every attack takes ``model`` — a ``Classifier`` or any pure ``(x, key) -> [B, C]`` log p(x|y)
function — images ``x`` float ``[B, H, W, C]`` in [0, 1], integer ``labels`` ``[B]`` and an explicit
``key``, and returns ``AttackResult(x, success)``: adversarial inputs in [0, 1] and a boolean
``[B]``. White-box attacks are driven by ``jax.grad`` of a loss on the class log-likelihoods and
run as one jitted loop; stochastic likelihoods (dequantization, Hutchinson probes) get a fresh
``fold_in`` key at every step. The score family is attacked through its ODE like any other; for
the margin and rejection losses only the two classes they use are differentiated (C + 1 solves, 2
of them differentiated, instead of C differentiated: ``_differentiated_classes``).

Losses (``loss=``), maximised; ``l = log p(x|y)``, ``y`` the label (untargeted) or target:
- ``"ce"``: the cross-entropy of the posterior softmax(l) (targeted: its negative). It saturates
  when the class log-likelihoods are far apart, as for most generative classifiers (paper 000 §4.2).
- ``"margin"``: max_{j != y} l_j - l_y (targeted: l_y - max_{j != y} l_j); never saturates.
- ``"rejection"``: the margin and, at once, the threshold of the class the attack moves to:
  min(margin, l_j - delta_j) with j the best other class (targeted: the target). Positive means
  fooled AND accepted: the adaptive attack a rejection defense must face.

``thresholds`` make success mean "fooled and accepted": per-class log-likelihood thresholds ``[C]``
(``max_y l_y >= delta_argmax``, paper 000) or one threshold ``[]`` on log p(x) (paper 001; then
l_j - delta_j above reads log p(x) - T: ``ops.acceptance_margin``); without them success means fooled.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gcj import ops
from gcj.classifier import check_images
from gcj.errors import UserError

LOSSES = ("ce", "margin", "rejection", "dlr")


class AttackResult(NamedTuple):
    x: jax.Array        # [B, H, W, C] adversarial inputs in [0, 1]
    success: jax.Array  # [B] bool
    # [B] bool, attacks with a stopping rule (CW): stopped by it, not by the step cap; else None
    stopped: jax.Array | None = None
    queries: jax.Array | None = None  # [B] int, score-based attacks (Square): queries made


# ------------------------------------------------------------------------------ the contract

@functools.lru_cache(maxsize=64)
def _wrap(fn: Callable) -> Callable:
    """``(x, key) -> [B, C]`` as ``(params, x, key) -> [B, C]`` (cached: one jit per function)."""
    return lambda params, x, key: fn(x, key)


def as_function(model) -> tuple[Callable, Any]:
    """``(fn, params)`` with ``fn(params, x, key) -> [B, C]``: of a Classifier or a pure function."""
    if hasattr(model, "log_likelihood_fn") and hasattr(model, "params"):
        return model.log_likelihood_fn, model.params
    if callable(model):
        return _wrap(model), None
    raise TypeError(f"expected a gcj Classifier or a function (x, key) -> [B, C], got {type(model)}")


def _check(x, labels, num_classes=None):
    check_images(x)
    x, labels = jnp.asarray(x), jnp.asarray(labels)
    if labels.shape != x.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise UserError(f"labels must be integers of shape [{x.shape[0]}], got {labels.dtype} {labels.shape}")
    return x, labels.astype(jnp.int32)


def _thresholds(thresholds, num_classes: int | None = None):
    """``[C]`` per-class thresholds or one ``[]`` on log p(x) (``ops.acceptance_margin``), as
    float32; None: -inf (accept everything)."""
    if thresholds is None:
        return jnp.float32(-jnp.inf)
    t = jnp.asarray(thresholds, jnp.float32)
    if t.ndim > 1 or (t.ndim == 1 and num_classes is not None and t.shape[0] != num_classes):
        raise UserError(f"thresholds must be [C] per-class log-likelihoods or one log p(x), got shape {t.shape}")
    return t


# ------------------------------------------------------------------------------------ losses

def attack_loss(ll, y, kind: str = "margin", targeted: bool = False, thresholds=None, source=None):
    """Per-example loss ``[B]`` to maximise (module docstring), from log-likelihoods ``[B, C]``;
    ``source``: the true labels, which the targeted DLR loss needs beside the targets ``y``."""
    thresholds = _thresholds(thresholds)
    if kind == "dlr":
        return dlr(ll, source if targeted else y, y if targeted else None)
    l_y = ops.pick(ll, y)
    other, j = ops.best_other(ll, y)
    if kind == "ce":
        # -log softmax(l)_y written as softplus(logsumexp_{j != y}(l_j - l_y)): the same value, but
        # its float32 gradient keeps the -∇l_y part that 1 - p_y = 0 (rounded) drops when the
        # posterior saturates (jax.nn.log_softmax's gradient is then ∇l_j alone, or exactly 0)
        rest = jnp.where(jax.nn.one_hot(y, ll.shape[1], dtype=bool), -jnp.inf, ll - l_y[:, None])
        ce = jax.nn.softplus(jax.nn.logsumexp(rest, axis=1))
        return -ce if targeted else ce
    if kind == "margin":
        return l_y - other if targeted else other - l_y
    if kind == "rejection":
        if targeted:
            return jnp.minimum(l_y - other, ops.acceptance_margin(ll, thresholds, y))
        return jnp.minimum(other - l_y, ops.acceptance_margin(ll, thresholds, j))
    raise UserError(f"unknown attack loss {kind!r}; known: {', '.join(LOSSES)}")


def dlr(ll, y, target=None):
    """The Difference of Logits Ratio loss (Croce & Hein 2020, eqs. 5 and 7), maximised, on the class
    log-likelihoods as logits; invariant to their shift and scale, so it does not saturate when
    they are thousands of nats apart. With z sorted z_π1 >= z_π2 >= ...:
    untargeted −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3); targeted to t
    −(z_y − z_t) / (z_π1 − (z_π3 + z_π4) / 2) (needs 3 / 4 classes)."""
    top = -jnp.sort(-ll, axis=1)
    need = 3 if target is None else 4
    if ll.shape[1] < need:
        raise UserError(f"the {'targeted ' if target is not None else ''}DLR loss needs {need} classes or more")
    if target is None:
        other, _ = ops.best_other(ll, y)
        return -(ops.pick(ll, y) - other) / (top[:, 0] - top[:, 2] + 1e-12)
    return -(ops.pick(ll, y) - ops.pick(ll, target)) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def accepted(ll, thresholds=None):
    """``[B]`` bool: inside the acceptance region (``ops.rejected``; always True without thresholds)."""
    thresholds = _thresholds(thresholds)
    return ~ops.rejected(ll, thresholds)


def is_success(ll, y, targeted: bool = False, thresholds=None):
    """Fooled (untargeted: argmax != y; targeted: argmax == y), and accepted if thresholds given."""
    pred = ll.argmax(1)
    fooled = pred == y if targeted else pred != y
    return fooled & accepted(ll, thresholds)


# ------------------------------------------------------------------------------ PGD and FGSM

def loss_gradient(model, x, labels, key, *, loss: str = "margin", targeted: bool = False,
                  thresholds=None, eot: int = 1, source=None, eot_parallel: bool = False) -> jax.Array:
    """∇_x of the summed attack loss: the direction every white-box attack here ascends (for the
    score family, through its ODE, divergence term included). ``eot`` > 1: Expectation over
    Transformation, the mean of the gradients under ``eot`` likelihood draws (keys
    ``jax.random.split(key, eot)``; stochastic families: dequantization, Hutchinson probes), one
    draw after another (the memory of one), or with ``eot_parallel`` all at once (vmapped: ``eot``
    times the memory; on an accelerator a solver-bound likelihood such as the score family's ODE
    takes about the time of one draw). The same draws either way, so the same values up to float
    rounding, which an adaptive ODE solver can amplify by taking other steps (measured: the score
    family's margin gradient on a digit differs by 1% of its largest entry)."""
    fn, params = as_function(model)
    x, labels = _check(x, labels)
    source = labels if source is None else _check(x, source)[1]
    g, _ = _loss_gradient(fn, params, x, labels, key, _thresholds(thresholds), source, loss=loss,
                          targeted=targeted, eot=eot, eot_parallel=eot_parallel)
    return g


@functools.partial(jax.jit, static_argnames=("fn", "loss", "targeted", "eot", "eot_parallel"))
def _loss_gradient(fn, params, x, y, key, thresholds, source, *, loss, targeted, eot, eot_parallel):
    return jax.grad(_objective(fn, params, y, thresholds, loss, targeted, eot, source, eot_parallel),
                    has_aux=True)(x, key)


def _objective(fn, params, y, thresholds, loss, targeted, eot=1, source=None, eot_parallel=False):
    """``(x, key) -> (Σ_b l_b, (l [B], ll [B, C]))``: the attack loss averaged over ``eot``
    likelihood draws (keys split from ``key``; one draw uses ``key`` itself; sequential, or
    vmapped with ``eot_parallel``), ``ll`` the draws' mean class log-likelihoods; its ``jax.grad``
    is the mean of the per-draw gradients (EoT)."""
    if eot < 1:
        raise UserError(f"eot must be >= 1 likelihood draws per gradient, got {eot}")

    def one(xa, k):
        ll = _differentiated_classes(fn, params, xa, k, y) if loss in TWO_CLASS_LOSSES else fn(params, xa, k)
        return attack_loss(ll, y, loss, targeted, thresholds, source), ll

    def total(xa, key):
        if eot == 1:
            l, ll = one(xa, key)
        else:  # one draw after another (memory of one) or all at once, the mean of their losses
            l, ll = jax.lax.map(lambda k: one(xa, k), jax.random.split(key, eot),
                                batch_size=eot if eot_parallel else None)
            l, ll = l.mean(0), ll.mean(0)
        return l.sum(), (l, ll)

    return total


TWO_CLASS_LOSSES = ("margin", "rejection")  # their value and gradient need l_y and l_j alone


def _differentiated_classes(fn, params, x, key, y):
    """``fn(params, x, key)`` ``[B, C]`` whose gradient w.r.t. ``x`` flows through two classes only:
    ``y`` and the best other class j, all the margin and rejection losses use. For a family whose
    function takes ``classes=`` (``takes_classes``: the score family, one ODE per class) that is one
    forward pass of the C - 1 classes other than y (which finds j), then y and j differentiated:
    C + 1 solves, 2 of them differentiated, instead of C differentiated. Same values (l_j that of
    the forward pass that chose it), same gradient. Other families: ``fn`` itself."""
    if not getattr(fn, "takes_classes", False):
        return fn(params, x, key)
    b = x.shape[0]
    c = jax.eval_shape(lambda v: fn(params, v, key), x).shape[1]
    others = jnp.argsort(jnp.arange(c)[None] == y[:, None], axis=1, stable=True)[:, :c - 1]  # y last
    part = jax.lax.stop_gradient(fn(params, jax.lax.stop_gradient(x), key, classes=others))
    j = ops.pick(others, jnp.argmax(part, axis=1))
    pair = fn(params, x, key, classes=jnp.stack([y, j], axis=1))  # [B, 2], differentiated
    ll = jnp.zeros((b, c), part.dtype).at[jnp.arange(b)[:, None], others].set(part)
    return (ll + jax.nn.one_hot(y, c, dtype=ll.dtype) * pair[:, :1]
            + jax.nn.one_hot(j, c, dtype=ll.dtype) * (pair[:, 1:] - jax.lax.stop_gradient(pair[:, 1:])))


@functools.partial(jax.jit, static_argnames=("fn",))
def _ll(fn, params, x, key):
    return fn(params, x, key)


def is_stochastic(model, x, key) -> bool:
    """Whether ``model``'s log p(x|y) on ``x`` differs between two keys (dequantization, probes)."""
    fn, params = as_function(model)
    k1, k2 = jax.random.split(key)
    return not bool(jnp.array_equal(_ll(fn, params, jnp.asarray(x), k1), _ll(fn, params, jnp.asarray(x), k2)))


def success_under_draws(model, x_adv, labels, key, *, draws: int = 20, targeted: bool = False,
                        thresholds=None) -> jax.Array:
    """``[B]`` the fraction of ``draws`` independent likelihood draws under which ``x_adv`` is
    adversarial (``is_success``): how often a returned image fools a stochastic classifier."""
    fn, params = as_function(model)
    x_adv, labels = _check(x_adv, labels)
    t = _thresholds(thresholds)
    hits = [is_success(_ll(fn, params, x_adv, k), labels, targeted, t) for k in jax.random.split(key, draws)]
    return jnp.mean(jnp.stack(hits), axis=0)


def _check_arguments(norm, loss, eps, steps, restarts, thresholds):
    """The argument checks of the iterative gradient attacks (PGD, APGD)."""
    if norm not in ("linf", "l2"):
        raise UserError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if loss not in LOSSES:
        raise UserError(f"unknown attack loss {loss!r}; known: {', '.join(LOSSES)}")
    if not eps > 0 or steps < 1 or restarts < 1:
        raise UserError(f"need eps > 0, steps >= 1 and restarts >= 1 (got {eps}, {steps}, {restarts})")
    if loss == "rejection" and thresholds is None:
        raise UserError("the 'rejection' loss needs the per-class thresholds")


def _project(delta, eps, norm):
    if norm == "linf":
        return jnp.clip(delta, -eps, eps)
    n = jnp.sqrt(jnp.sum(delta ** 2, axis=(1, 2, 3), keepdims=True))
    return delta * jnp.minimum(1.0, eps / jnp.maximum(n, 1e-12))


def _ascent(g, norm):
    if norm == "linf":
        return jnp.sign(g)
    return g / jnp.maximum(jnp.sqrt(jnp.sum(g ** 2, axis=(1, 2, 3), keepdims=True)), 1e-12)


def _random_start(key, x, eps, norm):
    if norm == "linf":
        return jax.random.uniform(key, x.shape, minval=-eps, maxval=eps)
    k1, k2 = jax.random.split(key)
    d = jax.random.normal(k1, x.shape)
    d = d / jnp.sqrt(jnp.sum(d ** 2, axis=(1, 2, 3), keepdims=True))
    dim = np.prod(x.shape[1:])
    r = eps * jax.random.uniform(k2, (x.shape[0], 1, 1, 1)) ** (1.0 / dim)  # uniform in the ball
    return d * r


def _better(s, l, best_s, best_l):
    """Which examples' new point beats their best so far: success first, then the loss."""
    return (s & ~best_s) | ((s == best_s) & (l > best_l))


@functools.partial(jax.jit, static_argnames=("fn", "norm", "steps", "loss", "targeted",
                                              "random_start", "restarts", "eot", "eot_parallel"))
def _pgd(fn, params, x, y, key, eps, step_size, thresholds, *, norm, steps, loss, targeted,
         random_start, restarts, eot, eot_parallel):
    objective = _objective(fn, params, y, thresholds, loss, targeted, eot, eot_parallel=eot_parallel)
    grad_fn = jax.grad(objective, has_aux=True)
    better = _better

    def score(xa, k):
        _, (l, ll) = objective(xa, k)
        return l, is_success(ll, y, targeted, thresholds)

    def restart(carry, r):
        best_x, best_s, best_l = carry
        k_start, kr = jax.random.split(jax.random.fold_in(key, r))
        xa = x
        if random_start:
            xa = jnp.clip(x + _random_start(k_start, x, eps, norm), 0.0, 1.0)

        def step(i, state):
            xa, best_x, best_s, best_l = state
            k = jax.random.fold_in(kr, i)
            g, (l, ll) = grad_fn(xa, k)
            s = is_success(ll, y, targeted, thresholds)
            b = better(s, l, best_s, best_l)
            best_x = jnp.where(b[:, None, None, None], xa, best_x)
            best_s, best_l = jnp.where(b, s, best_s), jnp.where(b, l, best_l)
            xa = x + _project(xa + step_size * _ascent(g, norm) - x, eps, norm)
            return jnp.clip(xa, 0.0, 1.0), best_x, best_s, best_l

        xa, best_x, best_s, best_l = jax.lax.fori_loop(0, steps, step, (xa, best_x, best_s, best_l))
        l, s = score(xa, jax.random.fold_in(kr, steps))  # the last iterate
        b = better(s, l, best_s, best_l)
        best_x = jnp.where(b[:, None, None, None], xa, best_x)
        return (best_x, jnp.where(b, s, best_s), jnp.where(b, l, best_l)), None

    init = (x, jnp.zeros(y.shape, bool), jnp.full(y.shape, -jnp.inf))
    (best_x, best_s, _), _ = jax.lax.scan(restart, init, jnp.arange(restarts))
    return AttackResult(best_x, best_s)


def pgd(model, x, labels, key, *, eps: float, norm: str = "linf", steps: int = 40,
        step_size: float | None = None, loss: str = "margin", targeted: bool = False,
        random_start: bool = True, restarts: int = 1, thresholds=None, eot: int = 1,
        eot_parallel: bool = False) -> AttackResult:
    """Projected gradient ascent of ``loss`` in the ``norm`` ball of radius ``eps`` (∩ [0, 1]).

    ``norm``: ``"linf"`` (signed gradient steps) or ``"l2"`` (normalised gradient steps).
    ``step_size`` defaults to foolbox's: eps / 30 (L∞), 0.025 eps (L2). ``labels`` are the true
    labels, or the targets when ``targeted``. Each restart starts uniformly in the ball (if
    ``random_start``); per example the best iterate over all steps and restarts is returned
    (successful first, then the highest loss), so more steps or restarts never weaken it.
    ``eot``, ``eot_parallel``: likelihood draws per gradient (Expectation over Transformation) and
    whether they run at once (``loss_gradient``).
    """
    if loss == "dlr" and targeted:
        raise UserError("the targeted DLR loss needs the true labels too: use apgd(..., targets=)")
    _check_arguments(norm, loss, eps, steps, restarts, thresholds)
    fn, params = as_function(model)
    x, labels = _check(x, labels)
    if step_size is None:
        step_size = eps / 30 if norm == "linf" else 0.025 * eps
    return _pgd(fn, params, x, labels, key, jnp.float32(eps), jnp.float32(step_size),
                _thresholds(thresholds), norm=norm, steps=steps, loss=loss, targeted=targeted,
                random_start=random_start, restarts=restarts, eot=eot, eot_parallel=eot_parallel)


def fgsm(model, x, labels, key, *, eps: float, loss: str = "ce", targeted: bool = False,
         thresholds=None, eot: int = 1, eot_parallel: bool = False) -> AttackResult:
    """Fast gradient sign method: one L∞ step of size ``eps`` from ``x`` (Goodfellow et al.)."""
    return pgd(model, x, labels, key, eps=eps, norm="linf", steps=1, step_size=eps, loss=loss,
               targeted=targeted, random_start=False, thresholds=thresholds, eot=eot, eot_parallel=eot_parallel)


# ------------------------------------------------------------------------------------- APGD

def apgd_checkpoints(steps: int) -> list[int]:
    """APGD's checkpoints (Croce & Hein 2020, §3.2): w_j = ⌈p_j N⌉ with p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), those in (0, N]."""
    p = [0.0, 0.22]
    while p[-1] <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({int(np.ceil(round(q * steps, 6))) for q in p[1:] if q <= 1.0} - {0})


def _apgd_restart(grad_fn, success_fn, x, xa, key, eps, norm, steps, alpha, rho):
    """One APGD run from ``xa``: the iterate of the best point (success first, then the loss), and
    the step sizes ``[steps, B]`` after each step. A check runs after w_j steps (``apgd_checkpoints``):
    the step size halves and the iterate returns to the best-loss point x_max if (1) fewer than
    ρ (w_j − w_{j−1}) of the steps since the last check raised the loss, or (2) the step size was
    not halved at the last check and f_max has not risen since. The momentum restarts there."""
    b = x.shape[0]
    ckpts = apgd_checkpoints(steps)
    is_check = np.zeros(steps, bool)
    window = np.zeros(steps, np.float32)
    for prev, w in zip([0] + ckpts, ckpts):
        is_check[w - 1], window[w - 1] = True, w - prev

    def proj(v):
        return jnp.clip(x + _project(v - x, eps, norm), 0.0, 1.0)

    def keep(mask, new, old):
        return jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

    g, (l, ll) = grad_fn(xa, jax.random.fold_in(key, 0))
    s = success_fn(ll)
    state = dict(x=xa, x_prev=xa, g=g, l=l, eta=jnp.full((b,), 2 * eps), x_max=xa, g_max=g, l_max=l,
                 count=jnp.zeros((b,)), l_max_last=l, reduced_last=jnp.zeros((b,), bool),
                 best_x=xa, best_s=s, best_l=l)

    def step(st, inputs):
        k, check, win = inputs
        eta = st["eta"].reshape(-1, 1, 1, 1)
        z = proj(st["x"] + eta * _ascent(st["g"], norm))
        a = jnp.where(k == 0, 1.0, alpha)  # the first step has no momentum
        xn = proj(st["x"] + a * (z - st["x"]) + (1 - a) * (st["x"] - st["x_prev"]))
        gn, (ln, lln) = grad_fn(xn, jax.random.fold_in(key, k + 1))
        sn = success_fn(lln)
        st = dict(st, count=st["count"] + (ln > st["l"]), x_prev=st["x"], x=xn, g=gn, l=ln)
        up = ln > st["l_max"]
        st.update(x_max=keep(up, xn, st["x_max"]), g_max=keep(up, gn, st["g_max"]),
                  l_max=jnp.where(up, ln, st["l_max"]))
        bt = _better(sn, ln, st["best_s"], st["best_l"])
        st.update(best_x=keep(bt, xn, st["best_x"]), best_s=jnp.where(bt, sn, st["best_s"]),
                  best_l=jnp.where(bt, ln, st["best_l"]))
        reduce = check & ((st["count"] < rho * win) | (~st["reduced_last"] & (st["l_max"] <= st["l_max_last"])))
        st.update(eta=jnp.where(reduce, st["eta"] / 2, st["eta"]), x=keep(reduce, st["x_max"], st["x"]),
                  x_prev=keep(reduce, st["x_max"], st["x_prev"]), g=keep(reduce, st["g_max"], st["g"]),
                  l=jnp.where(reduce, st["l_max"], st["l"]), count=jnp.where(check, 0.0, st["count"]),
                  l_max_last=jnp.where(check, st["l_max"], st["l_max_last"]),
                  reduced_last=jnp.where(check, reduce, st["reduced_last"]))
        return st, st["eta"]

    st, etas = jax.lax.scan(step, state, (jnp.arange(steps), jnp.asarray(is_check), jnp.asarray(window)))
    return st["best_x"], st["best_s"], st["best_l"], etas


@functools.partial(jax.jit, static_argnames=("fn", "norm", "steps", "loss", "targeted", "hit_target",
                                              "random_start", "restarts", "eot", "eot_parallel"))
def _apgd(fn, params, x, y, t, key, eps, thresholds, alpha, rho, *, norm, steps, loss, targeted,
          hit_target, random_start, restarts, eot, eot_parallel):
    grad_fn = jax.grad(_objective(fn, params, t if targeted else y, thresholds, loss, targeted, eot, y,
                                  eot_parallel), has_aux=True)

    def success_fn(ll):
        return is_success(ll, t, True, thresholds) if hit_target else is_success(ll, y, False, thresholds)

    def restart(carry, r):
        best_x, best_s, best_l = carry
        k_start, kr = jax.random.split(jax.random.fold_in(key, r))
        xa = jnp.clip(x + _random_start(k_start, x, eps, norm), 0.0, 1.0) if random_start else x
        rx, rs, rl, etas = _apgd_restart(grad_fn, success_fn, x, xa, kr, eps, norm, steps, alpha, rho)
        b = _better(rs, rl, best_s, best_l)
        return (jnp.where(b[:, None, None, None], rx, best_x), jnp.where(b, rs, best_s),
                jnp.where(b, rl, best_l)), etas

    init = (x, jnp.zeros(y.shape, bool), jnp.full(y.shape, -jnp.inf))
    (best_x, best_s, _), etas = jax.lax.scan(restart, init, jnp.arange(restarts))
    return AttackResult(best_x, best_s), etas


def apgd(model, x, labels, key, *, eps: float, norm: str = "linf", steps: int = 100, loss: str = "ce",
         targets=None, restarts: int = 1, eot: int = 1, random_start: bool = True, thresholds=None,
         alpha: float = 0.75, rho: float = 0.75, eot_parallel: bool = False) -> AttackResult:
    """Auto-PGD (Croce & Hein 2020, Alg. 1) on the class log-likelihoods as logits.

    From x⁰ (uniform in the ``norm`` ball of radius ``eps`` if ``random_start``), step size
    η⁰ = 2ε; x¹ = P(x⁰ + η ∇), then z = P(xᵏ + η ∇) and x^{k+1} = P(xᵏ + α(z − xᵏ) + (1 − α)(xᵏ −
    x^{k−1})) (momentum ``alpha`` 0.75; ∇ signed for L∞, normalised for L2, P onto the ball ∩ [0, 1]);
    the step size halves at the checkpoints (``apgd_checkpoints``, ``rho`` 0.75, see
    ``_apgd_restart``). ``loss``: ``"ce"``, ``"dlr"`` (scale-free: the default of AutoAttack's
    second run), ``"margin"`` or ``"rejection"`` (needs ``thresholds``: fooled AND accepted).
    ``targets``: a targeted run towards them (success = classified as the target). ``eot``: likelihood
    draws per gradient (EoT; all at once with ``eot_parallel``, ``loss_gradient``). Per example the
    best point over all steps and ``restarts`` is returned (successful first, then the highest loss).
    """
    _check_arguments(norm, loss, eps, steps, restarts, thresholds)
    return _apgd_call(model, x, labels, targets, key, eps, norm, steps, loss, restarts, eot, random_start,
                      thresholds, alpha, rho, hit_target=targets is not None, eot_parallel=eot_parallel)[0]


def _apgd_call(model, x, labels, targets, key, eps, norm, steps, loss, restarts, eot, random_start,
               thresholds, alpha, rho, hit_target, eot_parallel=False):
    fn, params = as_function(model)
    x, labels = _check(x, labels)
    t = labels if targets is None else _check(x, targets)[1]
    return _apgd(fn, params, x, labels, t, key, jnp.float32(eps), _thresholds(thresholds),
                 jnp.float32(alpha), jnp.float32(rho), norm=norm, steps=steps, loss=loss,
                 targeted=targets is not None, hit_target=hit_target, random_start=random_start,
                 restarts=restarts, eot=eot, eot_parallel=eot_parallel)


def apgd_targeted(model, x, labels, key, *, eps: float, norm: str = "linf", steps: int = 100,
                  num_targets: int = 9, loss: str = "dlr", eot: int = 1, thresholds=None,
                  eot_parallel: bool = False) -> AttackResult:
    """APGD-T (AutoAttack): ``steps`` of targeted APGD (``loss`` DLR, eq. 7) towards each of the
    ``num_targets`` most likely other classes of the clean image in turn (2nd, 3rd, ...); success
    = misclassified (and accepted with ``thresholds``) — by any of the runs, whose first success
    is kept, else the last run's best point."""
    fn, params = as_function(model)
    x, labels = _check(x, labels)
    ll = _ll(fn, params, x, jax.random.fold_in(key, -1 % 2 ** 32))
    if not 1 <= num_targets <= ll.shape[1] - 1:
        raise UserError(f"num_targets must be in 1..{ll.shape[1] - 1}, got {num_targets}")
    order = jnp.argsort(-ll, axis=1)
    out, success = x, jnp.zeros(labels.shape, bool)
    for i in range(num_targets):
        r, _ = _apgd_call(model, x, labels, order[:, i + 1], jax.random.fold_in(key, i), eps, norm, steps,
                          loss, 1, eot, True, thresholds, 0.75, 0.75, hit_target=False, eot_parallel=eot_parallel)
        take = ~success
        out = jnp.where(take[:, None, None, None], r.x, out)
        success = success | r.success
    return AttackResult(out, success)


# ----------------------------------------------------------------------------------- Square

def square_p(p_init: float, i, queries: int):
    """Square's fraction of pixels changed at iteration ``i`` (its schedule for 10,000 queries,
    rescaled to ``queries``): p_init halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000."""
    it = (jnp.asarray(i) * 10000) // queries
    halvings = sum((it > m).astype(jnp.int32) for m in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    return p_init / 2.0 ** halvings


@functools.partial(jax.jit, static_argnames=("fn", "queries", "loss", "fixed_noise"))
def _square(fn, params, x, y, key, eps, p_init, thresholds, *, queries, loss, fixed_noise):
    b, h, w, c = x.shape
    oracle = jax.random.fold_in(key, -1 % 2 ** 32)

    def query(xa, k):
        ll = fn(params, xa, oracle if fixed_noise else k)
        return attack_loss(ll, y, loss, False, thresholds), is_success(ll, y, False, thresholds)

    k0 = jax.random.fold_in(key, 0)
    stripes = eps * jax.random.rademacher(k0, (b, 1, w, c), jnp.float32)  # vertical stripes
    xa = jnp.clip(x + stripes, 0.0, 1.0)
    l, s = query(xa, k0)

    def step(i, st):
        xa, l, s, n = st
        k = jax.random.fold_in(key, i)
        kh, kw, ks = jax.random.split(k, 3)
        side = jnp.clip(jnp.round(jnp.sqrt(square_p(p_init, i, queries) * h * w)), 1, h - 1).astype(jnp.int32)
        r0 = jax.random.randint(kh, (b, 1, 1, 1), 0, h - side + 1)
        c0 = jax.random.randint(kw, (b, 1, 1, 1), 0, w - side + 1)
        rows, cols = jnp.arange(h)[None, :, None, None], jnp.arange(w)[None, None, :, None]
        win = (rows >= r0) & (rows < r0 + side) & (cols >= c0) & (cols < c0 + side)
        sign = eps * jax.random.rademacher(ks, (b, 1, 1, c), jnp.float32)
        cand = jnp.clip(x + jnp.where(win, sign, xa - x), 0.0, 1.0)
        same = jnp.all(jnp.abs(cand - xa) < 1e-7, axis=(1, 2, 3))  # no pixel would change: flip the signs
        cand = jnp.where(same[:, None, None, None], jnp.clip(x + jnp.where(win, -sign, xa - x), 0.0, 1.0), cand)
        lc, sc = query(cand, k)
        active = ~s  # a fooled image is not queried any more
        up = active & (lc > l)
        return (jnp.where(up[:, None, None, None], cand, xa), jnp.where(up, lc, l), jnp.where(up, sc, s),
                n + active)

    xa, l, s, n = jax.lax.fori_loop(1, queries, step, (xa, l, s, jnp.ones((b,), jnp.int32)))
    return AttackResult(xa, s, queries=n)


def square(model, x, labels, key, *, eps: float, queries: int = 5000, p_init: float = 0.8,
           loss: str = "margin", thresholds=None, fixed_noise: bool = True) -> AttackResult:
    """Square attack, L∞ (Andriushchenko et al. 2020): score-based black box, untargeted.

    Starts from vertical stripes of ±``eps``; each iteration proposes, per image, a random square
    window (side ⌈√(p·H·W)⌉, p from ``square_p``) set to ±``eps`` per channel and keeps it if the
    ``loss`` (``"margin"``, or ``"rejection"`` with ``thresholds``: fooled AND accepted) rose. Only
    the class log-likelihoods are read (no gradients). An image stops at its first success; at most
    ``queries`` evaluations per image (``AttackResult.queries``: how many each made).
    ``fixed_noise``: every query uses one key (a deterministic oracle, as the boundary attack).
    """
    if loss not in ("margin", "rejection", "ce"):
        raise UserError(f"Square's loss must be margin, rejection or ce, got {loss!r}")
    if loss == "rejection" and thresholds is None:
        raise UserError("the 'rejection' loss needs the per-class thresholds")
    if not eps > 0 or queries < 1:
        raise UserError(f"need eps > 0 and queries >= 1 (got {eps}, {queries})")
    fn, params = as_function(model)
    x, labels = _check(x, labels)
    if min(x.shape[1:3]) < 2:
        raise UserError(f"Square needs images of 2×2 pixels or more, got {x.shape[1:3]}")
    return _square(fn, params, x, labels, key, jnp.float32(eps), jnp.float32(p_init), _thresholds(thresholds),
                   queries=queries, loss=loss, fixed_noise=fixed_noise)


# -------------------------------------------------------------------------------- CW L2

@functools.partial(jax.jit, static_argnames=("fn", "targeted", "max_steps", "patience", "search_steps"))
def _cw(fn, params, x, y, key, c, kappa, lr, detector_weight, detector_median, detector_dims, threshold_weight,
        thresholds, *, targeted, max_steps, patience, search_steps):
    num = x.shape[0]
    opt = optax.adam(lr)
    inf = jnp.full((num,), jnp.inf)

    def losses(xa, k, c):
        ll = fn(params, xa, k)
        l_y = ops.pick(ll, y)
        other, j = ops.best_other(ll, y)
        f = other - l_y if targeted else l_y - other  # <= 0 once adversarial
        l2 = jnp.sum((xa - x) ** 2, axis=(1, 2, 3))
        per = l2 + c * jnp.maximum(f, -kappa)
        log_q = jax.nn.logsumexp(ll, axis=1) - jnp.log(ll.shape[1])  # log p(x), uniform prior
        per = per + detector_weight * ((detector_median - log_q) / detector_dims) ** 2
        moved_to = y if targeted else j
        per = per + threshold_weight * jnp.maximum(0.0, -ops.acceptance_margin(ll, thresholds, moved_to))
        return per.sum(), (per, l2, is_success(ll, y, targeted, thresholds))

    grad_fn = jax.grad(losses, has_aux=True)

    def run(c, k_run):  # one Adam descent at the per-example constants c [B]
        def cond(state):
            return (state[0] < max_steps) & jnp.any(state[-1] < patience)

        def body(state):
            step, w, opt_state, best_w, best, adv_w, adv_l2, since = state
            g, (per, l2, ok) = grad_fn(w, jax.random.fold_in(k_run, step), c)  # at w, before the update
            improved = jnp.isinf(best) | (per < best - 1e-4 * jnp.maximum(1.0, jnp.abs(best)))
            active = since < patience
            best_w = jnp.where((active & (per < best))[:, None, None, None], w, best_w)
            best = jnp.where(active, jnp.minimum(per, best), best)
            closer = active & ok & (l2 < adv_l2)  # the smallest successful change (minimum norm)
            adv_w = jnp.where(closer[:, None, None, None], w, adv_w)
            adv_l2 = jnp.where(closer, l2, adv_l2)
            since = jnp.where(active, jnp.where(improved, 0, since + 1), since)
            g = jnp.where(active[:, None, None, None], g, 0.0)
            updates, opt_state = opt.update(g, opt_state, w)
            w = jnp.where(active[:, None, None, None], jnp.clip(optax.apply_updates(w, updates), 0.0, 1.0), w)
            return step + 1, w, opt_state, best_w, best, adv_w, adv_l2, since

        state = (0, x, opt.init(x), x, inf, x, inf, jnp.zeros((num,), jnp.int32))
        _, w, _, best_w, _, adv_w, adv_l2, since = jax.lax.while_loop(cond, body, state)
        return w, best_w, adv_w, adv_l2, since

    k_check = jax.random.fold_in(key, max_steps)
    if search_steps == 1:
        w, best_w, _, _, since = run(jnp.broadcast_to(c, (num,)), key)
        # per example the iterate of lowest loss if it is still adversarial under a fresh key
        # (always, for a deterministic likelihood), else the last one: with noisy likelihoods
        # (dequantization) the lowest loss is often a lucky draw just across the boundary, the
        # last iterate deeper
        s_best = is_success(fn(params, best_w, k_check), y, targeted, thresholds)
        s_last = is_success(fn(params, w, k_check), y, targeted, thresholds)
        return AttackResult(jnp.where(s_best[:, None, None, None], best_w, w), s_best | s_last,
                            since >= patience)

    # Carlini & Wagner's binary search over c, per example: halve the bracket around the smallest c
    # that succeeded, or grow c tenfold while none has; keep the smallest successful change of all
    def search(i, state):
        c_i, lo, hi, adv_w, adv_l2, _, stopped = state  # (the previous descent's last iterate)
        w, _, w_adv, l2, since = run(c_i, jax.random.fold_in(key, i))
        found = l2 < inf
        closer = l2 < adv_l2
        adv_w = jnp.where(closer[:, None, None, None], w_adv, adv_w)
        adv_l2 = jnp.minimum(l2, adv_l2)
        hi = jnp.where(found, jnp.minimum(hi, c_i), hi)
        lo = jnp.where(found, lo, jnp.maximum(lo, c_i))
        c_i = jnp.where(jnp.isinf(hi), c_i * 10, (lo + hi) / 2)
        return c_i, lo, hi, adv_w, adv_l2, w, stopped & (since >= patience)

    zeros = jnp.zeros((num,))
    state = (jnp.broadcast_to(c, (num,)), zeros, inf, x, inf, x, jnp.ones((num,), bool))
    _, _, _, adv_w, adv_l2, last_w, stopped = jax.lax.fori_loop(0, search_steps, search, state)
    x_out = jnp.where((adv_l2 < inf)[:, None, None, None], adv_w, last_w)
    return AttackResult(x_out, is_success(fn(params, x_out, k_check), y, targeted, thresholds), stopped)


def cw_l2(model, x, labels, key, *, c: float = 10.0, kappa: float = 0.01, targeted: bool = True,
          lr: float = 0.01, max_steps: int = 1000, patience: int = 20, search_steps: int = 1,
          detector_weight: float = 0.0, detector_median: float | None = None, detector_dims: int = 1,
          threshold_weight: float = 0.0, thresholds=None) -> AttackResult:
    """Carlini–Wagner L2 on the class log-likelihoods (paper 002 §4.6; paper 000 untargeted).

    Adam(``lr``) on the pixels x', each step projected back onto [0, 1], minimising per example
    ‖x' − x‖² + c·max(f, −κ), f = max_{j≠t} l_j − l_t (targeted, ``labels`` = targets) or
    l_y − max_{j≠y} l_j (untargeted), plus optional detector terms:
    - paper 002 eq. 25: ``detector_weight`` · ((``detector_median`` − log q(x')) / ``detector_dims``)²,
      log q = log p(x) and the median over training images (d ∈ {0, 66, 1000} in the paper); in nats
      as printed (``detector_dims`` 1), or per dimension (the image's D);
    - paper 001: ``threshold_weight`` · max(0, δ_j − l_j(x')) for the class j the attack moves to
      (−log p(x'|j) above its rejection threshold T = −δ_j is penalised).
    ``kappa=float('inf')`` never stops pushing. An example stops after ``patience`` steps whose
    loss did not improve by a relative 1e-4 (the paper's rule); the loop ends when all stopped or
    at ``max_steps`` (``AttackResult.stopped``: which stopped by the rule).
    Per example the iterate of lowest loss is returned if it is adversarial under a fresh key,
    else the last iterate (noisy likelihoods: see the code).
    Success is judged with ``thresholds`` when given (fooled and accepted).

    ``search_steps`` > 1: Carlini & Wagner's minimum-norm attack. That many descents, each with
    per-example c set by a binary search from ``c`` (tenfold while none succeeded, then halving the
    bracket around the smallest c that did); per example the successful iterate of smallest L2 over
    all descents is returned (else the last iterate). ``stopped``: every descent stopped by the
    rule. With ``max_steps`` 10000, ``patience`` 1000 and ``c`` 1e-3 this is foolbox's
    ``L2CarliniWagnerAttack`` in the pixels (no tanh: see below).

    The paper's change of variables x' = (tanh w + 1)/2 is not used: a pixel at exactly 0 or 1
    starts at w = ±arctanh(1 − 1e-6) ≈ ±7.25, where Adam's steps of ``lr`` need hundreds of steps
    before the pixel moves at all, so a budget of a few hundred steps never changes a black
    background. Projected steps move every pixel alike.
    """
    if search_steps < 1 or max_steps < 1 or patience < 1:
        raise UserError(f"CW needs search_steps, max_steps and patience >= 1 (got {search_steps}, {max_steps}, {patience})")
    if search_steps > 1 and not c > 0:
        raise UserError(f"CW's binary search over c needs a start c > 0, got {c}")
    if detector_weight and detector_median is None:
        raise UserError("detector_weight needs detector_median (median log p(x) of training images)")
    if threshold_weight and thresholds is None:
        raise UserError("threshold_weight needs the per-class thresholds")
    fn, params = as_function(model)
    x, labels = _check(x, labels)
    return _cw(fn, params, x, labels, key, jnp.float32(c), jnp.float32(kappa), jnp.float32(lr),
               jnp.float32(detector_weight), jnp.float32(detector_median or 0.0), jnp.float32(detector_dims),
               jnp.float32(threshold_weight), _thresholds(thresholds), targeted=targeted,
               max_steps=max_steps, patience=patience, search_steps=search_steps)


# --------------------------------------------------------------------------- boundary attack

def decision(ll, thresholds=None):
    """Decision with rejection as the C+1-th class: argmax if accepted, else C (paper 001 §4.3)."""
    return jnp.where(accepted(ll, thresholds), ll.argmax(1), ll.shape[1])


@functools.partial(jax.jit, static_argnames=("fn", "steps", "adapt_every", "fixed_noise", "targeted"))
def _boundary(fn, params, x, targets, starts, key, thresholds, spherical_step, source_step, factor,
              *, steps, adapt_every, fixed_noise, targeted):
    oracle_key = jax.random.fold_in(key, -1 % 2 ** 32)

    def adversarial(xa, k):
        return is_success(fn(params, xa, oracle_key if fixed_noise else k), targets, targeted, thresholds)

    def norm(v):
        return jnp.sqrt(jnp.sum(v ** 2, axis=(1, 2, 3), keepdims=True))

    def step(i, state):
        xa, sph, src, n_sph, n_sph_ok, n_src_ok = state
        k = jax.random.fold_in(key, i)
        diff = x - xa
        dist = norm(diff)
        unit = diff / jnp.maximum(dist, 1e-12)
        eta = jax.random.normal(jax.random.fold_in(k, 0), x.shape)
        eta = eta - jnp.sum(eta * unit, axis=(1, 2, 3), keepdims=True) * unit  # orthogonal
        eta = eta * sph[:, None, None, None] * dist / jnp.maximum(norm(eta), 1e-12)
        cand = xa + eta
        cand = x - (x - cand) * dist / jnp.maximum(norm(x - cand), 1e-12)  # back on the sphere
        cand_sph = jnp.clip(cand, 0.0, 1.0)
        cand = jnp.clip(cand + src[:, None, None, None] * dist * (x - cand) /
                        jnp.maximum(norm(x - cand), 1e-12), 0.0, 1.0)
        ok_sph = adversarial(cand_sph, jax.random.fold_in(k, 1))
        ok = adversarial(cand, jax.random.fold_in(k, 2)) & (norm(x - cand)[:, 0, 0, 0] < dist[:, 0, 0, 0])
        xa = jnp.where(ok[:, None, None, None], cand, xa)
        n_sph, n_sph_ok, n_src_ok = n_sph + 1, n_sph_ok + ok_sph, n_src_ok + (ok & ok_sph)
        adapt = (i + 1) % adapt_every == 0
        rate_sph = n_sph_ok / n_sph
        rate_src = n_src_ok / jnp.maximum(n_sph_ok, 1)
        sph = jnp.where(adapt, jnp.where(rate_sph > 0.5, sph * factor, sph / factor), sph)
        src = jnp.where(adapt & (n_sph_ok > 0),
                        jnp.where(rate_src > 0.5, src * factor, src / factor), src)
        zero = jnp.zeros_like(n_sph)
        n_sph, n_sph_ok, n_src_ok = (jnp.where(adapt, zero, n) for n in (n_sph, n_sph_ok, n_src_ok))
        return xa, sph, src, n_sph, n_sph_ok, n_src_ok

    b = x.shape[0]
    zeros = jnp.zeros((b,), jnp.int32)
    init = (starts, jnp.full((b,), spherical_step), jnp.full((b,), source_step), zeros, zeros, zeros)
    xa = jax.lax.fori_loop(0, steps, step, init)[0]
    return AttackResult(xa, adversarial(xa, jax.random.fold_in(key, steps)))


def boundary(model, x, targets, key, *, starts, steps: int = 1000, thresholds=None,
             spherical_step: float = 1e-2, source_step: float = 1e-2, step_adaptation: float = 1.5,
             adapt_every: int = 10, fixed_noise: bool = True, check_starts: bool = True,
             targeted: bool = True) -> AttackResult:
    """Decision-based boundary attack (Brendel et al.): targeted with rejection as a class (paper
    001 §4.3), or untargeted (paper 000 Tab. 5).

    Only decisions are used, with rejection as a C+1-th "non-image" class (``thresholds``): the
    attack starts from ``starts`` — images classified as ``targets`` and accepted — and walks
    towards ``x`` while every accepted step stays classified as the target and accepted.
    ``targeted=False``: ``targets`` are the true labels; the starts, and every accepted step, are
    classified as any other class (and accepted, where ``thresholds`` are given; without them the
    attack ignores rejection, as paper 000's rejection-unaware one). Per step:
    an orthogonal (spherical) perturbation of relative size ``spherical_step`` and a step of
    relative size ``source_step`` towards ``x``; both sizes are multiplied or divided by
    ``step_adaptation`` every ``adapt_every`` steps by whether more than half succeeded. The result
    is as close to ``x`` as it got (its L2 distance is the measure); success = still adversarial.
    ``fixed_noise``: every query uses one key (the oracle is a deterministic function, as a
    deployed classifier with fixed dequantization noise). With a fresh key per query a walk on a
    noisy likelihood keeps the points that were adversarial under one lucky draw and drifts off
    (measured on ibinn_digits_beta1: 0% success vs 90% with the noise fixed).
    ``check_starts``: raise if a start is not adversarial (under the oracle); otherwise such an
    example simply walks from a non-adversarial start (and usually fails).
    """
    fn, params = as_function(model)
    x, targets = _check(x, targets)
    starts, _ = _check(starts, targets)
    if starts.shape != x.shape:
        raise UserError(f"starts must have the images' shape {x.shape}, got {starts.shape}")
    start_ok = is_success(fn(params, starts, jax.random.fold_in(key, -1 % 2 ** 32)), targets,
                          targeted, _thresholds(thresholds))
    if check_starts and not bool(jnp.all(start_ok)):
        raise UserError(f"{int((~start_ok).sum())} start images are not "
                        f"{'classified as their target' if targeted else 'misclassified'} and accepted")
    return _boundary(fn, params, x, targets, starts, key, _thresholds(thresholds),
                     jnp.float32(spherical_step), jnp.float32(source_step),
                     jnp.float32(step_adaptation), steps=steps, adapt_every=adapt_every,
                     fixed_noise=fixed_noise, targeted=targeted)


# ------------------------------------------------------------------------------- LocalSearch

def local_search(model, x, labels, key, *, r: float = 1.5, p: float = 10.0, d: int = 5, t: int = 5,
                 rounds: int = 150, max_candidates: int = 128, init_fraction: float = 0.1,
                 thresholds=None) -> AttackResult:
    """Score-based black-box LocalSearch (Narodytska & Kasiviswanathan; paper 000 Tab. 5), untargeted.

    Pixels are centred to I = x − 0.5 ∈ [−0.5, 0.5]. Each round: of at most ``max_candidates``
    candidate locations (first a random ``init_fraction`` of all), perturb each alone to p·sign(I)
    (clipped to the range: the pixel goes to 0 or 1), score it by the true-class posterior, and
    keep the ``t`` locations with the LOWEST true-class probability (the ones that hurt the true
    class most); apply the cyclic change I ← r·I (wrapped into the range) at them, stop if
    adversarial, and take the next candidates from their (2d+1)² neighbourhoods. Only the
    posterior is queried (no gradients). The candidate batches are padded to ``max_candidates``
    so one compilation serves every round.
    """
    fn, params = as_function(model)
    x, labels = _check(x, labels)
    thresholds = _thresholds(thresholds)
    log_post = jax.jit(lambda xa, k: jax.nn.log_softmax(fn(params, xa, k), axis=1))
    success_fn = jax.jit(lambda xa, yy, k: is_success(fn(params, xa, k), yy, False, thresholds))
    seed = np.asarray(jax.random.randint(key, (), 0, 2 ** 31 - 1))
    rng = np.random.default_rng(int(seed))
    b, h, w, _ = x.shape
    out, success = np.array(x), np.zeros(b, bool)
    for n in range(b):
        img = np.asarray(x[n]) - 0.5
        y = int(labels[n])
        locs = [(i // w, i % w) for i in rng.choice(h * w, max(1, int(init_fraction * h * w)), replace=False)]
        for rd in range(rounds):
            rng.shuffle(locs)
            locs = locs[:max_candidates]
            cands = np.repeat(img[None], max_candidates, 0)
            for c, (i, j) in enumerate(locs):
                cands[c, i, j] = np.clip(p * np.sign(img[i, j]), -0.5, 0.5)
            k = jax.random.fold_in(key, n * rounds + rd)
            probs = np.asarray(log_post(jnp.asarray(cands + 0.5), k))[:len(locs), y]
            keep = [locs[c] for c in np.argsort(probs)[:t]]
            for i, j in keep:
                v = r * img[i, j]
                img[i, j] = np.where(v < -0.5, v + 1.0, np.where(v > 0.5, v - 1.0, v))
            if bool(success_fn(jnp.asarray(img[None] + 0.5), jnp.asarray([y]), k)[0]):
                success[n] = True
                break
            locs = sorted({(a, c) for i, j in keep for a in range(max(0, i - d), min(h, i + d + 1))
                           for c in range(max(0, j - d), min(w, j + d + 1))})
        out[n] = img + 0.5
    return AttackResult(jnp.asarray(np.clip(out, 0.0, 1.0)), jnp.asarray(success))


# ------------------------------------------------------------------------------ the registry

class Attack(NamedTuple):
    """A registered attack: ``fn(model, x, labels, key, **params) -> AttackResult``, every parameter
    keyword-only; ``labels`` are the targets where ``params`` make it targeted."""
    fn: Callable
    gradient: bool = False      # white-box: driven by the gradient of a loss
    eot: bool = False           # takes ``eot``: likelihood draws per gradient
    needs_starts: bool = False  # decision-based: walks from adversarial ``starts``


# Attacks by name (the adversarial suite's ``AttackSpec.attack``). A new attack: its function
# above and its line here.
ATTACKS: dict[str, Attack] = {
    "fgsm": Attack(fgsm, gradient=True, eot=True),
    "pgd": Attack(pgd, gradient=True, eot=True),
    "apgd": Attack(apgd, gradient=True, eot=True),
    "apgd_t": Attack(apgd_targeted, gradient=True, eot=True),
    "square": Attack(square),
    "cw_l2": Attack(cw_l2, gradient=True),
    "boundary": Attack(boundary, needs_starts=True),
    "local_search": Attack(local_search),
}


def get(name: str) -> Attack:
    """The registered attack called ``name``; a ``UserError`` naming the known ones otherwise."""
    if name not in ATTACKS:
        raise UserError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    return ATTACKS[name]
