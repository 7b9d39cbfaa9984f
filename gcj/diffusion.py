"""Diffusion SDEs and exact likelihoods through the probability-flow ODE (paper 004).

    from gcj.diffusion import VPSDE, log_likelihood
    res = log_likelihood(score_fn, VPSDE(), x, key)   # res.logp: [B] nats, res.nfe: [B]
    lower = elbo(score_fn, VPSDE(), x, key, num_draws=64)  # lower.bound: [B], no ODE

``score_fn(x [B, ...], t [B]) -> [B, ...]`` is any JAX callable. The log-density follows from the
instantaneous change of variables along the ODE dx/dt = f(x, t) - g(t)^2 s(x, t) / 2 from ``eps`` to
``T``:  log p_eps(x) = log p_T(x_T) + int_eps^T div f~(x_t, t) dt.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import diffrax
import jax
import jax.numpy as jnp

from gcj import ops
from gcj.errors import UserError

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
    """``v`` [B] broadcast against ``x`` [B, ...]."""
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


@dataclasses.dataclass(frozen=True)
class VPSDE:
    """Variance-preserving SDE dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw, beta linear, T = 1."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integrated_beta(self, t):
        """B(t) = int_0^t beta(s) ds."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2

    def drift(self, x, t):
        """f(x, t) for ``x`` [B, ...], ``t`` [B]."""
        return -0.5 * _bcast(self.beta(t), x) * x

    def diffusion_squared(self, t):
        """g(t)^2."""
        return self.beta(t)

    def marginal_mean_coef(self, t):
        """m(t): x_t | x_0 ~ N(m(t) x_0, std(t)^2 I)."""
        return jnp.exp(-0.5 * self.integrated_beta(t))

    def marginal_std(self, t):
        """sqrt(1 - exp(-B(t))), through expm1 so that small t keeps its precision."""
        return jnp.sqrt(-jnp.expm1(-self.integrated_beta(t)))

    def marginal(self, x0, t):
        """Mean and std of p_t(x_t | x_0)."""
        return _bcast(self.marginal_mean_coef(t), x0) * x0, self.marginal_std(t)

    def prior_log_prob(self, z):
        """log N(z; 0, I) per example, ``[B]``."""
        return ops.gaussian_log_prob(z.reshape(z.shape[0], -1))

    def prior_sample(self, key, shape, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype)

    def cumulative_likelihood_weight(self, t):
        """W(t) = int g^2 / std^2 dt = log(exp(B(t)) - 1): the importance-sampling density of t is
        proportional to g^2 / std^2 (likelihood weighting, Song et al. 2021)."""
        return jnp.log(jnp.expm1(self.integrated_beta(t)))


@dataclasses.dataclass(frozen=True)
class SubVPSDE(VPSDE):
    """sub-VP SDE: the VP drift with g(t)^2 = beta(t) (1 - exp(-2 B(t))); std = 1 - exp(-B(t))."""

    def diffusion_squared(self, t):
        return self.beta(t) * -jnp.expm1(-2.0 * self.integrated_beta(t))

    def marginal_std(self, t):
        return -jnp.expm1(-self.integrated_beta(t))

    def cumulative_likelihood_weight(self, t):
        """int g^2 / std^2 dt = 2 log(exp(B) - 1) - B."""
        b = self.integrated_beta(t)
        return 2.0 * jnp.log(jnp.expm1(b)) - b


SDES = {"vp": VPSDE, "subvp": SubVPSDE}


def sample_importance_time(sde: VPSDE, key: jax.Array, shape, eps: float = 1e-5,
                           iterations: int = 40) -> jax.Array:
    """t in [eps, T] with density proportional to g(t)^2 / std(t)^2: the cumulative weight is
    inverted by bisection (it is increasing in t)."""
    w0, w1 = sde.cumulative_likelihood_weight(eps), sde.cumulative_likelihood_weight(sde.T)
    target = w0 + jax.random.uniform(key, shape) * (w1 - w0)
    lo, hi = jnp.full(shape, eps), jnp.full(shape, sde.T)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = sde.cumulative_likelihood_weight(mid) < target
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, body, (lo, hi))
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------------------ likelihood

class LikelihoodResult(NamedTuple):
    logp: jax.Array         # [B] log p_eps(x) in nats (mean over probes)
    prior_logp: jax.Array   # [B] log p_T(x_T)
    delta_logp: jax.Array   # [B] int div dt (mean over probes)
    probe_logp: jax.Array   # [B, P] log p(x) with each probe alone (P = 1 for 'exact')
    z: jax.Array            # [B, ...] x_T, the ODE's end point
    nfe: jax.Array          # [B] evaluations of the drift (from the solver's step counts)


def make_probes(key: jax.Array, shape, num_probes: int = 1, kind: str = "rademacher",
                dtype=jnp.float32) -> jax.Array:
    """``[num_probes, *shape]`` Hutchinson probes with E[e e^T] = I."""
    shape = (num_probes, *shape)
    if kind == "rademacher":
        return jax.random.rademacher(key, shape, dtype)
    if kind == "gaussian":
        return jax.random.normal(key, shape, dtype)
    raise UserError(f"unknown probe kind {kind!r}; use 'rademacher' or 'gaussian'")


ADJOINTS = ("recursive", "backsolve")


def make_adjoint(name: str = "recursive", rtol: float = 1e-5, atol: float = 1e-5,
                 checkpoints: int | None = None) -> diffrax.AbstractAdjoint:
    """How ``log_likelihood`` is differentiated (``config.model.score.ode.adjoint``):

    - ``'recursive'``: ``diffrax.RecursiveCheckpointAdjoint(checkpoints)``, discretise-then-optimise:
      the exact gradient of the computed solution; memory ~ ``checkpoints`` solver states.
    - ``'backsolve'``: ``diffrax.BacksolveAdjoint``, the continuous adjoint: the adjoint ODE solved
      backwards from T with Dopri5 at the same ``rtol``/``atol`` (second order through the drift's
      jvp); constant memory in the number of steps, the gradient accurate to the tolerances only
      (bench/score_gradient.py measures both against float64 finite differences).
    """
    if name == "recursive":
        return diffrax.RecursiveCheckpointAdjoint(checkpoints)
    if name == "backsolve":
        if checkpoints is not None:
            raise UserError("checkpoints applies to the 'recursive' adjoint only")
        return diffrax.BacksolveAdjoint(solver=diffrax.Dopri5(),
                                        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol))
    raise UserError(f"unknown adjoint {name!r}; use one of {', '.join(ADJOINTS)}")


# Drift evaluations per step of the explicit RK solvers (FSAL ones reuse their last stage).
_EVALS_PER_STEP = {diffrax.Dopri5: 6, diffrax.Tsit5: 6, diffrax.Dopri8: 12, diffrax.Bosh3: 3,
                   diffrax.Heun: 2, diffrax.Euler: 1, diffrax.Midpoint: 2, diffrax.Ralston: 2}


def log_likelihood(score_fn: ScoreFn, sde: VPSDE, x: jax.Array, key: jax.Array | None = None, *,
                   cond: jax.Array | None = None, divergence: str = "hutchinson", num_probes: int = 1, probe: str = "rademacher",
                   probes: jax.Array | None = None, rtol: float = 1e-5, atol: float = 1e-5,
                   eps: float = 1e-5, solver: diffrax.AbstractSolver | None = None,
                   controller: diffrax.AbstractStepSizeController | None = None,
                   adjoint: diffrax.AbstractAdjoint | None = None,
                   max_steps: int = 4096, checkpoints: int | None = None) -> LikelihoodResult:
    """log p(x) under the probability-flow ODE of ``sde`` with score ``score_fn``; jittable.

    One ``diffrax.diffeqsolve`` from ``eps`` to ``T`` (default ``Dopri5`` with an integral step
    controller at ``rtol``/``atol``; a ``controller`` replaces it, tolerances included), vmapped
    over the batch so that every sample has its own step-size control and its result does not
    depend on the other samples. The state is (x, one divergence integral
    per probe): each evaluation takes the drift's vjp once and applies it to every probe
    (e^T J e = (J^T e) . e), so value and divergence come from one pass and all probes share one
    trajectory. Reverse mode, so a score network may use ``jax.custom_vjp`` layers (the score
    family's convolutions do: ``conv.conv_general_dilated``).

    - ``divergence='hutchinson'``: e^T (df/dx) e with ``num_probes`` fixed probes (``probe`` kind),
      drawn from ``key`` with the shape of ONE sample and shared by the whole batch (a sample's
      estimate then depends only on ``key``); or pass ``probes`` ``[P, *x.shape[1:]]`` yourself.
    - ``divergence='exact'``: the full Jacobian trace (one vjp per dimension; small inputs only).

    Differentiable w.r.t. ``x`` (and anything ``score_fn`` closes over) with the default
    ``diffrax.RecursiveCheckpointAdjoint``: discretise-then-optimise, so the gradient is the exact
    gradient of the computed solution and it differentiates through the vjp in the drift
    (second-order through the network). It stores ``checkpoints`` solver states for the backward
    pass, allocated up front: ``None`` is diffrax's log2(``max_steps``), least memory but
    O(n log n) recomputation of the n forward steps; with ``checkpoints`` >= n nothing is recomputed
    (memory ~ checkpoints x state; bench/likelihood_speed.py measures both).
    Not forward-differentiable: pass ``adjoint=diffrax.DirectAdjoint()`` for that or for Hessians
    (with a score that has no ``jax.custom_vjp`` inside).
    ``make_adjoint('backsolve')``: the continuous adjoint (constant memory); under your own
    ``jax.vmap`` give it a batched ``x`` (diffrax's backsolve wants the cotangent of each solve).

    ``cond``: per-sample conditioning ``[B, ...]`` (class labels): the score is then called as
    ``score_fn(x, t, cond)``, each sample with its own row, passed to the solver as an argument
    (not closed over: the continuous adjoint needs that).
    The solve raises if it needs more than ``max_steps`` steps.
    """
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise UserError(f"x must be [B, ...] with a batch axis, got shape {x.shape}")
    if divergence not in ("hutchinson", "exact"):
        raise UserError(f"unknown divergence {divergence!r}; use 'hutchinson' or 'exact'")
    shape, dtype = x.shape[1:], x.dtype
    dim = math.prod(shape)
    if divergence == "exact":
        probes = jnp.eye(dim, dtype=dtype).reshape(dim, *shape)
    elif probes is None:
        if key is None:
            raise UserError("divergence='hutchinson' needs a key (or explicit probes)")
        probes = make_probes(key, shape, num_probes, probe, dtype)
    elif probes.shape[1:] != shape:
        raise UserError(f"probes must be [P, {', '.join(map(str, shape))}], got {probes.shape}")
    probes = probes.astype(dtype)
    solver = diffrax.Dopri5() if solver is None else solver
    if controller is None:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
    if adjoint is None:
        adjoint = make_adjoint("recursive", checkpoints=checkpoints)
    elif checkpoints is not None:
        raise UserError("checkpoints applies to the default adjoint only; set it on your adjoint")

    if cond is not None and (jnp.ndim(cond) < 1 or jnp.shape(cond)[0] != x.shape[0]):
        raise UserError(f"cond must have the batch axis of x ({x.shape[0]}), got shape {jnp.shape(cond)}")

    consts = ()  # what the score closes over, as solver arguments (the continuous adjoint needs that)
    if isinstance(adjoint, diffrax.BacksolveAdjoint):
        example = (x[:1], jnp.full((1,), eps, dtype)) + (() if cond is None else (jnp.asarray(cond)[:1],))
        score_fn, consts = jax.closure_convert(score_fn, *example)

    def flow(xi, t, ci, consts):  # the probability-flow drift of one sample
        xb, tb = xi[None], jnp.full((1,), t, dtype)
        s = score_fn(xb, tb, *consts) if ci is None else score_fn(xb, tb, ci[None], *consts)
        return (sde.drift(xb, tb) - 0.5 * _bcast(sde.diffusion_squared(tb), xb) * s)[0]

    def vector_field(t, state, args):
        (xi, _), (probes_, ci, consts_) = state, args
        dx, vjp = jax.vjp(lambda y: flow(y, t, ci, consts_), xi)
        # e^T J e = (J^T e) . e per probe, probe after probe (a vmap over 2 probes crashes XLA:CPU
        # in reverse mode); reverse mode, so that a network with a custom_vjp (ops.conv_general_
        # dilated) can be used
        quad = jax.lax.map(lambda e: jnp.vdot(vjp(e)[0], e), probes_)
        if divergence == "exact":
            quad = jnp.sum(quad, keepdims=True)
        return dx, quad

    n_div = 1 if divergence == "exact" else probes.shape[0]

    def solve_one(xi, ci):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field), solver, t0=eps, t1=sde.T, dt0=None,
            y0=(xi, jnp.zeros((n_div,), dtype)), args=(probes, ci, consts),
            stepsize_controller=controller,
            adjoint=adjoint, max_steps=max_steps)
        z, delta = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
        return z, delta, sol.stats["num_steps"]

    z, delta, steps = jax.vmap(solve_one, (0, None if cond is None else 0))(x, cond)
    prior = sde.prior_log_prob(z)
    probe_logp = prior[:, None] + delta
    per_step = _EVALS_PER_STEP.get(type(solver), solver.tableau.num_stages
                                   if hasattr(solver, "tableau") else 1)
    nfe = steps * per_step + 1  # + the first step's first stage (counted in tests)
    return LikelihoodResult(logp=jnp.mean(probe_logp, 1), prior_logp=prior,
                            delta_logp=jnp.mean(delta, 1), probe_logp=probe_logp, z=z, nfe=nfe)


class BoundResult(NamedTuple):
    bound: jax.Array        # [B] the Monte Carlo estimate of the variational bound on log p(x), nats
    draw_bound: jax.Array   # [B, K] the bound with each (t, noise) draw alone (its mean is ``bound``)


def elbo(score_fn: ScoreFn, sde: VPSDE, x: jax.Array, key: jax.Array, *, num_draws: int,
         eps: float = 1e-5, cond: jax.Array | None = None) -> BoundResult:
    """The continuous-time variational bound on log p(x) of the score model's SDE (Song et al.
    2021, "Maximum Likelihood Training of Score-Based Diffusion Models", the denoising form of
    their bound), by Monte Carlo over ``num_draws`` (t, noise) draws; jittable, differentiable,
    vmappable; no ODE. With x_t = m(t) x + std(t) n, n ~ N(0, I), D the dimension, Z = ∫ g²/std² dt
    over [``eps``, T] and t drawn with density g²/std² / Z (likelihood weighting's importance
    sampling, as in training)::

        bound = E[log N(x_T; 0, I)] - Z/2 E_t,n ‖std(t) s(x_t, t) + n‖² + D/2 (Z - ∫ β dt)

    (the first term in closed form; ∫ div f dt = -D/2 ∫ β dt for the VP and sub-VP drifts). For the true
    score and a prior equal to p_T it is log p(x) itself; a worse score lowers its mean. It bounds
    the density of the SDE's model, which the probability-flow ODE's ``log_likelihood`` only
    approximates for a learned score, so "below the ODE" holds on average, not image by image.

    The draws come from ``key`` alone, shared by every image of the batch (an image's estimate
    does not depend on its batch) and by every class: ``cond`` [B] passes each image's class, and
    evaluating one image under several classes with one key gives a paired comparison.
    ``score_fn(x [B, ...], t [B]) -> [B, ...]`` (``score_fn(x, t, cond)`` with ``cond``).
    Its gradient recomputes each draw in the backward pass: memory does not grow with
    ``num_draws`` (one more network evaluation per draw).
    """
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise UserError(f"x must be [B, ...] with a batch axis, got shape {x.shape}")
    if num_draws < 1:
        raise UserError(f"num_draws must be at least 1, got {num_draws}")
    b, shape, dtype = x.shape[0], x.shape[1:], x.dtype
    dim = math.prod(shape)
    k_t, k_n = jax.random.split(key)
    t = sample_importance_time(sde, k_t, (num_draws,), eps).astype(dtype)
    noise = jax.random.normal(k_n, (num_draws, *shape), dtype)
    z = sde.cumulative_likelihood_weight(sde.T) - sde.cumulative_likelihood_weight(eps)

    def one_draw(draw):
        ti, ni = draw
        tb = jnp.full((b,), ti, dtype)
        std = sde.marginal_std(tb)
        xt = _bcast(sde.marginal_mean_coef(tb), x) * x + _bcast(std, x) * ni[None]
        s = (score_fn(xt, tb) if cond is None else score_fn(xt, tb, cond)) * _bcast(std, x)
        # ‖std s + n‖² with ‖n‖² replaced by its mean D (a control variate: the same expectation,
        # without the variance of ‖n‖²)
        return jnp.sum((s * (s + 2 * ni[None])).reshape(b, -1), axis=1) + dim

    sq = jax.lax.map(jax.checkpoint(one_draw), (t, noise)).T  # [B, K]
    m_T, std_T = sde.marginal_mean_coef(sde.T), sde.marginal_std(sde.T)
    flat = x.reshape(b, -1)
    prior = -0.5 * dim * math.log(2 * math.pi) - 0.5 * (m_T ** 2 * jnp.sum(flat ** 2, 1) + dim * std_T ** 2)
    constant = 0.5 * dim * (z - (sde.integrated_beta(sde.T) - sde.integrated_beta(eps)))
    draw_bound = (prior + constant)[:, None] - 0.5 * z * sq
    return BoundResult(bound=jnp.mean(draw_bound, 1), draw_bound=draw_bound)


def bits_per_dim(logp: jax.Array, dim: int, data_range: str = "[0,1]", bits: int = 8) -> jax.Array:
    """bits/dim of ``bits``-bit data from the log-density (nats) of its dequantized version.

    A density on [0, 1]^D of dequantized x = (k + u) / 2^bits gives P(k) ~ p(x) 2^(-bits D), so
    bpd = -log p / (D ln 2) + bits; on [-1, 1] data the scale is 2^(bits-1) (offset bits - 1).
    """
    offsets = {"[0,1]": bits, "[-1,1]": bits - 1}
    if data_range not in offsets:
        raise UserError(f"unknown data_range {data_range!r}; use '[0,1]' or '[-1,1]'")
    return ops.bits_per_dim(logp, dim, offsets[data_range])
