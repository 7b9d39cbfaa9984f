"""Paper 002's IB-INN generative classifier (training from Ardizzone et al.'s information-bottleneck
INN): an invertible network maps the image to z ``[B, D]``; the latent is a Gaussian mixture with
unit covariance and one learned mean μ_y per class, so log p(x|y) for every class comes from ONE
network pass. Trained with L_X + β·L_Y (paper 002 eqs. 7-8).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gcj import data, flows, ops
from gcj.errors import UserError
from gcj.models import family



def final_shape(image_shape, entry: str, levels: int) -> tuple:
    """[H, W, C] before the IBINN's DCT pooling: every downsampling halves H, W and quadruples C."""
    entries = {"": 0, "haar": 1, "downsample_haar": 2}
    if entry not in entries:
        raise UserError(f"unknown entry {entry!r}: '', 'haar' or 'downsample_haar'")
    h, w, c = image_shape
    downsamplings = entries[entry] + max(levels - 1, 0)
    return h // 2 ** downsamplings, w // 2 ** downsamplings, c * 4 ** downsamplings


class IBINN(flows.Invertible, nn.Module):
    """The invertible network, ResNet-like (paper 002 Tab. 1 / App. A):

    ``entry``: '' (none), 'haar' (Haar downsampling: Ardizzone's MNIST) or 'downsample_haar'
    (a downsampling coupling with an ``entry_kernel`` conv, then Haar: the ImageNet entry flow);
    then one level per entry of ``widths`` / ``blocks``, every level after the first opening with
    a downsampling coupling; each coupling block is affine coupling (soft clamp ``clamp``) ->
    global affine (s0·softplus(γ)) -> fixed random orthogonal mixing. Then orthonormal DCT pooling
    to [B, 1, 1, D] (the first C entries are the mean-pooled channels) and ``fc_blocks`` fully
    connected couplings, each after a fixed random permutation. ``__call__(x)`` -> (z [B, D], logdet)."""
    image_shape: tuple
    widths: Sequence[int] = (16, 32, 64)
    blocks: Sequence[int] = (8, 24, 24)
    entry: str = ""
    entry_width: int = 64
    entry_kernel: int = 7
    clamp: float = 0.7
    s0: float = 0.1
    bottleneck: bool = False
    dropout: float = 0.0
    fc_blocks: int = 1
    fc_width: int = 1024
    fc_dropout: float = 0.5
    seed: int = 0

    def setup(self):
        # (each downsampling layer checks for even sizes itself)
        h, w, _ = final_shape(self.image_shape, self.entry, len(self.widths))
        layers, seed = [], self.seed * 10007

        def down(name, width, kernel=3):
            return flows.DownsampleCoupling(width, self.clamp, kernel, self.bottleneck, name=name)

        if self.entry == "downsample_haar":
            layers.append(down("entry_downsample", self.entry_width, self.entry_kernel))
        if self.entry:
            layers.append(flows.HaarDownsampling(name="entry_haar"))
        if len(self.widths) != len(self.blocks):
            raise UserError(f"widths {self.widths} and blocks {self.blocks} differ in length")
        for lvl, (width, n) in enumerate(zip(self.widths, self.blocks)):
            if lvl:
                layers.append(down(f"level{lvl}_downsample", width))
            for b in range(n):
                seed += 1
                layers += [
                    flows.AffineCoupling(width, "ib", self.clamp, dropout=self.dropout,
                                         bottleneck=self.bottleneck,
                                         name=f"level{lvl}_block{b}_coupling"),
                    flows.GlobalAffine(self.s0, name=f"level{lvl}_block{b}_affine"),
                    flows.FixedOrthogonal(seed, name=f"level{lvl}_block{b}_mixing")]
        layers.append(flows.DCTPooling((h, w), name="dct"))
        for b in range(self.fc_blocks):
            seed += 1
            layers += [flows.FixedPermutation(seed, name=f"fc{b}_permutation"),
                       flows.AffineCoupling(self.fc_width, "ib", self.clamp,
                                            dropout=self.fc_dropout, dense=True,
                                            name=f"fc{b}_coupling"),
                       flows.GlobalAffine(self.s0, name=f"fc{b}_affine")]
        self.net = flows.Sequential(layers)

    def features(self, x):
        """The features before the DCT pooling ``[B, H, W, C]`` (paper 002 Fig. 4's u)."""
        for layer in self.net.layers:
            if isinstance(layer, flows.DCTPooling):
                return x
            x, _ = layer(x)
        raise AssertionError("the IBINN has a DCT pooling")

    def __call__(self, x, reverse: bool = False, train: bool = False):
        if reverse:
            return self.net(x.reshape(x.shape[0], 1, 1, -1), reverse=True, train=train)
        z, logdet = self.net(x, train=train)
        return z.reshape(z.shape[0], -1), logdet


