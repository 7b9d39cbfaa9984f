"""The one contract and everything derived from it.

A family provides a pure ``log_likelihood_fn(params, x, key) -> [B, C]`` (nats). ``Classifier``
wraps it with input checks and derives prediction, posterior, marginal and rejection, the same
for every family.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from typing import Any

import chex
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from gcj import checkpoint, data, migration, models
from gcj import config as config_lib
from gcj.errors import NonFiniteError, NotFoundError, UserError
from gcj.models.family import LogLikelihoodFn, image_shape
from gcj.ops import log_marginal, log_posterior

# (the registry's capabilities as names, for older code: ``models.get(name).density`` etc.)
DENSITY_FAMILIES = tuple(n for n, f in models.FAMILIES.items() if f.density)
FLOW_FAMILIES = tuple(n for n, f in models.FAMILIES.items() if f.invertible)


def check_images(x, image_shape: tuple[int, int, int] | None = None) -> None:
    """Raises ``ValueError`` naming the problem unless ``x`` is float ``[B, *image_shape]`` in [0, 1]
    (any ``[B, H, W, C]`` when ``image_shape`` is None).

    Values (NaN, range) are checked only for concrete arrays; under ``jit`` only shape and dtype.
    """
    if not isinstance(x, (jax.Array, np.ndarray)):  # lists, scalars; tracers are jax.Arrays
        x = np.asarray(x)
    shape, dtype = x.shape, x.dtype
    if len(shape) != 4:
        raise UserError(f"images must have rank 4 [B, H, W, C], got shape {shape}")
    if image_shape is not None and tuple(shape[1:]) != tuple(image_shape):
        raise UserError(f"images must be [B, {', '.join(map(str, image_shape))}], got shape {shape}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise UserError(f"images must be floating point with pixels in [0, 1], got dtype {dtype}"
                        + (" (divide uint8 images by 255)" if dtype == np.uint8 else ""))
    if _traced(x):
        return
    x = np.asarray(x)
    if not np.all(np.isfinite(x)):
        raise UserError(f"images contain {np.sum(~np.isfinite(x))} NaN or infinite values")
    lo, hi = float(x.min(initial=0.0)), float(x.max(initial=0.0))
    if lo < 0.0 or hi > 1.0:
        raise UserError(f"pixels must be in [0, 1], got range [{lo:g}, {hi:g}]")


def _traced(x) -> bool:
    """True inside ``jit`` / ``grad`` / ``vmap``, where values cannot be checked (only shapes)."""
    return isinstance(x, jax.core.Tracer)


@flax.struct.dataclass
class Classifier:
    """A generative classifier: parameters plus the pure class log-likelihood function.

    A pytree: ``params`` and ``thresholds`` are its leaves, the config (frozen) and the function
    static, so a ``Classifier`` can be an argument of ``jax.jit``, and ``jax.vmap`` can map over
    a stack of parameters (``clf.replace(params=...)``)."""

    config: ml_collections.FrozenConfigDict = flax.struct.field(pytree_node=False)
    params: Any
    # (params, x [B,H,W,C] in [0,1], key) -> [B, C] nats
    log_likelihood_fn: LogLikelihoodFn = flax.struct.field(pytree_node=False)
    thresholds: dict | None = None  # name -> [C] log p(x|y) thresholds (the workdir's thresholds.json)

    def __post_init__(self):
        if not isinstance(self.config, ml_collections.FrozenConfigDict):  # hashable: a static field
            object.__setattr__(self, "config", ml_collections.FrozenConfigDict(self.config))

    @property
    def num_classes(self) -> int:
        return self.config.data.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return image_shape(self.config)

    @property
    def density_dims(self) -> int:
        """The number of dimensions log p(x|y) is a density over, which bits/dim divide by: the
        pixels, or the padded image where the model pads it (Glow's ``pad_to``)."""
        if not self.family.density:
            raise UserError(f"family {self.config.model.family!r}'s log p(x|y) is not a density of the pixels")
        return int(getattr(build_module(self.config), "density_dims", math.prod(self.image_shape)))

    @property
    def family(self) -> models.Family:
        """What the registry declares of this classifier's family (``density``, ``invertible``...)."""
        return models.get(self.config.model.family)

    def class_log_likelihoods(self, x, key: jax.Array | None = None) -> jax.Array:
        """log p(x|y) for every class, ``[B, C]`` in nats (jitted; input checked first)."""
        check_images(x, self.image_shape)
        key = jax.random.key(0) if key is None else key
        ll = _jit(self.log_likelihood_fn)(self.params, jnp.asarray(x, jnp.float32), key)
        chex.assert_shape(ll, (jnp.shape(x)[0], self.num_classes))  # the family kept the contract
        chex.assert_type(ll, float)
        return ll

    def predict(self, x, key=None) -> jax.Array:
        """argmax_y log p(x|y) + log p(y) with a uniform prior: ``[B]``."""
        return jnp.argmax(self.class_log_likelihoods(x, key), axis=1)

    def log_posterior(self, x, key=None, log_prior=None) -> jax.Array:
        """log p(y|x) ``[B, C]`` by Bayes' rule (uniform prior unless ``log_prior`` [C] given)."""
        return log_posterior(self.class_log_likelihoods(x, key), log_prior)

    def log_marginal(self, x, key=None, log_prior=None) -> jax.Array:
        """log p(x) = logsumexp_y log p(x|y) + log p(y), ``[B]``."""
        return log_marginal(self.class_log_likelihoods(x, key), log_prior)

    # Flow families only: the bijection and sampling (jitted).
    def forward(self, x, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """(z ``[B, D]``, log|det J| ``[B]``) of the dequantized images (``key``: the noise)."""
        check_images(x, self.image_shape)
        key = jax.random.key(0) if key is None else key
        fn = _flow_method(self._flow_module(), "forward")
        return fn(self.params, jnp.asarray(x, jnp.float32), rngs=dict(noise=key))

    def inverse(self, z) -> jax.Array:
        """The images of latents ``z`` ``[B, D]`` (the inverse of ``forward``, unclipped)."""
        z = jnp.asarray(z, jnp.float32)
        if z.ndim != 2 or not (_traced(z) or np.all(np.isfinite(z))):
            raise UserError(f"latents must be finite [B, D], got shape {z.shape}")
        return _flow_method(self._flow_module(), "inverse")(self.params, z)

    def sample(self, labels, key: jax.Array, temperature: float = 1.0) -> jax.Array:
        """x ~ p(x|y) for integer ``labels`` ``[B]``, clipped to [0, 1]; ``temperature`` scales the
        prior's standard deviations (1: the model's own distribution)."""
        labels = jnp.asarray(labels)
        if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer) or (
                labels.size and not _traced(labels)
                and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes):
            raise UserError(f"labels must be integers in [0, {self.num_classes}) of shape [B]")
        return _flow_method(self._flow_module(), "sample")(self.params, labels, key, temperature)

    def latent(self, x, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """(z ``[B, D]``, class means μ ``[C, D]``) where the family's classes are unit Gaussians in
        a latent space (IB-INN): log p(x|y) = log N(z; μ_y, I) + log|det J| (jitted)."""
        check_images(x, self.image_shape)
        key = jax.random.key(0) if key is None else key
        return self.latent_space.fn(self.params, jnp.asarray(x, jnp.float32), key)

    @property
    def latent_space(self) -> models.family.Latent:
        """The family's ``Latent`` (``fn`` jitted; ``grid`` the features' shape before the DCT)."""
        if self.family.latent is None:
            has = [n for n, f in models.FAMILIES.items() if f.latent is not None]
            raise UserError(f"family {self.config.model.family!r} has no latent space of unit class "
                            f"Gaussians (the explain suite, Classifier.latent): only {has}")
        return _latent(build_module(self.config), self.config.model.family)

    def features(self, x) -> jax.Array:
        """The network's features before its final pooling ``[B, H, W, C]`` (IB-INN: before the DCT;
        SDIM and Disc: the ResNet's last map), for the effective receptive field (jitted)."""
        check_images(x, self.image_shape)
        if self.family.features is None:
            has = [n for n, f in models.FAMILIES.items() if f.features is not None]
            raise UserError(f"family {self.config.model.family!r} exposes no features: only {has}")
        return _features(build_module(self.config), self.config.model.family)(
            self.params, jnp.asarray(x, jnp.float32))

    def _flow_module(self):
        if not self.family.invertible:
            raise UserError(f"forward / inverse / sample need a flow family {FLOW_FAMILIES}, "
                            f"not {self.config.model.family!r}")
        return build_module(self.config)


@functools.lru_cache(maxsize=16)
def _features(module, family_name: str):
    return jax.jit(models.get(family_name).features(module))


@functools.lru_cache(maxsize=16)
def _latent(module, family_name: str) -> models.family.Latent:
    latent = models.get(family_name).latent(module)
    return latent._replace(fn=jax.jit(latent.fn))


@functools.lru_cache(maxsize=64)
def _jit(log_likelihood_fn: LogLikelihoodFn):
    """One jitted function per likelihood function, so classifiers sharing it share compilations."""
    return jax.jit(log_likelihood_fn)


@functools.lru_cache(maxsize=64)
def _flow_method(module, method: str):
    """``module.apply(variables, *args, method=method, **kw)``, jitted once per module and method."""
    return jax.jit(lambda variables, *args, **kw: module.apply(variables, *args, method=method, **kw))


def progress(iterable, desc: str, show: bool = True, **kw):
    """A progress bar with an ETA over ``iterable`` on a terminal; nothing when the output is not a
    terminal (CI, logs) or ``show`` is False."""
    show = show and jax.process_index() == 0  # (several processes: the first shows them)
    return tqdm(iterable, desc=desc, leave=False, mininterval=2.0, disable=None if show else True, **kw)


@functools.lru_cache(maxsize=64)
def _sharded(log_likelihood_fn: LogLikelihoodFn, uint8: bool, devices: tuple):
    """``log_likelihood_fn`` jitted with its batch split over ``devices`` (a data-parallel mesh, the
    parameters and key replicated); returns ``(fn, batch sharding, replicated sharding)``."""
    mesh = Mesh(np.asarray(devices), ("data",))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    f = (lambda p, x, k: log_likelihood_fn(p, data.to_float(x), k)) if uint8 else log_likelihood_fn
    return jax.jit(f, in_shardings=(replicated, sharded, replicated), out_shardings=sharded), sharded, replicated


def host_local(tree):
    """``tree`` with each array spread over several processes' devices (replicated: the training
    state of a multi-process run) as this process's own replica, for computations on this process's
    devices; anything else as it is."""
    return jax.tree_util.tree_map(
        lambda a: a.addressable_data(0) if isinstance(a, jax.Array) and not a.is_fully_addressable else a, tree)


def replicate(tree, sharding: NamedSharding):
    """``tree``'s arrays replicated over ``sharding``'s mesh; several processes build the global
    arrays from their own (equal) copies, as no backend copies between hosts."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree_util.tree_map(lambda a: jax.make_array_from_callback(
        np.shape(a), sharding, lambda index, a=np.asarray(a): a[index]), host_local(tree))


def local_data_parallel(tree):
    """``(tree on this process's devices, put)`` for a computation split over them by its batch (an
    attack batch): ``tree``'s arrays (a ``Classifier``'s parameters and thresholds) replicated on a
    mesh of this process's devices, and ``put(a)`` placing an array's rows split over that mesh
    (where its rows divide evenly; else, and for ``None``, ``a`` as it is: one device). With one
    device, both as they are: the computation of one device, unchanged."""
    devices = jax.local_devices()
    if len(devices) == 1:
        return tree, lambda a: a
    mesh = Mesh(np.asarray(devices), ("data",))
    rows = NamedSharding(mesh, P("data"))
    return (replicate(host_local(tree), NamedSharding(mesh, P())),
            lambda a: a if a is None or len(a) % len(devices) else jax.device_put(a, rows))


def batched_log_likelihoods(clf: Classifier, images: np.ndarray, batch_size: int,
                          key: jax.Array | None = None, resume: str | None = None) -> np.ndarray:
    """``[N, C]`` log-likelihoods of uint8 images (or float ones in [0, 1]), batched (the last batch
    padded: one compile). Each batch is split over every device of every process (the data-parallel
    mesh of training; ``batch_size`` rounded up to a multiple of their number): each process sends
    its own part and every process gets all ``N`` rows back, the same as one process would compute.
    The next batch is sent while the devices work on the current one. Batch ``i`` (from 0) gets the
    key ``fold_in(key, i * batch_size)``.

    ``resume``: a ``.npz`` path where the rows are kept batch by batch (written by the first
    process), so a run stopped part-way resumes at its next batch: rows found there are used only
    if they were made from the same images, key, batch size, config and parameters (a
    fingerprint of all five); otherwise scoring starts afresh. For expensive likelihoods (the
    score family's ODE); the caller removes the file when it no longer needs it."""
    if images.dtype == np.uint8 and tuple(images.shape[1:]) == clf.image_shape:
        uint8 = True
    elif images.dtype != np.uint8:
        check_images(images, clf.image_shape)
        uint8, images = False, np.asarray(images, np.float32)
    else:
        raise UserError(f"expected images [N, {', '.join(map(str, clf.image_shape))}], "
                        f"got {images.dtype} {images.shape}")
    devices = tuple(jax.devices())  # (several processes: all of theirs, one mesh)
    fn, sharded, replicated = _sharded(clf.log_likelihood_fn, uint8, devices)
    key = jax.random.key(0) if key is None else key
    params = replicate(clf.params, replicated)
    size = -(-min(batch_size, max(len(images), 1)) // len(devices)) * len(devices)  # padded batch
    per, me = size // jax.process_count(), jax.process_index()

    def fetch(pending):  # every process gets the whole batch
        ll, n = pending
        return np.asarray(multihost_utils.process_allgather(ll, tiled=True) if jax.process_count() > 1 else ll)[:n]

    out, pending = [], None
    if resume is not None:
        mark = fingerprint(clf, images, key, np.int64(batch_size))
        out = _resumed(resume, mark, batch_size, len(images))

    def keep(rows):  # a finished batch, and with resume the rows so far
        out.append(rows)
        if resume is not None and jax.process_index() == 0:
            save_kept(resume, mark, ll=np.concatenate(out))

    start = sum(len(rows) for rows in out)  # (whole batches)
    for i in progress(range(start, len(images), batch_size), "scoring", len(images) - start > batch_size):
        chunk = images[i:i + batch_size]
        n = len(chunk)
        if n < size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - n, 0)])
        x = jax.make_array_from_process_local_data(sharded, chunk[me * per:(me + 1) * per], chunk.shape)
        ll = fn(params, x, jax.random.fold_in(key, i))  # dispatched
        if pending is not None:  # fetch the previous batch while this one runs
            keep(fetch(pending))
        pending = (ll, n)
    if pending is not None:
        keep(fetch(pending))
    ll = np.concatenate(out) if out else np.zeros((0, clf.num_classes), np.float32)
    if not np.all(np.isfinite(ll)):
        raise NonFiniteError(f"{np.sum(~np.isfinite(ll))} non-finite class log-likelihoods")
    return ll


