"""What a family declares; the rest of gcj needs nothing else of it (``gcj.models.FAMILIES``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp

# (variables, x [B, H, W, C] in [0, 1], key) -> log p(x|y) [B, C] in nats
LogLikelihoodFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def block(config):
    """The config block of ``config``'s family: ``config.model[config.model.family]``."""
    return config.model[config.model.family]


def image_shape(config) -> tuple[int, int, int]:
    d = config.data
    return (d.image_size, d.image_size, d.channels)


def apply_fn(module, config) -> LogLikelihoodFn:
    """The contract of a deterministic module: ``module.apply(variables, x)``; the key is unused."""
    del config

    def log_likelihood_fn(variables, x, key):
        del key
        return module.apply(variables, x)
    return log_likelihood_fn


def zeros_init_images(config, key, images):
    """Images a module is initialised on: two black ones (the values do not matter)."""
    del key, images
    return jnp.zeros((2, *image_shape(config)), jnp.float32)


def keep_config(config, base):
    del base
    return config


def keep_variables(config, variables, base):
    del config, base
    return variables


class Latent(NamedTuple):
    """The latent space of a family whose classes are unit Gaussians in it (paper 002 §4.3):
    ``fn(variables, x, key) -> (z [B, D], means [C, D])`` with log p(x|y) = log N(z; μ_y, I) +
    log|det J| (the Jacobian shared by the classes), and ``grid``, the (H, W, C) that
    ``flows.inverse_dct_pooling`` maps z back to (the features before the DCT pooling)."""
    fn: Callable[[Any, jax.Array, jax.Array], tuple]
    grid: tuple


@dataclasses.dataclass(frozen=True)
class Family:
    """A family of generative classifiers, as gcj uses it.

    ``config()`` is the family's own config block, ``config.model.<name>`` (its defaults; no
    other family's keys appear in a config). ``build(config, base_fn)`` returns a linen module
    with ``__call__`` (inference) and ``losses(x, labels, train) -> (loss, metrics)`` (the one
    training loop), built from that block and ``config.data``; ``base_fn`` (a frozen
    ``x -> logits``) only where ``takes_base_fn``. ``log_likelihood_fn(module, config)`` is the
    contract.
    """

    name: str
    config: Callable[[], dict]
    build: Callable[[Any, Callable | None], Any]
    log_likelihood_fn: Callable[[Any, Any], LogLikelihoodFn] = apply_fn
    # (config, key, images or None) -> float images [B, H, W, C] that ``init`` runs on; flows
    # initialise their ActNorms from these (data-dependent initialisation)
    init_images: Callable[[Any, jax.Array, Any], jax.Array] = zeros_init_images
    density: bool = False      # log p(x|y) is a density of the dequantized pixels (bits/dim)
    invertible: bool = False   # forward / inverse / sample
    # built on a frozen base: a ``base_fn``, or the trained classifier in the block's
    # ``base_workdir`` (loaded by train.py, passed to ``prepare`` and ``attach`` as ``base``)
    takes_base_fn: bool = False
    # a parameter's path (tuple of names) -> True if training leaves it unchanged
    frozen: Callable[[tuple], bool] = lambda path: False
    # before training: (config, base or None) -> the config a workdir records (e.g. SDIM-logit's
    # base architecture, from the base's own config)
    prepare: Callable[[Any, Any], Any] = keep_config
    # after initialisation: (config, variables, base or None) -> variables completed from
    # elsewhere (e.g. the base's trained ones)
    attach: Callable[[Any, Any, Any], Any] = keep_variables
    # module -> Latent, for families whose classes are unit Gaussians in a latent space (the
    # explain suite, Classifier.latent); None: no such latent
    latent: Callable[[Any], Latent] | None = None
    # module -> (variables, x) -> [B, H, W, C], the features before the network's final pooling
    # (paper 002 Fig. 4's effective receptive field; ``Classifier.features``); None: not exposed
    features: Callable[[Any], Callable] | None = None
    # name -> (module, config) -> a cheaper stand-in of ``log_likelihood_fn`` with its signature,
    # that attacks may ascend instead (``classifier.surrogate``; their success is still judged by
    # the family's own log p(x|y)): the score family's 'elbo', its variational bound
    surrogates: dict = dataclasses.field(default_factory=dict)


def sown_features(module) -> Callable:
    """``features`` of a module that ``sow``s them as 'features' in 'intermediates'."""
    def fn(variables, x):
        _, state = module.apply(variables, x, mutable=["intermediates"])
        found = [v for k, v in flax.traverse_util.flatten_dict(state["intermediates"]).items()
                 if k[-1] == "features"]
        return found[0][0]
    return fn


# ------------------------------------------------------------ pieces the flow families share

def noise_apply_fn(module, config) -> LogLikelihoodFn:
    """The contract of a module whose inference draws noise (dequantization, padding channels)
    from the key: ``module.apply(variables, x, rngs={'noise': key})``."""
    del config
    return lambda variables, x, key: module.apply(variables, x, rngs=dict(noise=key))


def flow_family(name: str, config, build) -> Family:
    """A flow family from ``build(block, num_classes, image_shape, seed)``: a density of the
    dequantized pixels, invertible, the key drawing the noise, ActNorms initialised from data."""
    return Family(name, config,
                  lambda c, base_fn: build(block(c), c.data.num_classes, image_shape(c), c.seed),
                  noise_apply_fn, data_init_images, density=True, invertible=True)


def data_init_images(config, key, images):
    """The training batch given (train.py passes its first), else uniform noise: flows initialise
    their ActNorms from the statistics of what they first see."""
    if images is not None:
        return jnp.asarray(images, jnp.float32)
    return jax.random.uniform(jax.random.fold_in(key, 1), (16, *image_shape(config)))
