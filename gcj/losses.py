"""Pure objectives of the SDIM family: mutual-information bounds, Gaussian class conditionals,
the likelihood-margin loss. All in nats."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from gcj import ops
from gcj.errors import UserError

MI_BOUNDS = ("jsd", "dv", "infonce")
LOG2 = math.log(2.0)


def mi_lower_bound(scores: jax.Array, bound: str = "jsd") -> jax.Array:
    """Mutual-information lower bound from critic scores, one value per local location.

    ``scores[i, j, m]`` is T(global_i, local_{j, m}): the representation of image i against
    location m of the local map of image j. Positive pairs are i == j (same image); negatives are
    all i != j in the batch. Returns ``[M]``: the bound's estimate for each location m.
    - 'jsd': Jensen-Shannon (f-GAN / DIM): E_pos[log 2 - softplus(-u)] - E_neg[softplus(u) - log 2].
    - 'dv': Donsker-Varadhan (MINE): E_pos[u] - log E_neg[exp u].
    - 'infonce': E_i[u_ii - logsumexp_j u_ij] + log B.
    """
    b = scores.shape[0]
    if scores.ndim != 3 or scores.shape[1] != b or b < 2:
        raise UserError(f"scores must be [B, B, M] with B >= 2, got {scores.shape}")
    pos_mask = jnp.eye(b, dtype=bool)[:, :, None]
    pos = jnp.einsum("iim->im", scores)  # [B, M]
    n_neg = b * (b - 1)
    if bound == "jsd":
        e_pos = jnp.mean(LOG2 - jax.nn.softplus(-pos), axis=0)
        e_neg = jnp.sum(jnp.where(pos_mask, 0.0, jax.nn.softplus(scores) - LOG2), axis=(0, 1)) / n_neg
        return e_pos - e_neg
    if bound == "dv":
        neg = jnp.where(pos_mask, -jnp.inf, scores)
        return jnp.mean(pos, axis=0) - (jax.nn.logsumexp(neg, axis=(0, 1)) - math.log(n_neg))
    if bound == "infonce":
        return jnp.mean(pos - jax.nn.logsumexp(scores, axis=1), axis=0) + math.log(b)
    raise UserError(f"unknown MI bound {bound!r}; use one of {MI_BOUNDS}")


def critic_scores(global_features: jax.Array, local_features: jax.Array) -> jax.Array:
    """Dot-product critic: ``[B, D]`` x ``[B, M, D]`` -> ``[B, B, M]``."""
    return jnp.einsum("id,jmd->ijm", global_features, local_features)


def diag_gaussian_log_prob(z: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log N(z; mean_c, diag(exp(log_std_c))^2) for every class: ``[B, d]``, ``[C, d]`` -> ``[B, C]``."""
    zc = (z[:, None, :] - mean[None]) * jnp.exp(-log_std)[None]
    return ops.gaussian_log_prob(zc, log_std[None])


def nll_loss(log_likelihoods: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example -log p(x|y) of the true class: ``[B, C]``, ``[B]`` -> ``[B]``."""
    return -ops.pick(log_likelihoods, labels)


def margin_loss(log_likelihoods: jax.Array, labels: jax.Array, margin: float) -> jax.Array:
    """Squared likelihood-margin loss (paper 000 eq. 6), per example ``[B]``.

    mean over c != y of max(log p(x|c) + K - log p(x|y), 0)^2.
    """
    c = log_likelihoods.shape[1]
    true = -nll_loss(log_likelihoods, labels)
    gaps = jnp.maximum(log_likelihoods + margin - true[:, None], 0.0) ** 2
    other = 1.0 - jax.nn.one_hot(labels, c)
    return jnp.sum(gaps * other, axis=1) / (c - 1)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