def resume_path(folder: str | None, name: str) -> str | None:
    """``batched_log_likelihoods``' ``resume`` file for the scores ``name`` kept under ``folder``:
    ``<folder>/<name>.npz`` (None without a folder: not resumable)."""
    return os.path.join(folder, f"{name}.npz") if folder else None


def fingerprint(clf: Classifier, *parts, text: str = "") -> str:
    """What fixes a kept result (sha256): ``parts`` (arrays; a key by its data), the classifier's
    parameters and config, and ``text``."""
    h = hashlib.sha256()
    raw = [jax.random.key_data(p) if isinstance(p, jax.Array) and jnp.issubdtype(p.dtype, jax.dtypes.prng_key)
           else p for p in parts]
    for part in (*raw, *jax.tree_util.tree_leaves(clf.params)):
        h.update(np.ascontiguousarray(np.asarray(part)).tobytes())
    h.update(clf.config.to_json().encode())
    h.update(text.encode())
    return h.hexdigest()


def save_kept(path: str, mark: str, **arrays) -> None:
    """``arrays`` kept in ``path`` for ``mark`` (``fingerprint``), written whole and then moved into
    place: a stop never leaves half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, fingerprint=mark, **arrays)
    os.replace(tmp, path)


def load_kept(path: str | None, mark: str) -> dict | None:
    """The arrays ``save_kept`` kept in ``path`` for ``mark``; None when there is no such file (or
    no path) or it was made from something else."""
    if path is None:
        return None
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files if k != "fingerprint"} if str(f["fingerprint"]) == mark else None
    except (OSError, KeyError, ValueError):
        return None


def _resumed(path: str, mark: str, batch_size: int, n: int) -> list:
    """The whole batches of rows ``batched_log_likelihoods`` kept in ``path`` for ``mark``
    (none when there is no such file or it was made from something else)."""
    kept = load_kept(path, mark)
    if kept is None or "ll" not in kept:
        return []
    ll = kept["ll"]
    done = n if len(ll) >= n else len(ll) // batch_size * batch_size
    return [ll[:done]] if done else []


# ------------------------------------------------------------------------- create and load

def build_module(config: ml_collections.ConfigDict, base_fn=None):
    """The linen module of a config, by its family's ``build`` (the pure functions are its ``apply``).

    ``base_fn``: SDIM-logit on any frozen function ``x -> logits`` (closing over its own
    parameters) instead of a gcj discriminative base.
    """
    family = models.get(config.model.family)
    if family.name not in config.model:
        other = [k for k in config.model if k != "family"]
        raise UserError(f"config.model.family is {family.name!r} but the config has no model."
                        f"{family.name} block (it has model.{', model.'.join(other)}): start from "
                        f"a {family.name} config (configs/{family.name}_*.py, "
                        f"gcj.config.base_config({family.name!r}))")
    if base_fn is not None and not family.takes_base_fn:
        takes = [n for n, f in models.FAMILIES.items() if f.takes_base_fn]
        raise UserError(f"base_fn is for family {' or '.join(map(repr, takes))}, not {family.name!r}")
    return family.build(config, base_fn)


PRECISIONS = ("highest", "high", "default", "float32", "tensorfloat32", "bfloat16")


def precision(config: ml_collections.ConfigDict):
    """``jax.default_matmul_precision(config.precision)``: the context every likelihood and
    training step of ``config`` is traced in."""
    if config.precision not in PRECISIONS:
        raise UserError(f"unknown precision {config.precision!r}; use one of {', '.join(PRECISIONS)}")
    return jax.default_matmul_precision(config.precision)


def make_log_likelihood_fn(module, config: ml_collections.ConfigDict) -> LogLikelihoodFn:
    """The contract of a family: ``(variables, x, key) -> [B, C]`` in inference mode, its matrix
    products at ``config.precision``."""
    return at_precision(models.get(config.model.family).log_likelihood_fn(module, config), config)


def at_precision(fn: LogLikelihoodFn, config: ml_collections.ConfigDict) -> LogLikelihoodFn:
    """``fn`` with its matrix products at ``config.precision`` (an unknown name refused now)."""
    precision(config)

    @functools.wraps(fn)  # (keeps what the family's function declares, e.g. ``takes_classes``)
    def log_likelihood_fn(variables, x, key, **kw):
        with precision(config):
            return fn(variables, x, key, **kw)
    return log_likelihood_fn


def surrogate(clf: Classifier, name: str) -> Classifier:
    """``clf`` with its family's surrogate ``name`` (``Family.surrogates``, e.g. the score
    family's 'elbo') in place of its log-likelihood function, at the same precision: what an
    attack may ascend instead of the exact (costly) one. Judge its results with ``clf``."""
    made = clf.family.surrogates.get(name)
    if made is None:
        known = ", ".join(clf.family.surrogates) or "none"
        raise UserError(f"family {clf.config.model.family!r} has no attack surrogate {name!r} (it has: {known})")
    return clf.replace(log_likelihood_fn=at_precision(made(build_module(clf.config), clf.config), clf.config))


def init_variables(config: ml_collections.ConfigDict, key: jax.Array, base_fn=None,
                   images: jax.Array | None = None):
    """Fresh variables (``{'params': ...}`` plus ``'batch_stats'`` where the family has them).

    Flow families initialise their ActNorms from data: pass a training batch as ``images``
    (float [B, H, W, C] in [0, 1]; train.py does); without one they see uniform noise."""
    if images is not None:
        check_images(images, image_shape(config))
    x = models.get(config.model.family).init_images(config, key, images)
    labels = jnp.zeros((x.shape[0],), jnp.int32)
    # Through ``losses`` so that training-only parts (SDIM's MI critic) are created too.
    rngs = dict(params=key, noise=key, dropout=key)
    # jitted: one compilation instead of hundreds of op-by-op dispatches (seconds on CPU)
    init = functools.partial(build_module(config, base_fn).init, train=False, method="losses")
    return jax.jit(init)(rngs, x, labels)


def create(config: ml_collections.ConfigDict, key: jax.Array, base_fn=None) -> Classifier:
    """An untrained classifier from a config (``base_fn``: see ``build_module``)."""
    module = build_module(config, base_fn)
    return Classifier(config, init_variables(config, key, base_fn), make_log_likelihood_fn(module, config))


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The locked config saved in a train.py workdir."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise NotFoundError(f"{workdir!r} is not a gcj workdir: no config.json "
                            "(train one with `python train.py --config ... --workdir ...`)")
    with open(path) as f:
        return migration.from_json(f.read())


def load(workdir: str, step: int | None = None, base_fn=None, overrides: dict | None = None) -> Classifier:
    """A trained classifier from a train.py workdir (latest checkpoint unless ``step``).

    ``base_fn``: the same SDIM-logit base function the workdir was trained with, if any.
    ``overrides``: config keys (dotted) -> values (command-line text) changed before the model is
    built, for settings of inference (e.g. ``{"model.score.ode.num_probes": "10"}``).
    """
    config = read_config(workdir)
    for key, text in (overrides or {}).items():
        try:
            with config.unlocked():
                config_lib.override(config, key, str(text))
        except (KeyError, AttributeError) as e:
            raise UserError(f"unknown config key {key!r} to override in {workdir}") from e
    module = build_module(config, base_fn)
    target = jax.eval_shape(lambda: init_variables(config, jax.random.key(0), base_fn))
    variables = host_local(checkpoint.restore_variables(workdir, target, step))
    thresholds = None
    path = os.path.join(workdir, "thresholds.json")
    if os.path.exists(path):
        with open(path) as f:
            thresholds = json.load(f)
    return Classifier(config, variables, make_log_likelihood_fn(module, config), thresholds)
