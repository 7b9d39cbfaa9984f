"""Invertible layers for the flow classifiers (Glow, paper 001; IB-INN, paper 002), in flax linen.

Every layer is one module with ``__call__(x, reverse=False, train=False) -> (out, logdet)``, where
``logdet`` ``[B]`` is log|det| of the map applied (the inverse's when ``reverse``), plus
``forward(x) -> (y, logdet)`` and ``inverse(y) -> x``. Inputs are NHWC. Layers with fixed random
structure (the orthogonal mixing, the LU permutation) derive it from their ``seed`` attribute, so it
is a function of the config and never stored or trained.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gcj import conv
from gcj.errors import UserError


class Invertible:
    """``forward`` / ``inverse`` for a module whose ``__call__`` takes ``reverse``."""

    def forward(self, x, train: bool = False):
        return self(x, train=train)

    def inverse(self, y, train: bool = False):
        return self(y, reverse=True, train=train)[0]


def _batch_logdet(x, value):
    return jnp.full((x.shape[0],), value, x.dtype)


def _chan(v, x):
    """A per-channel vector shaped to broadcast against NHWC ``x``."""
    return jnp.reshape(v, (1,) * (x.ndim - 1) + (-1,))


def _spatial(x) -> int:
    return math.prod(x.shape[1:-1])


# ------------------------------------------------------------------------ normalization

class ActNorm(Invertible, nn.Module):
    """Glow's per-channel affine y = (x + b)·exp(logs), initialised from the first batch it sees
    (b = −mean, logs = −log(std + 1e-6)); the initialised values are parameters, so a restored
    model keeps them. Initialise with a forward call."""

    @nn.compact
    def __call__(self, x, reverse: bool = False, train: bool = False):
        axes = tuple(range(x.ndim - 1))
        bias = self.param("bias", lambda _: -jnp.mean(x, axes))
        logs = self.param("logs", lambda _: -jnp.log(jnp.std(x, axes) + 1e-6))
        logdet = _batch_logdet(x, _spatial(x) * jnp.sum(logs))
        bias, logs = _chan(bias, x), _chan(logs, x)
        if reverse:
            return x * jnp.exp(-logs) - bias, -logdet
        return (x + bias) * jnp.exp(logs), logdet


class GlobalAffine(Invertible, nn.Module):
    """Paper 002's global affine y = s·x + t with s = s0·softplus(γ) > 0 per channel (γ init 10)."""
    s0: float = 0.1
    gamma_init: float = 10.0

    @nn.compact
    def __call__(self, x, reverse: bool = False, train: bool = False):
        c = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.constant(self.gamma_init), (c,))
        t = self.param("bias", nn.initializers.zeros, (c,))
        s = self.s0 * jax.nn.softplus(gamma)
        logdet = _batch_logdet(x, _spatial(x) * jnp.sum(jnp.log(s)))
        s, t = _chan(s, x), _chan(t, x)
        if reverse:
            return (x - t) / s, -logdet
        return x * s + t, logdet


# ------------------------------------------------------------------------- channel mixing

def random_orthogonal(seed: int, n: int) -> jax.Array:
    """A Haar-distributed n x n orthogonal matrix from ``jax.random.key(seed)``."""
    return jax.random.orthogonal(jax.random.key(seed), n)


class Conv1x1(Invertible, nn.Module):
    """Invertible 1x1 convolution y = x W (Glow), W initialised to a random rotation from ``seed``.

    ``lu=True``: W = P L (U + diag(sign·exp(log|s|))) with P fixed (from the LU of the initial W),
    L unit lower, U strictly upper: log|det W| = Σ log|s| costs O(C). ``lu=False``: W is a plain
    parameter and log|det W| comes from ``slogdet``."""
    seed: int = 0
    lu: bool = True

    @nn.compact
    def __call__(self, x, reverse: bool = False, train: bool = False):
        c = x.shape[-1]
        w0 = random_orthogonal(self.seed, c)
        if self.lu:
            p, l0, u0 = jax.scipy.linalg.lu(w0)
            s0 = jnp.diag(u0)
            lower = jnp.tril(self.param("lower", lambda _: l0), -1) + jnp.eye(c)
            upper = jnp.triu(self.param("upper", lambda _: u0), 1)
            log_s = self.param("log_s", lambda _: jnp.log(jnp.abs(s0)))
            upper = upper + jnp.diag(jnp.sign(s0) * jnp.exp(log_s))
            w = p @ lower @ upper
            log_det_w = jnp.sum(log_s)
            if reverse:  # y W^-1: solve U^T L^T P^T x^T = y^T by two triangular solves
                t = jax.scipy.linalg.solve_triangular(upper, x.reshape(-1, c).T, trans=1)
                t = jax.scipy.linalg.solve_triangular(lower, t, trans=1, lower=True,
                                                      unit_diagonal=True)
                return (p @ t).T.reshape(x.shape), -_batch_logdet(x, _spatial(x) * log_det_w)
        else:
            w = self.param("kernel", lambda _: w0)
            log_det_w = jnp.linalg.slogdet(w)[1]
        logdet = _batch_logdet(x, _spatial(x) * log_det_w)
        if reverse:
            return x @ jnp.linalg.inv(w), -logdet
        return x @ w, logdet


