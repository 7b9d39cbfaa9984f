"""The one configuration schema. ``configs/<name>.py`` files start from ``base_config()`` and
override; every config is locked, so an unknown key (in a file, on the command line or in a
workdir's config.json) is an error."""

from __future__ import annotations

import json

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by every family (paper 000's SDIM on Fashion-MNIST where one is needed)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(
        name="fashion_mnist", data_dir="", num_classes=10, image_size=32, channels=1,
        resize="bilinear",      # 'bilinear' (paper: MNIST-like resized to 32x32) or 'pad'
        val_size=0,             # held out from train: validation metrics, conformal calibration
        max_train_examples=0,   # 0 = all; a cap for smoke runs
        crop_padding=0, flip=False, dequantize=False)
    c.model = dict(
        family="sdim",          # 'sdim' | 'disc' | 'sdim_logit'
        width=16, blocks=1,     # ResNet 8n+2 with widths w,2w,4w,8w (n=1, w=16: ResNet10)
        rep_dim=64, mi_units=256, mi_bound="jsd", alpha=1.0, beta=1.0, gamma=1.0, margin=5.0,
        min_std=0.0,            # > 0 clamps the class std from below (SDIM-logit: 0.02)
        hidden=256,             # SDIM-logit: logit-encoder MLP width
        base=dict(family="disc", width=16, blocks=1),  # SDIM-logit: the frozen base's model
        base_workdir="")        # SDIM-logit: train.py workdir of the frozen base
    c.optim = dict(name="adam", lr=1e-3, schedule="constant", warmup_steps=0, weight_decay=0.0,
                   momentum=0.9)
    c.batch_size = 128
    c.num_epochs = 100
    c.eval_batch_size = 500
    c.log_every = 50
    c.checkpoint_every_epochs = 1
    c.thresholds = dict(percentiles=(1.0, 2.0), conformal_alpha=0.01)
    return c


DATASETS = {  # name: (channels, ResNet width, blocks n, val_size, crop padding, flip)
    "mnist": (1, 16, 1, 2000, 0, False),
    "fashion_mnist": (1, 16, 1, 2000, 0, False),
    "cifar10": (3, 32, 3, 5000, 4, True),
    "svhn": (3, 32, 3, 5000, 4, False),
}


def paper_config(family: str, dataset: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """Paper 000 / 003 settings of ``family`` on ``dataset``; ``arg='smoke'`` shrinks it."""
    channels, width, blocks, val_size, crop, flip = DATASETS[dataset]
    c = base_config()
    c.data.name, c.data.channels, c.data.val_size = dataset, channels, val_size
    c.data.crop_padding, c.data.flip = crop, flip
    c.model.family, c.model.width, c.model.blocks = family, width, blocks
    c.model.base.width, c.model.base.blocks = width, blocks
    if family == "sdim_logit":  # the reference code's settings (paper 003)
        c.model.rep_dim = c.data.num_classes
        c.model.alpha, c.model.beta, c.model.gamma, c.model.margin = 0.6, 0.2, 0.2, 10.0
        c.model.min_std = 0.02
        c.num_epochs = 20
    if arg not in (None, "smoke"):
        raise ValueError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
    return smoke(c) if arg == "smoke" else c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a config to a seconds-long run on CPU (tests)."""
    c.data.max_train_examples = 256
    c.data.val_size = 64
    c.model.width, c.model.blocks = 4, 1
    c.model.rep_dim, c.model.mi_units, c.model.hidden = 8, 16, 16
    c.model.base.width = 4
    c.batch_size = 32
    c.eval_batch_size = 128
    c.num_epochs = 2
    c.log_every = 2
    return c


def from_json(text: str) -> ml_collections.ConfigDict:
    """A locked config from a workdir's config.json; unknown keys raise ``KeyError``."""
    c = base_config()
    c.lock()
    known = set(_flatten(c.to_dict()))
    given = _flatten(json.loads(text))
    unknown = sorted(set(given) - known)
    if unknown:
        raise KeyError(f"unknown config keys in config.json: {', '.join(unknown)}")
    c.update_from_flattened_dict(given)
    return c


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = tuple(v) if isinstance(v, list) else v
    return out