class GMMPrior(nn.Module):
    """The IB-INN latent: N(z; μ_y, I) per class, class weights w_y = softmax(φ)_y.

    μ_y ``[C, D]`` is initialised with one-hot blocks (each class's block of D/C dimensions set to
    ``init_scale``/sqrt(2·D/C), so that ‖μ_j − μ_k‖ = ``init_scale``). ``rank`` K > 0 is paper
    002's low-rank form (App. A, eq. 28): μ_y = [μ_mean,y, Σ_k α_yk μ_k] with μ_mean,y free over the
    first ``mean_dims`` dimensions (the DCT's mean-pooled channels) and K prototypes μ_k over the
    rest. ``learn_weights=False`` keeps w uniform."""
    num_classes: int
    dim: int
    rank: int = 0
    mean_dims: int = 0
    learn_weights: bool = True
    init_scale: float = 5.0

    def _one_hot_blocks(self, dim):
        c = self.num_classes
        blob = max(dim // c, 1)
        scale = self.init_scale / math.sqrt(2 * blob)
        idx = jnp.arange(dim)
        return lambda _: scale * ((idx[None] // blob == jnp.arange(c)[:, None]) & (idx[None] < blob * c)
                                  ).astype(jnp.float32)

    def setup(self):
        c = self.num_classes
        if self.rank:
            if not 0 < self.mean_dims < self.dim:
                raise UserError(f"a low-rank mu needs 0 < mean_dims < dim, got {self.mean_dims}")
            self.mu_mean = self.param("mu_mean", self._one_hot_blocks(self.mean_dims))
            self.prototypes = self.param("prototypes", nn.initializers.normal(0.01),
                                         (self.rank, self.dim - self.mean_dims))
            self.alpha = self.param("alpha", nn.initializers.zeros, (c, self.rank))
        else:
            self.mu_full = self.param("mu", self._one_hot_blocks(self.dim))
        if self.learn_weights:
            self.phi = self.param("phi", nn.initializers.zeros, (c,))

    def means(self):
        """μ ``[C, D]``."""
        if self.rank:
            return jnp.concatenate([self.mu_mean, self.alpha @ self.prototypes], 1)
        return self.mu_full

    def log_weights(self):
        """log w_y ``[C]``."""
        phi = self.phi if self.learn_weights else jnp.zeros((self.num_classes,))
        return jax.nn.log_softmax(phi)

    def squared_distances(self, z):
        """zz_y = ‖z − μ_y‖² ``[B, C]`` (as ‖z‖² − 2 z·μ_y + ‖μ_y‖²: no [B, C, D] array)."""
        mu = self.means()
        return (jnp.sum(z ** 2, 1)[:, None] - 2.0 * z @ mu.T + jnp.sum(mu ** 2, 1)[None])

    def __call__(self, z):
        """log N(z; μ_y, I) ``[B, C]``."""
        return -0.5 * self.squared_distances(z) - 0.5 * self.dim * ops.LOG_2PI

    def sample(self, key, labels, temperature: float = 1.0):
        mu = self.means()[labels]
        return mu + temperature * jax.random.normal(key, mu.shape, mu.dtype)


class IBINNClassifier(nn.Module):
    """``__call__(x, train)`` -> log p(x|y) ``[B, C]`` in nats for x on [0, 1] (NHWC): x is
    dequantized with the 'noise' rng (v = (255x + u)/256), given N(0, ``noise``²) in training only,
    shifted to [-0.5, 0.5] and mapped by the network; log p(x|y) = log N(z; μ_y, I) + log|det J|
    is a density over [0, 1]^D (bits/dim = −log p/(D ln 2) + 8).

    ``losses`` (Ardizzone et al. / paper 002 eqs. 7-8, constants dropped as in their code):
    L_X = (−logsumexp_y(−zz_y/2 + log w_y) − log|det J|)/D,
    L_Y = cross-entropy of softmax_y(−zz_y/2 + log w_y) against labels smoothed by
    ``label_smoothing``; the loss is 2/(1+β)·L_X + 2β/(1+β)·L_Y (∝ L_X + β·L_Y, bounded as β
    grows): β = inf trains L_Y alone, β = 0 L_X alone."""
    image_shape: tuple
    num_classes: int
    flow_kwargs: Any = None  # IBINN's attributes
    beta: float = 1.0
    label_smoothing: float = 0.02
    noise: float = 0.01
    rank: int = 0
    learn_weights: bool = True
    init_scale: float = 5.0
    seed: int = 0

    def setup(self):
        self.flow = IBINN(self.image_shape, seed=self.seed, **dict(self.flow_kwargs or {}))
        # the DCT's first outputs, one per channel before it, are the mean-pooled ones
        mean_dims = final_shape(self.image_shape, self.flow.entry, len(self.flow.widths))[-1]
        self.prior = GMMPrior(self.num_classes, self.dim, self.rank, mean_dims,
                              self.learn_weights, self.init_scale)

    @property
    def dim(self) -> int:
        return math.prod(self.image_shape)

    def forward(self, x, train: bool = False):
        """(z [B, D], log|det J| [B]) of the dequantized, shifted image."""
        v = data.dequantize(x, self.make_rng("noise"), per_example=train)
        if train and self.noise:
            v = v + self.noise * jax.random.normal(self.make_rng("noise"), v.shape, v.dtype)
        return self.flow(v - 0.5, train=train)

    def features(self, x):
        """The network's features before the DCT pooling of x (not dequantized) ``[B, H, W, C]``."""
        return self.flow.features(x - 0.5)

    def inverse(self, z):
        """The images (on [0, 1], unclipped) of latents ``z`` ``[B, D]``."""
        x, _ = self.flow(z, reverse=True)
        return x.reshape(x.shape[0], *self.image_shape) + 0.5

    def __call__(self, x, train: bool = False):
        z, logdet = self.forward(x, train)
        return self.prior(z) + logdet[:, None]

    def sample(self, labels, key, temperature: float = 1.0):
        """x ~ p(x|y) for ``labels`` ``[B]`` (clipped to [0, 1]; ``temperature`` scales the prior's
        standard deviation)."""
        return jnp.clip(self.inverse(self.prior.sample(key, labels, temperature)), 0.0, 1.0)

    def ib_losses(self, z, logdet, labels):
        """(L_X, L_Y, logits) from latents, log-dets and labels (eqs. 7-8)."""
        logits = -0.5 * self.prior.squared_distances(z) + self.prior.log_weights()[None]
        l_x = jnp.mean(-jax.nn.logsumexp(logits, 1) - logdet) / self.dim
        target = jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)
        target = (1.0 - self.label_smoothing) * target + self.label_smoothing / self.num_classes
        l_y = -jnp.mean(jnp.sum(target * jax.nn.log_softmax(logits, 1), 1))
        return l_x, l_y, logits

    def losses(self, x, labels, train: bool = True):
        z, logdet = self.forward(x, train)
        l_x, l_y, logits = self.ib_losses(z, logdet, labels)
        if math.isinf(self.beta):
            loss = 2.0 * l_y
        else:
            loss = 2.0 / (1.0 + self.beta) * l_x + 2.0 * self.beta / (1.0 + self.beta) * l_y
        nll = -(ops.pick(self.prior(z), labels) + logdet)
        bpd = ops.bits_per_dim(-jnp.mean(nll), self.dim)
        metrics = dict(loss=loss, l_x=l_x, l_y=l_y, bits_per_dim=bpd,
                       accuracy=jnp.mean(jnp.argmax(logits, -1) == labels))
        return loss, metrics


FLOW_KEYS = ("widths", "blocks", "entry", "entry_width", "entry_kernel", "clamp", "s0",
             "bottleneck", "dropout", "fc_blocks", "fc_width", "fc_dropout")


def config() -> dict:
    """``config.model.ibinn``: an invertible ResNet-like network and a Gaussian mixture (paper 002)."""
    return dict(widths=(16, 32, 64), blocks=(8, 24, 24),  # per level; levels > 0 open with
                entry="",            # a downsampling coupling. '' | 'haar' | 'downsample_haar'
                entry_width=64, entry_kernel=7,  # the 'downsample_haar' entry coupling
                clamp=0.7, s0=0.1, bottleneck=False, dropout=0.0,
                fc_blocks=1, fc_width=1024, fc_dropout=0.5,  # couplings after the DCT pooling
                beta=1.0,            # loss L_X + beta L_Y (inf: L_Y only)
                label_smoothing=0.02, noise=0.01,  # training input noise (std, on [0, 1])
                rank=0,              # > 0: low-rank class means with this many prototypes
                learn_weights=True, init_scale=5.0)


def build(b: Any, num_classes: int, image_shape: tuple, seed: int = 0) -> nn.Module:
    """The IBINNClassifier of a ``config.model.ibinn`` block."""
    flow_kwargs = tuple((k, tuple(b[k]) if isinstance(b[k], (list, tuple)) else b[k])
                        for k in FLOW_KEYS)
    return IBINNClassifier(tuple(image_shape), num_classes, flow_kwargs, b.beta,
                           b.label_smoothing, b.noise, b.rank, b.learn_weights, b.init_scale, seed)


def latent(module: IBINNClassifier) -> family.Latent:
    """z and the class means μ (the explain suite; paper 002 §4.3); the grid before the DCT."""
    def fn(variables, x, key):
        z, _ = module.apply(variables, x, rngs=dict(noise=key), method="forward")
        return z, module.apply(variables, method=lambda m: m.prior.means())
    kw = dict(module.flow_kwargs or {})
    return family.Latent(fn, final_shape(module.image_shape, kw.get("entry", IBINN.entry),
                                         len(kw.get("widths", IBINN.widths))))


FAMILY = dataclasses.replace(family.flow_family("ibinn", config, build), latent=latent,
                             features=lambda module: lambda variables, x: module.apply(
                                 variables, x, method="features"))