class FixedPermutation(Invertible, nn.Module):
    """A random permutation of the channels from ``seed`` (static; log|det| = 0)."""
    seed: int = 0

    @nn.compact
    def __call__(self, x, reverse: bool = False, train: bool = False):
        perm = np.random.default_rng(self.seed).permutation(x.shape[-1])
        zero = _batch_logdet(x, 0.0)
        return (x[..., np.argsort(perm)], zero) if reverse else (x[..., perm], zero)


class FixedOrthogonal(Invertible, nn.Module):
    """Paper 002's mixing: a random orthogonal 1x1 convolution from ``seed``, never trained
    (log|det| = 0)."""
    seed: int = 0

    @nn.compact
    def __call__(self, x, reverse: bool = False, train: bool = False):
        w = random_orthogonal(self.seed, x.shape[-1])
        zero = _batch_logdet(x, 0.0)
        return (x @ w.T, zero) if reverse else (x @ w, zero)


# ------------------------------------------------------------------------------ couplings

class ZeroConv(nn.Module):
    """Glow's zero-initialised output convolution, scaled by exp(3·logs)."""
    features: int
    kernel: int = 3

    @nn.compact
    def __call__(self, h):
        h = conv.Conv(self.features, (self.kernel, self.kernel), kernel_init=nn.initializers.zeros)(h)
        logs = self.param("logs", nn.initializers.zeros, (self.features,))
        return h * jnp.exp(3.0 * _chan(logs, h))


class GlowSubnet(nn.Module):
    """Conv3x3-ActNorm-ReLU-Conv1x1-ActNorm-ReLU-ZeroConv3x3 (Glow's coupling network)."""
    width: int
    features: int

    @nn.compact
    def __call__(self, h, train: bool = False):
        for k in (3, 1):
            h = conv.Conv(self.width, (k, k), use_bias=False)(h)
            h = nn.relu(ActNorm()(h)[0])
        return ZeroConv(self.features)(h)


def soft_clamp(h, alpha: float):
    """α·tanh(h/α): the IB-INN's log-scale, bounded by ±α."""
    return alpha * jnp.tanh(h / alpha)


