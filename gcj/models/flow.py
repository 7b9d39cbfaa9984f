"""Flow generative classifiers: paper 001's class-conditional Glow (Base / Reweighted / Split prior).

The flow maps the dequantized image to a latent z ``[B, D]`` with log|det J|; the classes differ
only in the prior, so ``__call__`` gives log p(x|y) for every class from ONE flow pass.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gcj import data, flows, ops
from gcj.errors import UserError
from gcj.models import family



class Glow(flows.Invertible, nn.Module):
    """Paper 001's multi-scale Glow: the channels are doubled with uniform noise on [0, 2/256)
    (``flows.NoisePad``), then ``levels`` levels of ``steps`` steps (ActNorm, invertible 1x1
    convolution, affine coupling); every level but the last ends by factoring out half its channels
    and squeezing the rest ("squeeze at the end", possible because the padding makes the channel
    count even). ``__call__(v)`` maps [B, H, W, C] to the flat latent ``[B, 2·H·W·C]``."""
    image_shape: tuple
    levels: int = 4
    steps: int = 12
    width: int = 128
    lu: bool = True
    seed: int = 0

    def setup(self):
        h, w, c = self.image_shape
        if h % 2 ** (self.levels - 1) or w % 2 ** (self.levels - 1):
            raise UserError(f"{self.levels} levels need height and width divisible by "
                            f"{2 ** (self.levels - 1)}, got {h}x{w}")
        self.pad = flows.NoisePad(c)
        # explicit names: the inverse calls the layers in reverse order, so names must not
        # depend on the order of first use
        self.blocks = [flows.Sequential([
            layer for s in range(self.steps) for layer in (
                flows.ActNorm(name=f"level{lvl}_step{s}_actnorm"),
                flows.Conv1x1(seed=self.seed * 10007 + 100 * lvl + s, lu=self.lu,
                              name=f"level{lvl}_step{s}_conv1x1"),
                flows.AffineCoupling(self.width, name=f"level{lvl}_step{s}_coupling"))])
            for lvl in range(self.levels)]

    def level_shapes(self):
        """Shapes of the latent pieces, level by level ([H, W, C] each)."""
        h, w, c = self.image_shape
        c, shapes = 2 * c, []
        for lvl in range(self.levels):
            if lvl < self.levels - 1:
                shapes.append((h, w, c // 2))
                h, w, c = h // 2, w // 2, 2 * c
            else:
                shapes.append((h, w, c))
        return shapes

    def __call__(self, x, reverse: bool = False, train: bool = False):
        if reverse:
            x, logdet = self.transform(x, reverse=True, train=train)
            x, ld = self.pad(x, reverse=True)
            return x, logdet + ld
        x, ld = self.pad(x, train=train)
        z, logdet = self.transform(x, train=train)
        return z, logdet + ld

    def transform(self, x, reverse: bool = False, train: bool = False):
        """The bijection after the padding: [B, H, W, 2C] <-> [B, D]."""
        if reverse:
            return self._inverse(x, train)
        logdet = jnp.zeros((x.shape[0],), x.dtype)
        zs = []
        for lvl, block in enumerate(self.blocks):
            x, ld = block(x, train=train)
            logdet = logdet + ld
            if lvl < self.levels - 1:
                c = x.shape[-1]
                zs.append(x[..., :c // 2].reshape(x.shape[0], -1))
                x = flows.squeeze(x[..., c // 2:])
        zs.append(x.reshape(x.shape[0], -1))
        return jnp.concatenate(zs, 1), logdet

    def _inverse(self, z, train):
        shapes = self.level_shapes()
        sizes = [math.prod(s) for s in shapes]
        pieces = jnp.split(z, list(itertools.accumulate(sizes))[:-1], axis=1)
        b = z.shape[0]
        x = pieces[-1].reshape(b, *shapes[-1])
        logdet = jnp.zeros((b,), z.dtype)
        for lvl in reversed(range(self.levels)):
            if lvl < self.levels - 1:
                x = jnp.concatenate([pieces[lvl].reshape(b, *shapes[lvl]), flows.unsqueeze(x)], -1)
            x, ld = self.blocks[lvl](x, reverse=True, train=train)
            logdet = logdet + ld
        return x, logdet


class GaussianPrior(nn.Module):
    """One diagonal Gaussian per class, N(μ_y, diag σ_y²), over the whole latent (Base/Reweighted).
    ``__call__(z)`` -> log p(z|y) ``[B, C]``."""
    num_classes: int
    dim: int

    @nn.compact
    def __call__(self, z):
        mu = self.param("mu", nn.initializers.normal(1.0), (self.num_classes, self.dim))
        log_sigma = self.param("log_sigma", nn.initializers.zeros, (self.num_classes, self.dim))
        u = (z[:, None, :] - mu[None]) * jnp.exp(-log_sigma)[None]
        return ops.gaussian_log_prob(u, log_sigma[None])

    def sample(self, key, labels, temperature: float = 1.0):
        mu = self.variables["params"]["mu"][labels]
        sigma = jnp.exp(self.variables["params"]["log_sigma"][labels])
        return mu + temperature * sigma * jax.random.normal(key, mu.shape, mu.dtype)


class SplitPrior(nn.Module):
    """Paper 001 App. A.4: z = (z_n, z_s) with z_s the last ``num_classes`` latent dimensions
    (the deepest level's): p(z_s|y) = N(scale·e_y, sigma² I) and p(z_n|z_s, y) a diagonal Gaussian
    whose mean and log-std are a (zero-initialised) linear function of (z_s, one-hot y)."""
    num_classes: int
    dim: int
    scale: float = 1.0
    sigma: float = 1.0

    def setup(self):
        self.conditional = nn.Dense(2 * (self.dim - self.num_classes),
                                    kernel_init=nn.initializers.zeros)

    def _noise_dist(self, zs, onehot):
        """Mean and log-std of p(z_n|z_s, y) (any leading axes)."""
        h = self.conditional(jnp.concatenate([zs, onehot], -1))
        dn = self.dim - self.num_classes
        return h[..., :dn], h[..., dn:]

    def __call__(self, z):
        c, dn = self.num_classes, self.dim - self.num_classes
        zn, zs = z[:, :dn], z[:, dn:]
        onehot = jnp.eye(c, dtype=z.dtype)
        u = (zs[:, None, :] - self.scale * onehot[None]) / self.sigma  # [B, C, C]
        log_ps = ops.gaussian_log_prob(u, math.log(self.sigma))
        mean, log_std = self._noise_dist(jnp.broadcast_to(zs[:, None], (z.shape[0], c, c)),
                                         jnp.broadcast_to(onehot[None], (z.shape[0], c, c)))
        v = (zn[:, None, :] - mean) * jnp.exp(-log_std)
        log_pn = ops.gaussian_log_prob(v, log_std)
        return log_ps + log_pn

    def sample(self, key, labels, temperature: float = 1.0):
        ks, kn = jax.random.split(key)
        onehot = jax.nn.one_hot(labels, self.num_classes)
        zs = self.scale * onehot + temperature * self.sigma * jax.random.normal(ks, onehot.shape)
        mean, log_std = self._noise_dist(zs, onehot)
        zn = mean + temperature * jnp.exp(log_std) * jax.random.normal(kn, mean.shape)
        return jnp.concatenate([zn, zs], 1)


class GlowClassifier(nn.Module):
    """Paper 001's conditional Glow classifier. ``__call__(x, train)`` -> log p(x|y) ``[B, C]`` in
    nats for x on [0, 1] (NHWC): x is zero-padded to ``pad_to`` pixels (paper: MNIST to 32x32),
    dequantized with the 'noise' rng, shifted to [-0.5, 0.5], and mapped by ONE flow pass; the
    classes differ only in the prior. The density is over the padded [0, 1]^D, so bits/dim is
    -log p/(D ln 2) + 8 with D the padded pixel count (``self.dim``).

    ``variant``: 'base' trains -log p(x|y)/D; 'reweighted' adds -log p(y|x) (paper eq. 6);
    'split' is 'reweighted' with the split prior."""
    image_shape: tuple
    num_classes: int
    levels: int = 4
    steps: int = 12
    width: int = 128
    lu: bool = True
    variant: str = "base"
    pad_to: int = 0
    split_scale: float = 1.0
    split_sigma: float = 1.0
    seed: int = 0

    def setup(self):
        if self.variant not in ("base", "reweighted", "split"):
            raise UserError(f"unknown Glow variant {self.variant!r}: base, reweighted or split")
        self.flow = Glow(self.padded_shape, self.levels, self.steps, self.width, self.lu, self.seed)
        if self.variant == "split":
            self.prior = SplitPrior(self.num_classes, 2 * self.dim, self.split_scale,
                                    self.split_sigma)
        else:
            self.prior = GaussianPrior(self.num_classes, 2 * self.dim)  # image + noise channels

    @property
    def padded_shape(self):
        h, w, c = self.image_shape
        return (max(h, self.pad_to), max(w, self.pad_to), c)

    @property
    def dim(self) -> int:
        return math.prod(self.padded_shape)

    @property
    def density_dims(self) -> int:
        """What log p(x|y) is a density over: the padded image (``Classifier.density_dims``)."""
        return self.dim

    def _to_flow_input(self, x, train):
        h, w, _ = self.image_shape
        ph, pw, _ = self.padded_shape
        top, left = (ph - h) // 2, (pw - w) // 2
        x = jnp.pad(x, ((0, 0), (top, ph - h - top), (left, pw - w - left), (0, 0)))
        return data.dequantize(x, self.make_rng("noise"), per_example=train) - 0.5

    def forward(self, x, train: bool = False):
        """(z [B, D], log|det J| [B]) of the dequantized, padded, shifted image."""
        return self.flow(self._to_flow_input(x, train), train=train)

    def inverse(self, z):
        """The image (padded, on [0, 1]) of latents ``z`` ``[B, D]``."""
        return self.flow(z, reverse=True)[0] + 0.5

    def __call__(self, x, train: bool = False):
        z, logdet = self.forward(x, train)
        return self.prior(z) + logdet[:, None]

    def sample(self, labels, key, temperature: float = 1.0):
        """x ~ p(x|y) for ``labels`` ``[B]`` (padded images on [0, 1], clipped); ``temperature``
        scales the prior's standard deviations (Glow's T < 1: typical rather than random draws)."""
        z = self.prior.sample(key, labels, temperature)
        return jnp.clip(self.inverse(z), 0.0, 1.0)

    def losses(self, x, labels, train: bool = True):
        ll = self(x, train)
        nll = -ops.pick(ll, labels)
        nll_dim = jnp.mean(nll) / self.dim
        ce = -jnp.mean(ops.pick(jax.nn.log_softmax(ll, -1), labels))
        loss = nll_dim if self.variant == "base" else nll_dim + ce
        metrics = dict(loss=loss, nll_per_dim=nll_dim, bits_per_dim=ops.bits_per_dim(-jnp.mean(nll), self.dim),
                       xent=ce, accuracy=jnp.mean(jnp.argmax(ll, -1) == labels))
        return loss, metrics


def config() -> dict:
    """``config.model.glow``: a multi-scale Glow with a class-conditional prior (paper 001)."""
    return dict(levels=4, steps=12, width=128, lu=True,
                variant="base",       # 'base' | 'reweighted' | 'split'
                pad_to=32,            # zero-pad images to this size (paper: MNIST to 32x32)
                split_scale=1.0, split_sigma=1.0)  # split prior: p(z_s|y) = N(scale e_y, sigma^2)


def build(g: Any, num_classes: int, image_shape: tuple, seed: int = 0) -> nn.Module:
    """The GlowClassifier of a ``config.model.glow`` block."""
    return GlowClassifier(tuple(image_shape), num_classes, g.levels, g.steps, g.width, g.lu,
                          g.variant, g.pad_to, g.split_scale, g.split_sigma, seed)


FAMILY = family.flow_family("glow", config, build)
