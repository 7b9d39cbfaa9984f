"""Reading a workdir's config.json as the gcj that wrote it meant it.

A config.json records the gcj that wrote it (``gcj.config.to_json``). A config.json of
gcj < 0.3.0 (one schema for all families, SDIM's keys at the top of ``model``) is migrated
explicitly to the per-family blocks, and a key the file lacks is filled only where ``ADDED`` gives
the value that reproduces the gcj that wrote it, never today's default; anything else missing or
unknown is refused with the keys named.
"""

from __future__ import annotations

import json

import ml_collections

from gcj.config import base_config, flatten
from gcj.errors import ConfigKeyError

# Keys gcj added after its first release, with the version that added them (a config.json of an
# older gcj lacks them) and the value under which the code behaves as the older gcj did. Names
# as in the schema of the time. A key added to the schema from now on gets its line here.
ADDED = {
    "val_every_epochs": ("0.2.0", 1),         # validation after every epoch
    "optim.grad_clip": ("0.2.0", 0.0),        # no clipping
    "optim.ema_decay": ("0.2.0", 0.0),        # no EMA
    "optim.decay_every_epochs": ("0.2.0", 0),  # (the 'step' schedule came with it)
    "optim.milestones": ("0.2.0", ()),        # (the 'milestones' schedule came with it)
    "optim.prior_lr_factor": ("0.2.0", 0.0),  # the class means trained like every parameter
    "model.ode.checkpoints": ("0.2.0", None),  # diffrax's default backward-pass checkpoints
    "model.score.ode.adjoint": ("0.4.0", "recursive"),  # discretise-then-optimise gradients
    "checkpoint_every_steps": ("0.6.0", 0),   # checkpoints at epoch ends only
    "precision": ("0.6.0", "default"),        # JAX's default matmul precision (on CPU: float32 alike)
    "model.score.elbo_draws": ("0.6.0", 64),  # (the bound came with it: nothing older used it)
    "model.score.classify": ("0.6.0", "exact"),  # every class by the ODE
    "model.score.adaptive_top": ("0.6.0", 3),  # (unused with 'exact')
    "model.score.adaptive_margin": ("0.6.0", None),
    "model.score.adaptive_rank": ("0.6.1", "bound"),  # ranked by the variational bound
    "model.score.adaptive_rank_tol": ("0.6.1", 1e-4),  # (unused with 'bound')
    "max_scored_images": ("0.6.0", 0),          # every training and validation image scored
    "model.sdim.loss_scale": ("0.6.0", "per_dim"),  # NLL and margin on log p / d
    "model.sdim_logit.loss_scale": ("0.6.0", "per_dim"),
}
BLOCKS_SINCE = "0.3.0"  # the first gcj with per-family blocks
# the families whose keys already sat in a block of their own name before BLOCKS_SINCE
OWN_BLOCK_BEFORE_0_3 = ("glow", "ibinn")


def from_json(text: str) -> ml_collections.ConfigDict:
    """A locked config from a workdir's config.json, as the gcj that wrote it meant it (see the
    module's doc); unknown or missing keys raise ``KeyError`` naming them."""
    given = json.loads(text)
    version = given.pop("gcj_version", "0.1.0")  # gcj < 0.2.0 recorded no version
    given.pop("provenance", None)  # (gcj >= 0.5.0: what ran it, not the config)
    flat = flatten(given)
    if "model.family" not in flat:
        raise ConfigKeyError("config.json has no model.family")
    family = flat["model.family"]
    c = base_config(family)
    c.lock()
    known = flatten(c.to_dict())
    if _older(version, BLOCKS_SINCE):
        flat = _from_one_schema(flat, family, known, version)
    filled = {k: ADDED[k][1] for k in set(known) - set(flat)
              if k in ADDED and _older(version, ADDED[k][0])}
    unknown, missing = sorted(set(flat) - set(known)), sorted(set(known) - set(flat) - set(filled))
    if unknown:
        raise ConfigKeyError(f"unknown config keys in config.json (gcj {version}): {', '.join(unknown)}")
    if missing:
        raise ConfigKeyError(f"config.json (gcj {version}) lacks {', '.join(missing)}: written by a gcj "
                             "that predates them, and gcj.migration.ADDED does not say how it behaved")
    c.update_from_flattened_dict({**flat, **filled})
    return c


def _from_one_schema(flat: dict, family: str, known: dict, version: str) -> dict:
    """A config.json of gcj < 0.3.0 (one schema: SDIM's and the score model's keys at the top of
    ``model``, every family's keys in every file) in the per-family names; the other families'
    keys, which that gcj wrote and never read, are dropped."""
    out = {}
    for key in known:
        old = old_name(family, key)
        if old in flat:
            out[key] = flat.pop(old)
        elif old in ADDED and _older(version, ADDED[old][0]):
            out[key] = ADDED[old][1]
    for key in [k for k in flat if k.startswith("model.")]:  # the other families' keys
        del flat[key]
    return {**flat, **out}  # what is left of flat: unknown keys, refused by the caller


def old_name(family: str, key: str) -> str:
    """Where gcj < 0.3.0 kept the key now called ``key`` of ``family``'s config."""
    prefix = f"model.{family}."
    if not key.startswith(prefix) or family in OWN_BLOCK_BEFORE_0_3:
        return key
    return "model." + key[len(prefix):]


def new_name(config: ml_collections.ConfigDict, key: str) -> str | None:
    """The name in ``config`` (per-family blocks) of a model key as gcj < 0.3.0 named it
    (``model.width`` -> ``model.sdim.width``); None if ``config``'s family has no such key."""
    family = config.model.family
    candidates = {old_name(family, k): k for k in flatten(config.to_dict())}
    return candidates.get(key)


def _older(version: str, than: str) -> bool:
    return tuple(map(int, version.split("."))) < tuple(map(int, than.split(".")))
