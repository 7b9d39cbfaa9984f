"""Score-based generative classifier (paper 004): a class-conditional DDPM++ U-Net on centered data
[-1, 1], trained with likelihood weighting, classifying by probability-flow ODE likelihoods.

``ScoreModel(x_centered, t, labels)`` is the network's epsilon prediction (score = -eps / std(t));
``losses(x, labels, train)`` the training objective; ``make_log_likelihood_fn(module, ode)`` the
contract ``(variables, x, key) -> log p(x|y) [B, C]``, all classes in one vmapped ODE solve.
"""

from __future__ import annotations

import functools
import math
import types
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gcj import conv, data, diffusion
from gcj.errors import UserError
from gcj.models import family


def _init(scale: float = 1.0):
    """DDPM's init: variance scaling (fan_avg, uniform); scale 0 means (almost) zero."""
    return nn.initializers.variance_scaling(max(scale, 1e-10), "fan_avg", "uniform")


_reverse_only_conv = functools.partial(conv.conv_general_dilated, reverse_only=True)


def _conv(features: int, kernel: int = 3, scale: float = 1.0, lax_conv: bool = False):
    # conv.conv_general_dilated keeps the input gradients fast inside the ODE solver's loop (reverse
    # mode only); lax_conv: jax.lax's, forward-differentiable
    return nn.Conv(features, (kernel, kernel), padding=kernel // 2, kernel_init=_init(scale),
                   conv_general_dilated=None if lax_conv else _reverse_only_conv)


def _norm(channels: int):
    return nn.GroupNorm(num_groups=min(channels // 4, 32), epsilon=1e-6)


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embedding ``[B, dim]`` of (continuous) timesteps ``t`` ``[B]``."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half) / (half - 1))
    args = t[:, None].astype(jnp.float32) * freqs[None]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))


