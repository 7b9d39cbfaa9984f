"""Adversarial attacks, written once against the contract.

Every attack takes ``model`` — a ``Classifier`` or any pure ``(x, key) -> [B, C]`` log p(x|y)
function — images ``x`` float ``[B, H, W, C]`` in [0, 1], integer ``labels`` ``[B]`` and an explicit
``key``, and returns ``AttackResult(x, success)``: adversarial inputs in [0, 1] and a boolean
``[B]``. White-box attacks are driven by ``jax.grad`` of a loss on the class log-likelihoods and
run as one jitted loop; stochastic likelihoods (dequantization, Hutchinson probes) get a fresh
``fold_in`` key at every step. The score family is attacked through its ODE like any other.

Losses (``loss=``), maximised; ``l = log p(x|y)``, ``y`` the label (untargeted) or target:
- ``"ce"``: the cross-entropy of the posterior softmax(l) (targeted: its negative). It saturates
  when the class log-likelihoods are far apart, as for most generative classifiers (paper 000 §4.2).
- ``"margin"``: max_{j != y} l_j - l_y (targeted: l_y - max_{j != y} l_j); never saturates.
- ``"rejection"``: the margin and, at once, the threshold of the class the attack moves to:
  min(margin, l_j - delta_j) with j the best other class (targeted: the target). Positive means
  fooled AND accepted: the adaptive attack a rejection defense must face.

``thresholds`` (per-class log-likelihood thresholds ``[C]``) make success mean "fooled and
accepted" (``max_y l_y >= delta_argmax``); without them success means fooled.
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

LOSSES = ("ce", "margin", "rejection")


class AttackResult(NamedTuple):
    x: jax.Array        # [B, H, W, C] adversarial inputs in [0, 1]
    success: jax.Array  # [B] bool
    # [B] bool, attacks with a stopping rule (CW): stopped by it, not by the step cap; else None
    stopped: jax.Array | None = None


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
        raise ValueError(f"labels must be integers of shape [{x.shape[0]}], got {labels.dtype} {labels.shape}")
    return x, labels.astype(jnp.int32)


def _thresholds(thresholds, num_classes: int | None = None):
    """``[C]`` float array, or a [1] of -inf (accept everything) when None."""
    if thresholds is None:
        return jnp.full((1,), -jnp.inf)
    t = jnp.asarray(thresholds, jnp.float32)
    if t.ndim != 1 or (num_classes is not None and t.shape[0] != num_classes):
        raise ValueError(f"thresholds must be [C] per-class log-likelihoods, got shape {t.shape}")
    return t


# ------------------------------------------------------------------------------------ losses

def _delta(thresholds, idx):
    """delta_idx, broadcasting the accept-all [1] threshold."""
    return thresholds[jnp.minimum(idx, thresholds.shape[0] - 1)]


def attack_loss(ll, y, kind: str = "margin", targeted: bool = False, thresholds=None):
    """Per-example loss ``[B]`` to maximise (module docstring), from log-likelihoods ``[B, C]``."""
    thresholds = _thresholds(thresholds)
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
            return jnp.minimum(l_y - other, l_y - _delta(thresholds, y))
        return jnp.minimum(other - l_y, other - _delta(thresholds, j))
    raise ValueError(f"unknown attack loss {kind!r}; known: {', '.join(LOSSES)}")


def accepted(ll, thresholds=None):
    """``[B]`` bool: max_y l_y >= delta_argmax (always True without thresholds)."""
    thresholds = _thresholds(thresholds)
    return ~ops.rejected(ll, jnp.broadcast_to(thresholds, ll.shape[1:]))


def is_success(ll, y, targeted: bool = False, thresholds=None):
    """Fooled (untargeted: argmax != y; targeted: argmax == y), and accepted if thresholds given."""
    pred = ll.argmax(1)
    fooled = pred == y if targeted else pred != y
    return fooled & accepted(ll, thresholds)


# ------------------------------------------------------------------------------ PGD and FGSM

def loss_gradient(model, x, labels, key, *, loss: str = "margin", targeted: bool = False,
                  thresholds=None) -> jax.Array:
    """∇_x of the summed attack loss: the direction every white-box attack here ascends (for the
    score family, through its ODE, divergence term included)."""
    fn, params = as_function(model)
    x, labels = _check(x, labels)
    return _loss_gradient(fn, params, x, labels, key, _thresholds(thresholds), loss=loss,
                          targeted=targeted)


@functools.partial(jax.jit, static_argnames=("fn", "loss", "targeted"))
def _loss_gradient(fn, params, x, y, key, thresholds, *, loss, targeted):
    return jax.grad(lambda v: attack_loss(fn(params, v, key), y, loss, targeted, thresholds).sum())(x)


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


@functools.partial(jax.jit, static_argnames=("fn", "norm", "steps", "loss", "targeted",
                                              "random_start", "restarts"))
def _pgd(fn, params, x, y, key, eps, step_size, thresholds, *, norm, steps, loss, targeted,
         random_start, restarts):
    def loss_and_ll(xa, k):
        ll = fn(params, xa, k)
        return attack_loss(ll, y, loss, targeted, thresholds).sum(), ll

    grad_fn = jax.grad(loss_and_ll, has_aux=True)

    def score(xa, k):
        ll = fn(params, xa, k)
        return attack_loss(ll, y, loss, targeted, thresholds), is_success(ll, y, targeted, thresholds)

    def better(s, l, best_s, best_l):  # success first, then the loss
        return (s & ~best_s) | ((s == best_s) & (l > best_l))

    def restart(carry, r):
        best_x, best_s, best_l = carry
        k_start, kr = jax.random.split(jax.random.fold_in(key, r))
        xa = x
        if random_start:
            xa = jnp.clip(x + _random_start(k_start, x, eps, norm), 0.0, 1.0)

        def step(i, state):
            xa, best_x, best_s, best_l = state
            k = jax.random.fold_in(kr, i)
            g, ll = grad_fn(xa, k)
            l = attack_loss(ll, y, loss, targeted, thresholds)
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
        random_start: bool = True, restarts: int = 1, thresholds=None) -> AttackResult:
    """Projected gradient ascent of ``loss`` in the ``norm`` ball of radius ``eps`` (∩ [0, 1]).

    ``norm``: ``"linf"`` (signed gradient steps) or ``"l2"`` (normalised gradient steps).
    ``step_size`` defaults to foolbox's: eps / 30 (L∞), 0.025 eps (L2). ``labels`` are the true
    labels, or the targets when ``targeted``. Each restart starts uniformly in the ball (if
    ``random_start``); per example the best iterate over all steps and restarts is returned
    (successful first, then the highest loss), so more steps or restarts never weaken it.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if loss not in LOSSES:
        raise ValueError(f"unknown attack loss {loss!r}; known: {', '.join(LOSSES)}")
    if not eps > 0 or steps < 1 or restarts < 1:
        raise ValueError(f"need eps > 0, steps >= 1 and restarts >= 1 (got {eps}, {steps}, {restarts})")
    if loss == "rejection" and thresholds is None:
        raise ValueError("the 'rejection' loss needs the per-class thresholds")
    fn, params = as_function(model)
    x, labels = _check(x, labels)
    if step_size is None:
        step_size = eps / 30 if norm == "linf" else 0.025 * eps
    return _pgd(fn, params, x, labels, key, jnp.float32(eps), jnp.float32(step_size),
                _thresholds(thresholds), norm=norm, steps=steps, loss=loss, targeted=targeted,
                random_start=random_start, restarts=restarts)


