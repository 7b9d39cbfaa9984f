"""Explanations from the latent space (paper 002 §4.3), for families whose classes are unit
Gaussians N(z; μ_y, I) in it (``Family.latent``: the IB-INN). Pure functions of z, the class
means and log-likelihoods; the ``explain`` suite draws them.

- ``expected_confidence``: App. B — the expected confidence of the binary decision between two
  classes whose means are Δμ apart, z drawn from their equal mixture; 1 - it is the expected
  posterior of the other class (``expected_pairwise_posterior``, Fig. 8), which
  ``empirical_pairwise_posterior`` measures on images and ``along_line`` explains.
- ``decision_space``: Fig. 6's coordinates of z among its top classes.
- ``posterior_heatmaps``: eqs. 14-20, log q(y|x) decomposed over the positions of the features
  before the DCT pooling.
- ``effective_receptive_field``: eq. 10 (Fig. 4), for any features function (``Classifier.features``).
- ``fit_plane``: Fig. 7, the class means constrained to a plane and fine-tuned (Voronoi cells).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gcj import flows


def expected_confidence(delta_mu) -> jax.Array:
    """App. B eq. 33: the mean confidence c = max(q(1|z), q(2|z)) of a two-class decision, z from
    ½N(μ1, I) + ½N(μ2, I) with ‖μ1 - μ2‖ = ``delta_mu`` (any shape; 0.5 at Δμ = 0, → 1 as Δμ
    grows). The mean of min(q(1|z), q(2|z)) over the mixture is ∫ min(p1, p2) / 2 dz, the
    two-Gaussian Bayes error Φ(-Δμ/2); so C̄ = Φ(Δμ/2), exactly (tests: eq. 31 integrated as
    printed, and Monte Carlo)."""
    return jax.scipy.stats.norm.cdf(0.5 * jnp.asarray(delta_mu, jnp.float32))


def mean_distances(means) -> jax.Array:
    """‖μ_i - μ_j‖ ``[C, C]``."""
    means = jnp.asarray(means)
    d2 = jnp.sum((means[:, None] - means[None]) ** 2, -1)
    return jnp.sqrt(jnp.maximum(d2, 0.0))


def expected_pairwise_posterior(means) -> jax.Array:
    """Fig. 8: the expected posterior of the less likely class in the binary decision between
    classes i and j, 1 - C̄(‖μ_i - μ_j‖) = Φ(-‖μ_i - μ_j‖ / 2) ``[C, C]`` (0.5 on the diagonal: a
    class against itself), without the cancellation of 1 - C̄ in float32 at large distances."""
    return jax.scipy.stats.norm.cdf(-0.5 * mean_distances(means))


def along_line(z, labels, means, num_classes: int) -> dict:
    """Why ``empirical_pairwise_posterior`` departs from the expected one: for each pair i ≠ j,
    the latents of class i projected on the line from μ_i towards μ_j. ``offset`` ``[C, C]``: the
    mean distance of class i's latents from the pair's midpoint, in units of ‖μ_i - μ_j‖/2 (1
    where z ~ N(μ_i, I); above 1 the class sits farther out, its images more confident than
    App. B predicts); ``spread`` ``[C, C]``: their standard deviation along the line (1 under the
    model). NaN on the diagonal and where class i has no latent."""
    z, labels, means = np.asarray(z, np.float64), np.asarray(labels), np.asarray(means, np.float64)
    offset = np.full((num_classes, num_classes), np.nan)
    spread = np.full((num_classes, num_classes), np.nan)
    for i in range(num_classes):
        zi = z[labels == i]
        for j in range(num_classes):
            d = means[j] - means[i]
            half = 0.5 * np.linalg.norm(d)
            if i == j or not len(zi) or half == 0:
                continue
            t = (zi - 0.5 * (means[i] + means[j])) @ (-d / (2 * half))  # from the midpoint, towards μ_i
            offset[i, j], spread[i, j] = t.mean() / half, t.std()
    return dict(offset=offset, spread=spread)


def empirical_pairwise_posterior(ll, labels, num_classes: int) -> np.ndarray:
    """What ``expected_pairwise_posterior`` predicts, measured: for each pair i ≠ j, the mean over
    the images of classes i and j (each class weighted ½) of min(q(i|x), q(j|x)) in the binary
    decision q(i|x) = σ(log p(x|i) - log p(x|j)); NaN where a class has no image, 0.5 on the
    diagonal."""
    ll, labels = np.asarray(ll, np.float64), np.asarray(labels)
    out = np.full((num_classes, num_classes), np.nan)
    for i in range(num_classes):
        for j in range(num_classes):
            if i == j:
                out[i, j] = 0.5
                continue
            per_class = []
            for c in (i, j):
                d = ll[labels == c, i] - ll[labels == c, j]
                per_class.append(np.mean(1.0 / (1.0 + np.exp(np.abs(d)))) if len(d) else np.nan)
            out[i, j] = np.mean(per_class)
    return out


def decision_space(z, means, top: int = 5) -> dict:
    """Fig. 6: z ``[D]`` among the ``top`` nearest class means (its top predictions). Horizontal:
    the position along the line from the nearest mean to the second (0 at their midpoint);
    vertical: the distance from that line within the span of the ``top`` means (z projected into
    it). Returns the classes (nearest first), z's (h, v) and each mean's (h, v), and the distance
    of z from that span (what the picture leaves out)."""
    z, means = np.asarray(z, np.float64), np.asarray(means, np.float64)
    order = np.argsort(np.sum((means - z) ** 2, 1))[:top]
    m = means[order]
    basis, _ = np.linalg.qr((m[1:] - m[0]).T)  # [D, top-1], the first column along m1 - m0
    if basis[:, 0] @ (m[1] - m[0]) < 0:
        basis[:, 0] = -basis[:, 0]
    centre = 0.5 * (m[0] + m[1])

    def coords(v):
        c = (v - centre) @ basis
        return float(c[0]), float(np.linalg.norm(c[1:]))

    c = (z - centre) @ basis
    return dict(classes=order.tolist(), point=coords(z), means=[coords(v) for v in m],
                off_plane=float(np.linalg.norm(z - centre - basis @ c)))


def posterior_heatmaps(z, means, grid, floor: float = 0.03) -> jax.Array:
    """Eqs. 14-20: Q(k, l, y) ``[B, H, W, C]`` (H, W from ``grid``, the features' (H, W, C) before
    the DCT pooling) with Σ_kl Q(k, l, y) = log q(y|x), the posterior of unit Gaussians at μ_y:
    w^(y) = DCT⁻¹(z - μ_y), log p(w_kl|y) = -½‖w^(y)_kl‖², and Q = log p(w_kl|y) - S_kl where
    S = logsumexp_y(-½‖z - μ_y‖²) is spread over the positions by eq. 20's contrast weights
    (r_kl + ``floor``), r_kl the per-position mixture log p(w_kl) = logsumexp_y log p(w_kl|y) - log C
    rescaled to [0, 1] over each image."""
    z, means = jnp.asarray(z), jnp.asarray(means)
    b, c = z.shape[0], means.shape[0]
    h, w = grid[0], grid[1]
    diff = (z[:, None, :] - means[None]).reshape(b * c, -1)
    wy = flows.inverse_dct_pooling(diff, (h, w)).reshape(b, c, h, w, -1)
    log_p = -0.5 * jnp.sum(wy ** 2, -1)                       # [B, C, H, W]
    s = jax.nn.logsumexp(jnp.sum(log_p, (2, 3)), 1)           # [B]
    mix = jax.nn.logsumexp(log_p, 1)                          # [B, H, W] (+ log C: no matter)
    lo, hi = mix.min((1, 2), keepdims=True), mix.max((1, 2), keepdims=True)
    r = (mix - lo) / jnp.maximum(hi - lo, 1e-12) + floor
    s_kl = s[:, None, None] * r / jnp.sum(r, (1, 2), keepdims=True)
    return jnp.moveaxis(log_p - s_kl[:, None], 1, -1)


def effective_receptive_field(features_fn, x) -> jax.Array:
    """Eq. 10 (Fig. 4): Sensitivity(i, j) = E_x Σ_k Σ_l |∂u_l / ∂x_ijk| ``[H, W]``, u the feature
    column at the centre of ``features_fn(x)`` ``[B, h, w, L]`` (any function of images
    ``[B, H, W, K]``), averaged over the images ``x``."""
    def centre(image):
        f = features_fn(image[None])[0]
        return f[f.shape[0] // 2, f.shape[1] // 2]

    jac = jax.vmap(jax.jacrev(centre))(jnp.asarray(x, jnp.float32))  # [B, L, H, W, K]
    return jnp.abs(jac).sum((1, 4)).mean(0)


def fit_plane(z, labels, num_classes: int, steps: int = 300, lr: float = 0.05, beta: float = 1.0) -> dict:
    """Fig. 7: the class means constrained to a plane and fine-tuned (the network frozen): means
    μ_y = o + A p_y with A ``[D, 2]`` orthonormal, o ``[D]``, p_y ``[C, 2]``, trained with the
    IB-INN's loss on the latents, L_X + β L_Y (L_X the mixture's NLL of z per dimension, L_Y the cross-entropy of q(y|z) ∝ exp(-½‖z - μ_y‖²), whose out-of-plane part
    ‖(I - AAᵀ)(z - o)‖² is the same for every class), by ``steps`` full-batch Adam steps from the
    plane of the two leading principal directions of the per-class mean latents. Returns basis,
    origin, means (``project(z, fit)`` gives the 2-D points) and the first and final loss."""
    z, labels = jnp.asarray(z, jnp.float32), jnp.asarray(labels)
    onehot = jax.nn.one_hot(labels, num_classes)
    class_means = (onehot.T @ z) / jnp.maximum(onehot.sum(0), 1.0)[:, None]
    origin = class_means.mean(0)
    _, _, vt = jnp.linalg.svd(class_means - origin[None], full_matrices=False)
    w0 = vt[:2].T

    def unpack(p):
        q, r = jnp.linalg.qr(p["w"])
        basis = q * jnp.where(jnp.diag(r) < 0, -1.0, 1.0)[None]  # R's diagonal positive: w -> w if orthonormal
        return basis, p["origin"], p["means"]

    def loss(p):
        basis, o, m = unpack(p)
        u = z - o[None]
        inside = u @ basis
        outside = jnp.sum(u ** 2, 1) - jnp.sum(inside ** 2, 1)       # ‖(I - AAᵀ)(z - o)‖²
        logits = -0.5 * jnp.sum((inside[:, None] - m[None]) ** 2, -1)  # up to the class-free part
        l_x = jnp.mean(0.5 * outside - jax.nn.logsumexp(logits, 1)) / z.shape[1]
        l_y = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits, 1), 1))
        return l_x + beta * l_y

    params = dict(w=w0, origin=origin, means=(class_means - origin[None]) @ w0)
    tx = optax.adam(lr)

    def step(carry, _):
        p, s = carry
        value, g = jax.value_and_grad(loss)(p)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), value

    (params, _), values = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    basis, o, m = unpack(params)
    return dict(basis=basis, origin=o, means=m, loss=loss(params), first_loss=values[0])


def project(z, fit: dict) -> jax.Array:
    """The plane coordinates A^T(z - o) ``[B, 2]`` of ``fit_plane``'s plane."""
    return (jnp.asarray(z) - fit["origin"][None]) @ fit["basis"]


def plane_predict(z, fit: dict) -> jax.Array:
    """The class of the nearest 2-D mean (the Voronoi cell of Fig. 7) ``[B]``."""
    d2 = jnp.sum((project(z, fit)[:, None] - fit["means"][None]) ** 2, -1)
    return jnp.argmin(d2, 1)