class ResBlock(nn.Module):
    """BigGAN-style residual block of DDPM++: norm-act-(resample)-conv, + Dense(temb), norm-act-
    dropout-conv (zero init); 1x1 shortcut when the shape changes; skip rescaling by 1/sqrt(2)."""
    out_ch: int
    dropout: float
    skip_rescale: bool = True
    resample: str = "none"  # 'none' | 'up' | 'down'
    lax_conv: bool = False

    @nn.compact
    def __call__(self, x, temb, train: bool):
        h = nn.swish(_norm(x.shape[-1])(x))
        if self.resample == "down":
            h, x = _downsample(h), _downsample(x)
        elif self.resample == "up":
            h, x = _upsample(h), _upsample(x)
        h = _conv(self.out_ch, lax_conv=self.lax_conv)(h)
        h = h + nn.Dense(self.out_ch, kernel_init=_init())(nn.swish(temb))[:, None, None, :]
        h = nn.swish(_norm(self.out_ch)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = _conv(self.out_ch, scale=0.0, lax_conv=self.lax_conv)(h)
        if x.shape[-1] != self.out_ch or self.resample != "none":
            x = _conv(self.out_ch, kernel=1, lax_conv=self.lax_conv)(x)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, output projection zero-initialized."""
    skip_rescale: bool = True

    @nn.compact
    def __call__(self, x):
        b, hh, ww, c = x.shape
        h = _norm(c)(x)
        q, k, v = (nn.Dense(c, kernel_init=_init())(h) for _ in range(3))
        w = jnp.einsum("bhwc,bHWc->bhwHW", q, k) * c ** -0.5
        w = jax.nn.softmax(w.reshape(b, hh, ww, hh * ww), axis=-1).reshape(b, hh, ww, hh, ww)
        h = nn.Dense(c, kernel_init=_init(0.0))(jnp.einsum("bhwHW,bHWc->bhwc", w, v))
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


def _downsample(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _upsample(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class UNet(nn.Module):
    """DDPM++ (NCSN++ with BigGAN residual blocks, positional time embedding): ``num_res_blocks``
    per level, attention at ``attn_resolutions``, GroupNorm, swish, dropout, skip rescaling. The
    time embedding of t * 999 and a one-hot class embedding are ADDED and fed to every block."""
    channels: int
    num_classes: int
    nf: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: Sequence[int] = (16,)
    dropout: float = 0.1
    skip_rescale: bool = True
    lax_conv: bool = False  # jax.lax convolutions: forward-mode differentiable, slower gradients in loops

    @nn.compact
    def __call__(self, x, t, labels, train: bool = False):
        block = lambda ch, **kw: ResBlock(ch, self.dropout, self.skip_rescale, lax_conv=self.lax_conv, **kw)  # noqa: E731
        attn = lambda: AttnBlock(self.skip_rescale)  # noqa: E731
        temb = timestep_embedding(t * 999.0, self.nf)
        temb = nn.Dense(4 * self.nf, kernel_init=_init())(temb)
        temb = nn.Dense(4 * self.nf, kernel_init=_init())(nn.swish(temb))
        onehot = jax.nn.one_hot(labels, self.num_classes, dtype=temb.dtype)
        temb = temb + nn.Dense(4 * self.nf, use_bias=False, kernel_init=_init())(onehot)

        hs = [_conv(self.nf, lax_conv=self.lax_conv)(x)]
        levels = len(self.ch_mult)
        for i, mult in enumerate(self.ch_mult):
            for _ in range(self.num_res_blocks):
                h = block(self.nf * mult)(hs[-1], temb, train)
                if h.shape[1] in self.attn_resolutions:
                    h = attn()(h)
                hs.append(h)
            if i != levels - 1:
                hs.append(block(hs[-1].shape[-1], resample="down")(hs[-1], temb, train))
        h = block(hs[-1].shape[-1])(hs[-1], temb, train)
        h = attn()(h)
        h = block(h.shape[-1])(h, temb, train)
        for i, mult in reversed(list(enumerate(self.ch_mult))):
            for _ in range(self.num_res_blocks + 1):
                h = block(self.nf * mult)(jnp.concatenate([h, hs.pop()], axis=-1), temb, train)
            if h.shape[1] in self.attn_resolutions:
                h = attn()(h)
            if i != 0:
                h = block(h.shape[-1], resample="up")(h, temb, train)
        assert not hs
        h = nn.swish(_norm(h.shape[-1])(h))
        return _conv(x.shape[-1], scale=0.0, lax_conv=self.lax_conv)(h)


class ScoreModel(nn.Module):
    """The SBGC: a class-conditional epsilon-prediction network and its SDE."""
    unet: UNet
    sde: diffusion.VPSDE
    num_classes: int
    weighting: str = "likelihood_is"  # 'likelihood_is' | 'likelihood' | 'dsm'
    train_eps: float = 1e-5

    def __call__(self, x, t, labels, train: bool = False):
        """epsilon prediction for centered ``x`` [B, H, W, C] at times ``t`` [B], classes ``labels``."""
        return self.unet(x, t, labels, train)

    def score(self, x, t, labels):
        """grad_x log p_t(x | y) = -eps(x, t, y) / std(t) (inference mode)."""
        return -self(x, t, labels) / diffusion._bcast(self.sde.marginal_std(t), x)

    def losses(self, x, labels, train: bool = True):
        """Denoising score matching with likelihood weighting (per image: sum over dimensions).

        'likelihood_is': t ~ g^2/std^2 (importance sampling), loss |s std + z|^2 = |z - eps|^2;
        'likelihood': t ~ U(eps, T), loss |s + z/std|^2 g^2; 'dsm': t ~ U, loss |z - eps|^2.
        """
        xc = 2.0 * x - 1.0
        k_t, k_z = jax.random.split(self.make_rng("noise"))
        b = x.shape[0]
        if self.weighting == "likelihood_is":
            t = diffusion.sample_importance_time(self.sde, k_t, (b,), self.train_eps)
        elif self.weighting in ("likelihood", "dsm"):
            t = jax.random.uniform(k_t, (b,), minval=self.train_eps, maxval=self.sde.T)
        else:
            raise UserError(f"unknown weighting {self.weighting!r}; use 'likelihood_is', "
                            "'likelihood' or 'dsm'")
        z = jax.random.normal(k_z, xc.shape)
        mean, std = self.sde.marginal(xc, t)
        eps_hat = self(mean + diffusion._bcast(std, xc) * z, t, labels, train)
        err = jnp.sum(((eps_hat - z) ** 2).reshape(b, -1), axis=1)
        if self.weighting == "likelihood":
            err = err * self.sde.diffusion_squared(t) / std ** 2
        loss = jnp.mean(err)
        return loss, dict(loss=loss, loss_per_dim=loss / math.prod(x.shape[1:]))


def ode_inputs(ode: Any, x, key):
    """The ODE's start ``2 v - 1`` (``v`` the dequantized ``x``; see ``class_likelihoods``) and
    its Hutchinson probes ``[P, *x.shape[1:]]`` (None for the exact divergence), both from ``key``."""
    k_deq, k_probe = jax.random.split(key)
    shape = x.shape[1:]
    if ode.dequantize:
        x = data.dequantize(x, k_deq, per_example=False)
    probes = None
    if ode.divergence == "hutchinson":
        probes = diffusion.make_probes(k_probe, shape, ode.num_probes, ode.probe, x.dtype)
    return 2.0 * x - 1.0, probes


def class_likelihoods(module: ScoreModel, ode: Any, variables, x, key,
                      classes=None) -> diffusion.LikelihoodResult:
    """ODE likelihoods of ``x`` [B, H, W, C] in [0, 1] under every class: a ``LikelihoodResult``
    whose fields have a class axis after the batch (``logp`` [B, C], ``probe_logp`` [B, C, P],
    ``nfe`` [B, C]); log-densities of the dequantized image on [0, 1]^D.

    ``classes`` ``[B, K]`` (integers): only those classes of each image, in that order (the class
    axis is then K long): an attack whose loss needs two classes solves two ODEs, not C. Every
    (image, class) pair is its own solve with its own step-size control, so a pair's value does
    not depend on which other classes are solved beside it, up to rounding: the batch's shape
    changes the rounding, the adaptive steps follow it, and a value moves within the solver's
    tolerance (``bench/score_bound.py`` measures how far).

    ``v = (255 x + u) / 256`` with ``u`` ~ U[0,1)^D drawn from ``key`` (``v = x`` when
    ``ode.dequantize`` is off), so bits/dim = -log p / (D ln 2) + 8 (``diffusion.bits_per_dim``).
    All classes share the dequantization and the Hutchinson probes (``ode.num_probes``), so class
    differences are not probe noise. ``ode.adjoint`` picks how gradients are taken
    (``diffusion.make_adjoint``).
    """
    xc, probes = ode_inputs(ode, x, key)
    if ode.adjoint == "backsolve":  # diffrax checks its adjoint ODE's term with forward mode (jacfwd)
        module = module.clone(unet=module.unet.clone(lax_conv=True))
    b, shape = x.shape[0], x.shape[1:]
    if classes is None:
        classes = jnp.broadcast_to(jnp.arange(module.num_classes), (b, module.num_classes))
    classes = jnp.asarray(classes)
    if classes.ndim != 2 or classes.shape[0] != b or not jnp.issubdtype(classes.dtype, jnp.integer):
        raise UserError(f"classes must be integers of shape [{b}, K], got {classes.dtype} {classes.shape}")
    k = classes.shape[1]
    res = diffusion.log_likelihood(  # one solve per (image, class) pair, B K in all
        lambda v, t, y: module.apply(variables, v, t, y, method="score"), module.sde,
        jnp.broadcast_to(xc[:, None], (b, k, *shape)).reshape(b * k, *shape), cond=classes.reshape(-1),
        divergence=ode.divergence, probes=probes, rtol=ode.rtol, atol=ode.atol, eps=ode.eps,
        max_steps=ode.max_steps, adjoint=diffusion.make_adjoint(ode.adjoint, ode.rtol, ode.atol, ode.checkpoints))
    res = jax.tree_util.tree_map(lambda a: a.reshape(b, k, *a.shape[1:]), res)
    to_unit = math.prod(shape) * math.log(2.0)  # density on [-1, 1] -> on [0, 1]
    return res._replace(logp=res.logp + to_unit, probe_logp=res.probe_logp + to_unit)


def class_bounds(module: ScoreModel, ode: Any, variables, x, key, num_draws: int, classes=None) -> jax.Array:
    """The variational bound on log p(v|y) (``diffusion.elbo``) of ``x`` [B, H, W, C] in [0, 1]
    under every class (or ``classes`` [B, K]): ``[B, C]`` nats, for the same dequantized image
    ``v`` as ``class_likelihoods`` with the same ``key`` (on [0, 1]^D, bits/dim alike). Every
    class of an image shares the ``num_draws`` (t, noise) draws: class differences are not draw
    noise. No ODE: ``num_draws`` network evaluations per (image, class)."""
    xc, _ = ode_inputs(ode, x, key)
    b, shape = x.shape[0], x.shape[1:]
    if classes is None:
        classes = jnp.broadcast_to(jnp.arange(module.num_classes), (b, module.num_classes))
    classes = jnp.asarray(classes)
    k = classes.shape[1]
    res = diffusion.elbo(lambda v, t, y: module.apply(variables, v, t, y, method="score"), module.sde,
                         jnp.broadcast_to(xc[:, None], (b, k, *shape)).reshape(b * k, *shape),
                         jax.random.fold_in(key, 1), num_draws=num_draws, eps=ode.eps, cond=classes.reshape(-1))
    return res.bound.reshape(b, k) + math.prod(shape) * math.log(2.0)  # density on [-1, 1] -> on [0, 1]


def loose(ode: Any, tol: float):
    """``ode`` with ``rtol = atol = tol`` (everything else, the probes included, as it is)."""
    return types.SimpleNamespace(**{**dict(ode.items()), "rtol": tol, "atol": tol})


RANKS = ("bound", "ode")


def check_rank(rank: str) -> None:
    """``rank`` is one of ``RANKS``, or a ``UserError`` naming them."""
    if rank not in RANKS:
        raise UserError(f"unknown model.score.adaptive_rank {rank!r}; use one of {', '.join(RANKS)}")


def adaptive_likelihoods(module: ScoreModel, ode: Any, variables, x, key, num_draws: int, top: int,
                         margin: float | None = None, rank: str = "bound", rank_tol: float = 1e-4):
    """Classification with few exact solves: every class ranked by a cheap estimate of log p(v|y),
    then the best solved exactly (``class_likelihoods``, the same key: the same dequantized image
    and probes): the ``top`` best, or with ``margin`` (nats) those whose estimate lies within
    ``margin`` of the image's best, at least one and at most ``top`` — each image its own number,
    the rest of the batch's solves skipped once no image needs them. ``rank``: ``bound``, the
    variational bound (``class_bounds``, ``num_draws`` draws, no ODE); ``ode``, a loose solve
    (``class_likelihoods`` at ``rtol = atol = rank_tol``, the same key: the same image and probes,
    so the ranking shares the exact solve's probe noise). Returns ``(ll [B, C], exact [B, C]
    bool)``: the exact log p(v|y) where ``exact``; elsewhere the estimate, capped just below the
    lowest solved value, so an unsolved class never outranks a solved one. The argmax and the
    winner's log-likelihood are therefore always those of an exact solve, and those of the
    all-class exact classifier whenever its winner is among the classes solved
    (``bench/score_bound.py`` measures how often)."""
    check_rank(rank)
    if rank == "bound":
        est = class_bounds(module, ode, variables, x, key, num_draws)
    else:
        est = class_likelihoods(module, loose(ode, rank_tol), variables, x, key).logp
    order = jnp.argsort(-est, axis=1)[:, :top]  # [B, top] best first
    if margin is None:
        wanted = jnp.full(x.shape[0], top)
    else:  # the classes within margin of the best estimate (the best itself always)
        near = est >= est.max(axis=1, keepdims=True) - margin
        wanted = jnp.clip(near.sum(axis=1), 1, top)
    rows = jnp.arange(x.shape[0])

    def solve(carry, j):  # the j-th best class of every image, while some image wants it
        ll, solved = carry
        value = jax.lax.cond(j < wanted.max(), lambda: class_likelihoods(
            module, ode, variables, x, key, order[:, j][:, None]).logp[:, 0], lambda: jnp.zeros(x.shape[0]))
        use = j < wanted
        ll = ll.at[rows, order[:, j]].set(jnp.where(use, value, ll[rows, order[:, j]]))
        return (ll, solved.at[rows, order[:, j]].set(use | solved[rows, order[:, j]])), None

    (ll, solved), _ = jax.lax.scan(solve, (est, jnp.zeros(est.shape, bool)), jnp.arange(top))
    lowest = jnp.min(jnp.where(solved, ll, jnp.inf), axis=1, keepdims=True)
    below = jnp.nextafter(jax.lax.stop_gradient(lowest), -jnp.inf)
    return jnp.where(solved, ll, jnp.minimum(est, below)), solved


CLASSIFY = ("exact", "adaptive")


def make_log_likelihood_fn(module: ScoreModel, ode: Any, classify: str = "exact", elbo_draws: int = 64,
                           adaptive_top: int = 3, adaptive_margin: float | None = None,
                           adaptive_rank: str = "bound", adaptive_rank_tol: float = 1e-4):
    """The contract ``(variables, x [B,H,W,C] in [0,1], key) -> log p(v|y) [B, C]`` in nats
    (see ``class_likelihoods``); with ``classes=[B, K]`` only those classes, ``[B, K]``, exactly
    (``takes_classes``: the attacks use it to differentiate only the classes their loss needs).
    ``classify``: ``exact``, every class solved; ``adaptive``, ``adaptive_likelihoods`` (the
    classes best by the ``adaptive_rank`` estimate solved, at most ``adaptive_top``, with
    ``adaptive_margin`` those within that many nats of the best estimate; estimates for the others)."""
    if classify not in CLASSIFY:
        raise UserError(f"unknown model.score.classify {classify!r}; use one of {', '.join(CLASSIFY)}")
    check_rank(adaptive_rank)  # at build time, not at the first call

    def log_likelihood_fn(variables, x, key, classes=None):
        if classify == "adaptive" and classes is None:
            return adaptive_likelihoods(module, ode, variables, x, key, elbo_draws,
                                        min(adaptive_top, module.num_classes), adaptive_margin,
                                        adaptive_rank, adaptive_rank_tol)[0]
        return class_likelihoods(module, ode, variables, x, key, classes).logp
    log_likelihood_fn.takes_classes = True
    return log_likelihood_fn


def make_bound_fn(module: ScoreModel, ode: Any, elbo_draws: int):
    """The variational bound (``class_bounds``, ``elbo_draws`` draws) with the contract's
    signature, ``classes=`` included: the score family's attack surrogate 'elbo'."""
    def bound_fn(variables, x, key, classes=None):
        return class_bounds(module, ode, variables, x, key, elbo_draws, classes)
    bound_fn.takes_classes = True
    return bound_fn


def config() -> dict:
    """``config.model.score`` (paper 004): the DDPM++ network, the SDE and training weighting,
    the likelihood ODE."""
    return dict(
        unet=dict(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,),
                  dropout=0.1, skip_rescale=True),
        sde=dict(name="vp", beta_min=0.1, beta_max=20.0,
                 weighting="likelihood_is",  # 'likelihood_is' | 'likelihood' | 'dsm'
                 train_eps=1e-5),
        ode=dict(num_probes=30, probe="rademacher", divergence="hutchinson", rtol=1e-5,
                 atol=1e-5, eps=1e-5, max_steps=4096,
                 dequantize=True,   # the likelihood of the dequantized image (training batches
                                    # are dequantized by config.data.dequantize)
                 checkpoints=None,  # backward-pass solver states of the 'recursive' adjoint
                 adjoint="recursive"),  # or 'backsolve' (diffusion.make_adjoint)
        elbo_draws=64,  # (t, noise) draws of the variational bound (class_bounds; no ODE)
        classify="exact",  # 'exact': every class by the ODE; 'adaptive': ranked by a cheap estimate, the
        adaptive_top=3,    # adaptive_top best solved exactly (adaptive_likelihoods), or with
        adaptive_margin=None,  # a margin (nats) those within it of the best estimate, at most adaptive_top
        adaptive_rank="bound",  # the estimate: 'bound' (elbo_draws draws) or 'ode' (a loose solve,
        adaptive_rank_tol=1e-4)  # rtol = atol = adaptive_rank_tol, the same probes)