def fgsm(model, x, labels, key, *, eps: float, loss: str = "ce", targeted: bool = False,
         thresholds=None) -> AttackResult:
    """Fast gradient sign method: one L∞ step of size ``eps`` from ``x`` (Goodfellow et al.)."""
    return pgd(model, x, labels, key, eps=eps, norm="linf", steps=1, step_size=eps, loss=loss,
               targeted=targeted, random_start=False, thresholds=thresholds)


# -------------------------------------------------------------------------------- CW L2

@functools.partial(jax.jit, static_argnames=("fn", "targeted", "max_steps", "patience"))
def _cw(fn, params, x, y, key, c, kappa, lr, detector_weight, detector_median, detector_dims, threshold_weight,
        thresholds, *, targeted, max_steps, patience):
    num = x.shape[0]
    w0 = jnp.arctanh(jnp.clip(2 * x - 1, -1 + 1e-6, 1 - 1e-6))
    opt = optax.adam(lr)

    def losses(w, k):
        xa = 0.5 * (jnp.tanh(w) + 1)
        ll = fn(params, xa, k)
        l_y = ops.pick(ll, y)
        other, j = ops.best_other(ll, y)
        f = other - l_y if targeted else l_y - other  # <= 0 once adversarial
        per = jnp.sum((xa - x) ** 2, axis=(1, 2, 3)) + c * jnp.maximum(f, -kappa)
        log_q = jax.nn.logsumexp(ll, axis=1) - jnp.log(ll.shape[1])  # log p(x), uniform prior
        per = per + detector_weight * ((detector_median - log_q) / detector_dims) ** 2
        moved_to = y if targeted else j
        per = per + threshold_weight * jnp.maximum(0.0, _delta(thresholds, moved_to) - ops.pick(ll, moved_to))
        return per.sum(), per

    grad_fn = jax.grad(losses, has_aux=True)

    def cond(state):
        return (state[0] < max_steps) & jnp.any(state[-1] < patience)

    def body(state):
        step, w, opt_state, best_w, best, since = state
        g, per = grad_fn(w, jax.random.fold_in(key, step))  # the loss at w, before the update
        improved = jnp.isinf(best) | (per < best - 1e-4 * jnp.maximum(1.0, jnp.abs(best)))
        active = since < patience
        best_w = jnp.where((active & (per < best))[:, None, None, None], w, best_w)
        best = jnp.where(active, jnp.minimum(per, best), best)
        since = jnp.where(active, jnp.where(improved, 0, since + 1), since)
        g = jnp.where(active[:, None, None, None], g, 0.0)
        updates, opt_state = opt.update(g, opt_state, w)
        w = jnp.where(active[:, None, None, None], optax.apply_updates(w, updates), w)
        return step + 1, w, opt_state, best_w, best, since

    state = (0, w0, opt.init(w0), w0, jnp.full((num,), jnp.inf), jnp.zeros((num,), jnp.int32))
    _, w, _, best_w, _, since = jax.lax.while_loop(cond, body, state)
    # per example the iterate of lowest loss if it is still adversarial under a fresh key (always,
    # for a deterministic likelihood), else the last one: with noisy likelihoods (dequantization)
    # the lowest loss is often a lucky draw just across the boundary, the last iterate deeper
    k_check = jax.random.fold_in(key, max_steps)
    x_best, x_last = 0.5 * (jnp.tanh(best_w) + 1), 0.5 * (jnp.tanh(w) + 1)
    s_best = is_success(fn(params, x_best, k_check), y, targeted, thresholds)
    s_last = is_success(fn(params, x_last, k_check), y, targeted, thresholds)
    return AttackResult(jnp.where(s_best[:, None, None, None], x_best, x_last), s_best | s_last,
                        since >= patience)


