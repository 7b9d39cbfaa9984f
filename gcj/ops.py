"""The formulas gcj uses in more than one place, each written once. Jax arrays (and tracers: jit /
grad / vmap) in, jax arrays out; numpy in, numpy out, in numpy's precision (the evaluation suites
compute in float64 on the host).

Class log-likelihoods are ``ll [B, C]`` (log p(x|y), nats); labels and classes ``[B]`` integers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gcj.errors import UserError

LOG_2PI = math.log(2 * math.pi)


def _xp(*arrays):
    """numpy when every argument is a numpy array or a Python number, else jax.numpy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def pick(values, idx) -> jax.Array:
    """``values[b, idx[b]]`` for ``values [B, C]``, ``idx [B]``: e.g. the true class's log-likelihood."""
    xp = _xp(values, idx)
    return xp.take_along_axis(xp.asarray(values), xp.asarray(idx)[:, None], axis=1)[:, 0]


def best_other(ll, y) -> tuple[jax.Array, jax.Array]:
    """max_{j != y} ll_j and its index j, ``[B]`` each."""
    xp = _xp(ll, y)
    ll = xp.asarray(ll)
    masked = xp.where(xp.arange(ll.shape[1])[None] == xp.asarray(y)[:, None], -xp.inf, ll)
    return masked.max(1), masked.argmax(1)


def acceptance_margin(ll, thresholds, idx) -> jax.Array:
    """How far inside its acceptance region an input is, for class ``idx`` ``[B]`` (negative:
    rejected). ``thresholds`` ``[C]``, one per class (paper 000): log p(x|idx) - delta_idx; one
    number ``[]``, on the marginal (paper 001: a bits/dim threshold on p(x)): log p(x) - T, the
    same for every class. (A threshold of -inf accepts everything.)"""
    xp = _xp(ll, thresholds, idx)
    ll, t = xp.asarray(ll), xp.asarray(thresholds)
    if t.ndim == 0:
        return (log_marginal(ll) if xp is jnp else np.asarray(log_marginal(jnp.asarray(ll)))) - t
    return pick(ll, idx) - t[idx]


def rejected(ll, thresholds) -> jax.Array:
    """Classification with rejection: ``[B]`` True where the prediction argmax_y log p(x|y) is
    outside its acceptance region (``acceptance_margin``): per-class thresholds ``[C]`` (paper 000,
    max_y log p(x|y) below delta_{argmax_y}) or one threshold ``[]`` on log p(x) (paper 001)."""
    xp = _xp(ll, thresholds)
    ll = xp.asarray(ll)
    return acceptance_margin(ll, thresholds, ll.argmax(1)) < 0


def gaussian_log_prob(u, log_std=0.0) -> jax.Array:
    """log N(u; 0, diag(exp(log_std))^2) of standardized values u = (z - mean) / std, summed over
    the last axis (``log_std`` broadcasts against ``u``)."""
    xp = _xp(u, log_std)
    log_std = xp.broadcast_to(xp.asarray(log_std, dtype=xp.result_type(u)), xp.shape(u))
    return xp.sum(-0.5 * (xp.square(u) + LOG_2PI) - log_std, axis=-1)


def bits_per_dim(logp, dim: int, offset: float = 8.0) -> jax.Array:
    """bits/dim from a log-density in nats over ``dim`` dimensions: -log p / (D ln 2) + ``offset``
    (8 for a density of 8-bit images dequantized onto [0, 1]: P(k) ~ p(x) 2^-8D)."""
    return -logp / (dim * math.log(2.0)) + offset


def log_p_at_bits_per_dim(bpd, dim: int, offset: float = 8.0):
    """The log-density (nats) whose ``bits_per_dim`` is ``bpd``: -(bpd - offset) D ln 2."""
    return -(bpd - offset) * dim * math.log(2.0)


def entropy(log_probs) -> jax.Array:
    """-sum_y p log p over the last axis, from log-probabilities (0 log 0 = 0)."""
    xp = _xp(log_probs)
    log_probs = xp.asarray(log_probs)
    finite = log_probs > -xp.inf
    return -xp.sum(xp.where(finite, xp.exp(xp.where(finite, log_probs, 0.0)) * log_probs, 0.0), axis=-1)


def _log_prior(num_classes: int, log_prior) -> jax.Array:
    if log_prior is None:
        return jnp.full((num_classes,), -jnp.log(num_classes))
    log_prior = jnp.asarray(log_prior)
    if log_prior.shape != (num_classes,):
        raise UserError(f"log_prior must have shape ({num_classes},), got {log_prior.shape}")
    return log_prior


def log_marginal(class_ll: jax.Array, log_prior=None) -> jax.Array:
    """log p(x) = logsumexp_y log p(x|y) + log p(y) from class log-likelihoods ``[B, C]`` (uniform
    prior unless ``log_prior`` [C] is given)."""
    return jax.nn.logsumexp(class_ll + _log_prior(class_ll.shape[-1], log_prior)[None], axis=-1)


def log_posterior(class_ll: jax.Array, log_prior=None) -> jax.Array:
    """log p(y|x) by Bayes' rule from class log-likelihoods ``[B, C]`` (uniform prior unless
    ``log_prior`` [C] is given)."""
    joint = class_ll + _log_prior(class_ll.shape[-1], log_prior)[None]
    return jax.nn.log_softmax(joint, axis=-1)  # shifts by the max first: exact at |ll| >> 1
