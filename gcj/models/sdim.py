"""SDIM (paper 000), SDIM-logit (paper 003) and their discriminative counterpart, in flax linen.

Every family is a linen module whose ``__call__(x)`` is the contract: images ``[B, H, W, C]`` in
[0, 1] -> class log-likelihoods ``[B, C]`` in nats; and whose ``losses(x, labels, train)`` returns
``(loss, metrics)`` for the one training loop.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gcj import conv, losses
from gcj.errors import UserError
from gcj.models import family

BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


def _eye_init(key, shape, dtype=jnp.float32):
    """Rectangular identity: a linear shortcut that starts as (near) pass-through."""
    del key
    return jnp.eye(*shape, dtype=dtype)


class BasicBlock(nn.Module):
    """ResNet basic block with an option-A (parameter-free) shortcut."""
    filters: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        y = conv.Conv(self.filters, (3, 3), self.stride, padding=1, use_bias=False)(x)
        y = nn.relu(BatchNorm(use_running_average=not train)(y))
        y = conv.Conv(self.filters, (3, 3), 1, padding=1, use_bias=False)(y)
        y = BatchNorm(use_running_average=not train)(y)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.filters:
            shortcut = x[:, ::self.stride, ::self.stride, :]
            extra = self.filters - x.shape[-1]
            shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """CIFAR-style ResNet of 8n+2 layers: 4 stages of n blocks, widths w, 2w, 4w, 8w.

    Returns ``(out [B, out_dim], local [B, M, 2w])``: the head output and the stage-2 feature map
    (16x16 locations at 32x32 input) that SDIM's local mutual information uses.
    """
    width: int
    blocks: int
    out_dim: int
    head_units: int = 256

    @nn.compact
    def __call__(self, x, train: bool):
        h = conv.Conv(self.width, (3, 3), padding=1, use_bias=False)(x)
        h = nn.relu(BatchNorm(use_running_average=not train)(h))
        local = None
        for stage in range(4):
            for block in range(self.blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                h = BasicBlock(self.width * 2 ** stage, stride)(h, train)
            if stage == 1:
                local = h
        self.sow("intermediates", "features", h)  # (Family.features: the map before pooling)
        h = jnp.mean(h, axis=(1, 2))
        h = nn.Dense(self.head_units)(h)
        h = nn.relu(BatchNorm(use_running_average=not train)(h))
        out = nn.Dense(self.out_dim)(h)
        return out, local.reshape(local.shape[0], -1, local.shape[-1])


class Projection(nn.Module):
    """1x1 projection of the MI critic: Dense-BN-ReLU-Dense plus a linear shortcut, LayerNorm."""
    units: int

    @nn.compact
    def __call__(self, h, train: bool):
        y = nn.Dense(self.units, use_bias=False)(h)
        y = nn.relu(BatchNorm(use_running_average=not train)(y))
        y = nn.Dense(self.units)(y)
        shortcut = nn.Dense(self.units, use_bias=False, kernel_init=_eye_init)(h)
        return nn.LayerNorm()(y + shortcut)


class Critic(nn.Module):
    """T_omega: projects global and local features to a common width; scores by dot product."""
    units: int

    @nn.compact
    def __call__(self, z, local, train: bool):
        g = Projection(self.units, name="global_proj")(z, train)
        l = Projection(self.units, name="local_proj")(local, train)
        return losses.critic_scores(g, l)


class ClassConditionals(nn.Module):
    """C diagonal Gaussians on the representation: an embedding of (mean, log std) per class."""
    num_classes: int
    dim: int
    min_log_std: float | None = None

    @nn.compact
    def __call__(self, z):
        mean = self.param("mean", nn.initializers.normal(1.0), (self.num_classes, self.dim))
        log_std = self.param("log_std", nn.initializers.zeros, (self.num_classes, self.dim))
        if self.min_log_std is not None:
            log_std = jnp.maximum(log_std, self.min_log_std)
        return losses.diag_gaussian_log_prob(z, mean, log_std)


class ImageEncoder(nn.Module):
    """SDIM's encoder: a ResNet whose head outputs the d-dim representation."""
    width: int
    blocks: int
    rep_dim: int

    @nn.compact
    def __call__(self, x, train: bool):
        return ResNet(self.width, self.blocks, self.rep_dim, name="resnet")(x, train)