def cw_l2(model, x, labels, key, *, c: float = 10.0, kappa: float = 0.01, targeted: bool = True,
          lr: float = 0.01, max_steps: int = 1000, patience: int = 20,
          detector_weight: float = 0.0, detector_median: float | None = None, detector_dims: int = 1,
          threshold_weight: float = 0.0, thresholds=None) -> AttackResult:
    """Carlini–Wagner L2 on the class log-likelihoods (paper 002 §4.6; paper 000 untargeted).

    x' = (tanh w + 1)/2, Adam(``lr``) on w, minimising per example
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
    """
    if detector_weight and detector_median is None:
        raise ValueError("detector_weight needs detector_median (median log p(x) of training images)")
    if threshold_weight and thresholds is None:
        raise ValueError("threshold_weight needs the per-class thresholds")
    fn, params = as_function(model)
    x, labels = _check(x, labels)
    return _cw(fn, params, x, labels, key, jnp.float32(c), jnp.float32(kappa), jnp.float32(lr),
               jnp.float32(detector_weight), jnp.float32(detector_median or 0.0), jnp.float32(detector_dims),
               jnp.float32(threshold_weight), _thresholds(thresholds), targeted=targeted,
               max_steps=max_steps, patience=patience)


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


def boundary(model, x, targets, starts, key, *, steps: int = 1000, thresholds=None,
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
        raise ValueError(f"starts must have the images' shape {x.shape}, got {starts.shape}")
    start_ok = is_success(fn(params, starts, jax.random.fold_in(key, -1 % 2 ** 32)), targets,
                          targeted, _thresholds(thresholds))
    if check_starts and not bool(jnp.all(start_ok)):
        raise ValueError(f"{int((~start_ok).sum())} start images are not "
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