class ResNetSubnet(nn.Module):
    """Paper 002's subnetwork: conv-BN-ReLU-conv-BN-ReLU-(dropout)-1x1 projection, the last layer
    zero-initialised so that a new coupling is the identity. ``stride`` 2 in the first conv makes
    the downsampling coupling's learned component. ``bottleneck``: ResNet-50's 1x1 (width) -
    k x k (width, strided) - 1x1 (4·width), each with BN-ReLU, before the projection (paper 002
    App. A: the ResNet design plus "an additional 1x1 projection layer as the final output")."""
    width: int
    features: int
    kernel: int = 3
    stride: int = 1
    dropout: float = 0.0
    bottleneck: bool = False

    @nn.compact
    def __call__(self, h, train: bool = False):
        k = (self.kernel, self.kernel)
        if self.bottleneck:
            convs = [(self.width, (1, 1), 1), (self.width, k, self.stride),
                     (4 * self.width, (1, 1), 1)]
        else:
            convs = [(self.width, k, self.stride), (self.width, (3, 3), 1)]
        for width, kernel, stride in convs:
            h = conv.Conv(width, kernel, strides=stride, use_bias=False)(h)
            h = nn.relu(nn.BatchNorm(use_running_average=not train)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return conv.Conv(self.features, (1, 1), kernel_init=nn.initializers.zeros)(h)


class DenseSubnet(nn.Module):
    """Dense-ReLU-(dropout)-Dense-ReLU-Dense (zero-initialised) on the last axis: the fully
    connected coupling after the IB-INN's DCT pooling."""
    width: int
    features: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, h, train: bool = False):
        h = nn.relu(nn.Dense(self.width)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.relu(nn.Dense(self.width)(h))
        return nn.Dense(self.features, kernel_init=nn.initializers.zeros)(h)


class AffineCoupling(Invertible, nn.Module):
    """Affine coupling on the channel halves: x1 passes, x2 -> affine(x2 | x1).

    ``kind='glow'``: y2 = (x2 + t)·sigmoid(h + 2) with ``GlowSubnet``; ``kind='ib'`` (paper 002):
    y2 = x2·exp(α·tanh(h/α)) + t (α = ``clamp``) with ``ResNetSubnet`` (``bottleneck`` as
    ResNet-50) or, ``dense=True``, ``DenseSubnet`` (for [B, 1, 1, D] inputs)."""
    width: int
    kind: str = "glow"
    clamp: float = 2.0
    kernel: int = 3
    dropout: float = 0.0
    bottleneck: bool = False
    dense: bool = False

    def _scale_shift(self, x1, c2, train):
        if self.kind == "glow":
            h = GlowSubnet(self.width, 2 * c2, name="subnet")(x1)
            return jax.nn.log_sigmoid(h[..., :c2] + 2.0), h[..., c2:]
        if self.kind != "ib":
            raise UserError(f"unknown coupling kind {self.kind!r}; use 'glow' or 'ib'")
        if self.dense:
            h = DenseSubnet(self.width, 2 * c2, self.dropout, name="subnet")(x1, train)
        else:
            h = ResNetSubnet(self.width, 2 * c2, self.kernel, dropout=self.dropout,
                             bottleneck=self.bottleneck, name="subnet")(x1, train)
        return soft_clamp(h[..., :c2], self.clamp), h[..., c2:]

    @nn.compact
    def __call__(self, x, reverse: bool = False, train: bool = False):
        c = x.shape[-1]
        if c < 2:
            raise UserError(f"a coupling needs at least 2 channels, got {c} (pad channels first)")
        x1, x2 = x[..., :c // 2], x[..., c // 2:]
        log_s, t = self._scale_shift(x1, c - c // 2, train)
        logdet = jnp.sum(log_s.reshape(x.shape[0], -1), 1)
        if self.kind == "glow":
            y2 = x2 * jnp.exp(-log_s) - t if reverse else (x2 + t) * jnp.exp(log_s)
        else:
            y2 = (x2 - t) * jnp.exp(-log_s) if reverse else x2 * jnp.exp(log_s) + t
        return jnp.concatenate([x1, y2], -1), -logdet if reverse else logdet


class DownsampleCoupling(Invertible, nn.Module):
    """Paper 002's downsampling coupling block (its Fig. 16): the halves are each squeezed
    (checkerboard, i-RevNet) inside one coupling, so the subnetwork reads x1 at full resolution
    through a strided conv: y = (squeeze(x1), squeeze(x2)·s(x1) + t(x1)) at half resolution."""
    width: int
    clamp: float = 2.0
    kernel: int = 3
    bottleneck: bool = False

    @nn.compact
    def __call__(self, x, reverse: bool = False, train: bool = False):
        if reverse:
            c = 4 * (x.shape[-1] // 8)  # channels of squeeze(x1): x1 was the smaller half
            x1 = unsqueeze(x[..., :c])
            log_s, t = self._st(x1, x.shape[-1] - c, train)
            x2 = unsqueeze((x[..., c:] - t) * jnp.exp(-log_s))
            return jnp.concatenate([x1, x2], -1), -jnp.sum(log_s.reshape(x.shape[0], -1), 1)
        c = x.shape[-1]
        if c < 2:
            raise UserError(f"a coupling needs at least 2 channels, got {c}")
        x1, x2 = x[..., :c // 2], x[..., c // 2:]
        log_s, t = self._st(x1, 4 * (c - c // 2), train)
        y2 = squeeze(x2) * jnp.exp(log_s) + t
        return (jnp.concatenate([squeeze(x1), y2], -1),
                jnp.sum(log_s.reshape(x.shape[0], -1), 1))

    def _st(self, x1, c2, train):
        h = ResNetSubnet(self.width, 2 * c2, self.kernel, stride=2, bottleneck=self.bottleneck,
                         name="subnet")(x1, train)
        return soft_clamp(h[..., :c2], self.clamp), h[..., c2:]


# ----------------------------------------------------------------------------- reshaping

def squeeze(x):
    """Space-to-depth by 2x2: [B, H, W, C] -> [B, H/2, W/2, 4C] (a permutation)."""
    b, h, w, c = x.shape
    if h % 2 or w % 2:
        raise UserError(f"squeeze needs even height and width, got {h}x{w}")
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(x):
    b, h, w, c4 = x.shape
    x = x.reshape(b, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, 2 * h, 2 * w, c4 // 4)


class Squeeze(Invertible, nn.Module):
    @nn.compact
    def __call__(self, x, reverse: bool = False, train: bool = False):
        return (unsqueeze(x) if reverse else squeeze(x)), _batch_logdet(x, 0.0)


# the 2x2 orthonormal Haar basis (rows: average, horizontal, vertical, diagonal detail)
_HAAR = 0.5 * np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], np.float32)


class HaarDownsampling(Invertible, nn.Module):
    """Haar wavelet downsampling [B, H, W, C] -> [B, H/2, W/2, 4C]: per channel, the 2x2 block's
    average and three details (orthonormal), all multiplied by ``rebalance`` (logdet D·log r)."""
    rebalance: float = 1.0

    @nn.compact
    def __call__(self, x, reverse: bool = False, train: bool = False):
        haar = jnp.asarray(_HAAR, x.dtype) * self.rebalance
        if reverse:
            b, h, w, c4 = x.shape
            coeff = x.reshape(b, h, w, 4, c4 // 4)
            blocks = jnp.einsum("kp,bhwkc->bhwpc", jnp.linalg.inv(haar), coeff)
            out = blocks.reshape(b, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
            out = out.reshape(b, 2 * h, 2 * w, c4 // 4)
            return out, _batch_logdet(x, -x[0].size * math.log(self.rebalance))
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            raise UserError(f"Haar downsampling needs even height and width, got {h}x{w}")
        blocks = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
        blocks = blocks.reshape(b, h // 2, w // 2, 4, c)
        coeff = jnp.einsum("kp,bhwpc->bhwkc", haar, blocks)
        return coeff.reshape(b, h // 2, w // 2, 4 * c), _batch_logdet(x, x[0].size *
                                                                       math.log(self.rebalance))


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (row k: frequency k; row 0 is the scaled mean)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


class DCTPooling(Invertible, nn.Module):
    """Orthonormal 2-D DCT of every channel: [B, H, W, C] -> [B, 1, 1, H·W·C], ordered frequency-
    major, so the first C outputs are the mean-pooled channels (times sqrt(H·W)); logdet 0.
    The inverse needs the spatial shape: ``size`` (H, W)."""
    size: Sequence[int]

    @nn.compact
    def __call__(self, x, reverse: bool = False, train: bool = False):
        zero = _batch_logdet(x, 0.0)
        if reverse:
            return inverse_dct_pooling(x.reshape(x.shape[0], -1), self.size), zero
        return dct_pooling(x).reshape(x.shape[0], 1, 1, -1), zero


def dct_pooling(x: jax.Array) -> jax.Array:
    """``DCTPooling``'s map: [B, H, W, C] -> [B, H·W·C] (orthonormal: distances are kept)."""
    h, w = x.shape[1:3]
    dh, dw = jnp.asarray(dct_matrix(h), x.dtype), jnp.asarray(dct_matrix(w), x.dtype)
    return jnp.einsum("kh,lw,bhwc->bklc", dh, dw, x).reshape(x.shape[0], -1)


def inverse_dct_pooling(z: jax.Array, size: Sequence[int]) -> jax.Array:
    """[B, H·W·C] -> [B, H, W, C] of spatial size ``size`` (H, W): ``dct_pooling``'s inverse."""
    h, w = size
    dh, dw = jnp.asarray(dct_matrix(h), z.dtype), jnp.asarray(dct_matrix(w), z.dtype)
    return jnp.einsum("kh,lw,bklc->bhwc", dh, dw, z.reshape(z.shape[0], h, w, -1))


class NoisePad(Invertible, nn.Module):
    """Appends ``channels`` channels of uniform noise on [0, ``scale``) (paper 001 App. B: scale
    2/256), drawn from the 'noise' rng: per example in training, one draw shared by the batch
    otherwise (a sample's result then does not depend on its batch). Not a bijection of x alone: log p(x) is estimated by
    log p(x, u) − log q(u), so its logdet is −log q(u) = D_pad·log(scale). The inverse drops them."""
    channels: int
    scale: float = 2.0 / 256

    @nn.compact
    def __call__(self, x, reverse: bool = False, train: bool = False):
        d_pad = _spatial(x) * self.channels
        if reverse:
            return x[..., :-self.channels], _batch_logdet(x, -d_pad * math.log(self.scale))
        shape = (x.shape[0] if train else 1, *x.shape[1:-1], self.channels)
        u = jnp.broadcast_to(jax.random.uniform(self.make_rng("noise"), shape, x.dtype),
                             (*x.shape[:-1], self.channels))
        return (jnp.concatenate([x, self.scale * u], -1),
                _batch_logdet(x, d_pad * math.log(self.scale)))


class Sequential(Invertible, nn.Module):
    """A chain of invertible layers; logdets add; the inverse runs the chain backwards."""
    layers: Sequence[nn.Module]

    def __call__(self, x, reverse: bool = False, train: bool = False):
        total = _batch_logdet(x, 0.0)
        for layer in (reversed(self.layers) if reverse else self.layers):
            x, logdet = layer(x, reverse=reverse, train=train)
            total = total + logdet
        return x, total