class FrozenFunction(nn.Module):
    """Any user function ``x -> logits`` as a parameter-free, frozen SDIM-logit base."""
    fn: Callable[[jax.Array], jax.Array]

    def __call__(self, x, train: bool = False):
        del train
        return self.fn(x)


class LogitEncoder(nn.Module):
    """SDIM-logit's encoder: a frozen base classifier's logits -> MLP -> representation.

    The base always runs in inference mode (running BN statistics); its parameters live under
    ``params['base']`` and are frozen by the optimizer (see ``gcj.train.make_optimizer``). No
    stop_gradient on the logits, so attacks still differentiate through the base w.r.t. ``x``.
    """
    base: nn.Module
    hidden: int
    rep_dim: int

    @nn.compact
    def __call__(self, x, train: bool):
        logits = self.base(x, train=False)
        h = nn.Dense(self.hidden)(logits)
        h = nn.relu(BatchNorm(use_running_average=not train)(h))
        return nn.Dense(self.rep_dim)(h), logits[:, None, :]


class SDIM(nn.Module):
    """Supervised Deep InfoMax: encoder + local-MI critic + class-conditional Gaussians.

    ``__call__`` returns log p(z|y) [B, C] of the representation z = E(x), in nats (not per dim).
    The NLL and margin losses act on log p / d (``loss_scale='per_dim'``: the reference code's
    form, the margin K per dimension) or on log p itself (``'total'``: paper 000 as written, K in
    nats).
    """
    encoder: nn.Module
    num_classes: int
    rep_dim: int
    mi_units: int = 256
    mi_bound: str = "jsd"
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    margin: float = 5.0
    min_log_std: float | None = None
    loss_scale: str = "per_dim"

    def setup(self):
        self.critic = Critic(self.mi_units)
        self.conditionals = ClassConditionals(self.num_classes, self.rep_dim, self.min_log_std)

    def __call__(self, x, train: bool = False):
        z, _ = self.encoder(x, train)
        return self.conditionals(z)

    def losses(self, x, labels, train: bool = True):
        z, local = self.encoder(x, train)
        ll = self.conditionals(z)
        mi = jnp.mean(losses.mi_lower_bound(self.critic(z, local, train), self.mi_bound))
        scaled = ll / self.rep_dim if self.loss_scale == "per_dim" else ll
        nll = jnp.mean(losses.nll_loss(scaled, labels))
        lm = jnp.mean(losses.margin_loss(scaled, labels, self.margin))
        loss = -self.alpha * mi + self.beta * nll + self.gamma * lm
        accuracy = jnp.mean(jnp.argmax(ll, axis=1) == labels)
        return loss, dict(loss=loss, accuracy=accuracy, mi=mi, nll=nll, margin=lm)


class Discriminative(nn.Module):
    """The discriminative counterpart: the same encoder with a C-way head, cross-entropy.

    Its ``__call__`` returns logits; under the contract they stand in for log p(x|y) up to a
    per-input constant, so predict / log_posterior are exact and log_marginal is only relative.
    """
    width: int
    blocks: int
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        return ResNet(self.width, self.blocks, self.num_classes, name="resnet")(x, train)[0]

    def losses(self, x, labels, train: bool = True):
        logits = self(x, train)
        loss = jnp.mean(losses.cross_entropy(logits, labels))
        return loss, dict(loss=loss, accuracy=jnp.mean(jnp.argmax(logits, axis=1) == labels))


def sdim_config() -> dict:
    """``config.model.sdim`` (paper 000): a ResNet 8n+2 encoder (widths w, 2w, 4w, 8w; n=1, w=16:
    ResNet10), a d-dimensional representation, the MI critic and the class-conditional Gaussians."""
    return dict(width=16, blocks=1, rep_dim=64, mi_units=256, mi_bound="jsd",
                alpha=1.0, beta=1.0, gamma=1.0, margin=5.0,  # the loss weights, the margin
                loss_scale="per_dim",  # NLL and margin on log p / d ('per_dim') or log p ('total')
                min_std=0.0)  # > 0 clamps the class std from below


def disc_config() -> dict:
    """``config.model.disc``: the discriminative ResNet 8n+2 (SDIM's encoder with a linear head)."""
    return dict(width=16, blocks=1)