def build(cfg: Any, num_classes: int, channels: int) -> ScoreModel:
    """The ScoreModel of a ``config.model.score`` block."""
    u = cfg.unet
    unet = UNet(channels, num_classes, u.nf, tuple(u.ch_mult), u.num_res_blocks,
                tuple(u.attn_resolutions), u.dropout, u.skip_rescale)
    s = cfg.sde
    if s.name not in diffusion.SDES:
        raise UserError(f"unknown sde {s.name!r}; use one of {', '.join(diffusion.SDES)}")
    sde = diffusion.SDES[s.name](s.beta_min, s.beta_max)
    return ScoreModel(unet, sde, num_classes, s.weighting, s.train_eps)


FAMILY = family.Family(
    "score", config, lambda c, base_fn: build(c.model.score, c.data.num_classes, c.data.channels),
    lambda module, c: make_log_likelihood_fn(module, c.model.score.ode, c.model.score.classify,
                                             c.model.score.elbo_draws, c.model.score.adaptive_top,
                                             c.model.score.adaptive_margin, c.model.score.adaptive_rank,
                                             c.model.score.adaptive_rank_tol),
    density=True,
    surrogates=dict(elbo=lambda module, c: make_bound_fn(module, c.model.score.ode, c.model.score.elbo_draws)))
