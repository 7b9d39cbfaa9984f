"""The configuration schema: the keys every run has, and one block per family,
``config.model.<family>``, whose keys and defaults the family declares (``Family.config`` in
``gcj/models``); a config holds its own family's block and no other. The papers' settings start
from ``base_config(family)`` (``gcj.recipes``, used by ``configs/<name>.py``); every config is
locked, so an unknown key (in a file, on the command line or in a workdir's config.json) is an
error. A workdir's config.json is written by ``to_json`` and read by ``gcj.migration.from_json``.
"""

from __future__ import annotations

import ast
import json

import ml_collections

from gcj import models
from gcj.errors import UserError
from gcj.version import __version__, provenance


def base_config(family: str = "sdim") -> ml_collections.ConfigDict:
    """The keys every run has, with ``family``'s block (``config.model.<family>``) at its defaults."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(
        name="fashion_mnist", data_dir="", num_classes=10, image_size=32, channels=1,
        resize="bilinear",      # 'bilinear' (paper: MNIST-like resized to 32x32) or 'pad'
        val_size=0,             # held out from train: validation metrics, conformal calibration
        max_train_examples=0,   # 0 = all; a cap for smoke runs
        crop_padding=0, flip=False,
        dequantize=False)       # training batches dequantized (x + u) / 256 (the score family)
    c.model = {"family": family, family: models.get(family).config()}
    c.optim = dict(name="adam", lr=1e-3, schedule="constant", warmup_steps=0, weight_decay=0.0,
                   momentum=0.9, grad_clip=0.0,  # > 0: clip the global gradient norm
                   ema_decay=0.0,  # > 0: evaluate and save an EMA of the parameters
                   decay_every_epochs=0,  # schedule 'step': lr / 10 every this many epochs
                   milestones=(),  # schedule 'milestones': lr / 10 at each of these epochs
                   prior_lr_factor=0.0)  # > 0: the 'prior' parameters (class means) by plain
                                         # SGD at this multiple of the lr (IB-INN: 3)
    c.batch_size = 128
    c.num_epochs = 100
    c.eval_batch_size = 500
    c.log_every = 50
    c.checkpoint_every_epochs = 1
    c.checkpoint_every_steps = 0  # also every n steps, inside an epoch (0: only at epoch ends)
    # matmul / convolution precision of training and of every likelihood (jax.default_matmul_precision):
    # 'highest' is float32 throughout; 'default' lets a GPU use TF32 and a TPU bf16 passes (faster;
    # the ODE likelihoods' rtol 1e-5, the flows' log-determinants and the thresholds then move)
    c.precision = "highest"
    c.val_every_epochs = 1      # validation accuracy every n epochs (0: only after the last)
    c.thresholds = dict(percentiles=(1.0, 2.0), conformal_alpha=0.01)
    # training and validation images scored at most for validation and the thresholds (a seeded
    # subset; 0: all), for likelihoods that cost seconds per image (the score family's ODE)
    c.max_scored_images = 0
    return c


def to_json(config: ml_collections.ConfigDict) -> str:
    """A workdir's config.json: the config, the version of gcj that wrote it and the run's
    ``provenance`` (software and devices; not part of the config)."""
    return json.dumps(dict(gcj_version=__version__, provenance=provenance(), **json.loads(config.to_json())),
                      indent=2)


def override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets the flattened ``key`` of a (locked) config from a command-line value ``text``, typed as
    the key's current value."""
    *path, last = key.split(".")
    block = config
    for part in path:
        block = block[part]
    current = block[last]
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise UserError(f"{key} takes true or false, not {text!r}")
        value = text.lower() in ("true", "1")
    elif isinstance(current, (int, float, str)):
        value = type(current)(text)
    else:  # tuples, None
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        value = tuple(value) if isinstance(value, list) else value
    block[last] = value


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested dict as one level of dotted keys (lists as tuples)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = tuple(v) if isinstance(v, list) else v
    return out