def sdim_logit_config() -> dict:
    """``config.model.sdim_logit`` (paper 003, its reference code's settings): SDIM on the logits
    of a frozen discriminative base (a train.py workdir, or a function given in Python)."""
    return dict(rep_dim=10,  # paper 003: d = the number of classes
                mi_units=256, mi_bound="jsd", alpha=0.6, beta=0.2, gamma=0.2, margin=10.0,
                loss_scale="per_dim", min_std=0.02,
                hidden=256,  # logit-encoder MLP width
                base=dict(family="disc", width=16, blocks=1),  # the frozen base's model
                base_workdir="")  # train.py workdir of the frozen base


def _sdim(cfg, num_classes, encoder):
    min_log_std = math.log(cfg.min_std) if cfg.min_std > 0 else None
    if cfg.loss_scale not in ("per_dim", "total"):
        raise UserError(f"unknown loss_scale {cfg.loss_scale!r} of SDIM's losses; use 'per_dim' or 'total'")
    return SDIM(encoder, num_classes, cfg.rep_dim, cfg.mi_units, cfg.mi_bound, cfg.alpha, cfg.beta,
                cfg.gamma, cfg.margin, min_log_std, cfg.loss_scale)


def build_sdim(cfg: Any, num_classes: int) -> nn.Module:
    """The SDIM of a ``config.model.sdim`` block."""
    return _sdim(cfg, num_classes, ImageEncoder(cfg.width, cfg.blocks, cfg.rep_dim))


def build_disc(cfg: Any, num_classes: int) -> nn.Module:
    """The discriminative ResNet of a ``config.model.disc`` block."""
    return Discriminative(cfg.width, cfg.blocks, num_classes)


def build_sdim_logit(cfg: Any, num_classes: int, base: nn.Module | None = None) -> nn.Module:
    """The SDIM-logit of a ``config.model.sdim_logit`` block; ``base`` (any linen module or
    ``FrozenFunction(x -> logits)``) replaces the block's discriminative base."""
    if base is None:
        if cfg.base.family != "disc":
            raise UserError(f"sdim_logit needs a 'disc' base, got {cfg.base.family!r}")
        base = build_disc(cfg.base, num_classes)
    return _sdim(cfg, num_classes, LogitEncoder(base, cfg.hidden, cfg.rep_dim))


def _prepare_logit(config, base):
    """SDIM-logit on a trained base (``base``: the loaded base classifier, None for a ``base_fn``):
    the base's architecture comes from its own config, so that the workdir's config rebuilds it
    (a copy; the caller's config is left as it is)."""
    if base is None:
        return config
    b = base.config.model
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.model.sdim_logit.base.update(dict(family=b.family, width=b[b.family].width,
                                                 blocks=b[b.family].blocks))
    config.lock()
    return config


def _attach_logit_base(config, variables, base):
    """SDIM-logit: the frozen base's trained variables, copied from the loaded base classifier
    (``base``; None for a ``base_fn``, which closes over its own)."""
    if base is None:
        return variables
    if base.config.model.family != "disc":
        raise UserError(f"base workdir holds a {base.config.model.family!r} model, need 'disc'")
    variables = jax.tree_util.tree_map(lambda a: a, variables)  # shallow copy of the dicts
    for col in ("params", "batch_stats"):
        variables[col]["encoder"]["base"] = base.params[col]
    return variables


SDIM_FAMILY = family.Family(
    "sdim", sdim_config, lambda c, base_fn: build_sdim(c.model.sdim, c.data.num_classes),
    features=family.sown_features)
DISC_FAMILY = family.Family(
    "disc", disc_config, lambda c, base_fn: build_disc(c.model.disc, c.data.num_classes),
    features=family.sown_features)
SDIM_LOGIT_FAMILY = family.Family(
    "sdim_logit", sdim_logit_config,
    lambda c, base_fn: build_sdim_logit(c.model.sdim_logit, c.data.num_classes,
                                        None if base_fn is None else FrozenFunction(base_fn)),
    takes_base_fn=True,
    frozen=lambda path: "base" in path,  # the base's parameters (params['encoder']['base'])
    prepare=_prepare_logit, attach=_attach_logit_base)


def count_params(params) -> int:
    """Number of scalars in a parameter pytree."""
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
