"""The configuration schema: the keys every run has, and one block per family,
``config.model.<family>``, whose keys and defaults the family declares (``Family.config`` in
``gcj/models``); a config holds its own family's block and no other. ``configs/<name>.py`` files
start from ``base_config(family)`` (or a paper's config below) and override; every config is
locked, so an unknown key (in a file, on the command line or in a workdir's config.json) is an
error.

A workdir's config.json records the gcj that wrote it (``to_json``). ``from_json`` reads it as that
gcj meant it: a config.json of gcj < 0.3.0 (one schema for all families, SDIM's keys at the top of
``model``) is migrated explicitly to the per-family blocks, and a key the file lacks is filled only
where ``ADDED`` gives the value that reproduces the gcj that wrote it, never today's default;
anything else missing or unknown is refused with the keys named.
"""

from __future__ import annotations

import ast
import json

import ml_collections

from gcj import models

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
}
BLOCKS_SINCE = "0.3.0"  # the first gcj with per-family blocks
# the families whose keys already sat in a block of their own name before BLOCKS_SINCE
OWN_BLOCK_BEFORE_0_3 = ("glow", "ibinn")


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
    c.val_every_epochs = 1      # validation accuracy every n epochs (0: only after the last)
    c.thresholds = dict(percentiles=(1.0, 2.0), conformal_alpha=0.01)
    return c


DATASETS = {  # name: (channels, ResNet width, blocks n, val_size, crop padding, flip)
    "mnist": (1, 16, 1, 2000, 0, False),
    "fashion_mnist": (1, 16, 1, 2000, 0, False),
    "cifar10": (3, 32, 3, 5000, 4, True),
    "svhn": (3, 32, 3, 5000, 4, False),
}


def paper_config(family: str, dataset: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """Paper 000 / 003 settings of an SDIM-like ``family`` (sdim, disc, sdim_logit) on
    ``dataset``: the dataset's ResNet for the family's network or base; ``arg='smoke'`` shrinks it."""
    channels, width, blocks, val_size, crop, flip = DATASETS[dataset]
    c = base_config(family)
    c.data.name, c.data.channels, c.data.val_size = dataset, channels, val_size
    c.data.crop_padding, c.data.flip = crop, flip
    m = c.model[family]
    for resnet in resnets(m):
        resnet.width, resnet.blocks = width, blocks
    if arg not in (None, "smoke"):
        raise ValueError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
    if arg == "smoke":
        smoke(c)
        for resnet in resnets(m):
            resnet.width = 4
        m.update({k: v for k, v in dict(blocks=1, rep_dim=8, mi_units=16, hidden=16).items() if k in m})
    return c


def resnets(block: ml_collections.ConfigDict) -> list:
    """The ResNets an SDIM-like family block describes: itself (sdim, disc), its base (sdim_logit)."""
    return [b for b in (block, block.get("base")) if b is not None and "width" in b]


SCORE_DATASETS = {  # name: (image size, channels, val_size, flip)
    "digits": (8, 1, 137, False),
    "mnist": (28, 1, 2000, False),
    "fashion_mnist": (28, 1, 2000, False),
    "cifar10": (32, 3, 5000, True),
    "svhn": (32, 3, 5000, False),
}


def score_config(dataset: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """Paper 004's SBGC training (likelihood weighting with importance sampling, Adam 2e-4 with
    5000 warm-up steps, gradient clipping 1, EMA 0.9999, batch 128, uniform dequantization) with
    the DDPM++ network of the base config; ``arg='smoke'`` shrinks it."""
    size, channels, val_size, flip = SCORE_DATASETS[dataset]
    c = base_config("score")
    c.data.name, c.data.image_size, c.data.channels = dataset, size, channels
    c.data.val_size, c.data.flip, c.data.dequantize = val_size, flip, True
    c.optim.update(dict(lr=2e-4, warmup_steps=5000, grad_clip=1.0, ema_decay=0.9999))
    c.eval_batch_size = 100
    if arg not in (None, "smoke"):
        raise ValueError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
    if arg == "smoke":
        c = smoke(c)
        c.model.score.unet.update(dict(nf=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=()))
        c.model.score.ode.update(dict(num_probes=2, rtol=1e-3, atol=1e-3))
        c.data.max_train_examples, c.data.val_size = 64, 16
        c.batch_size, c.eval_batch_size = 16, 16
        c.optim.update(dict(warmup_steps=2, ema_decay=0.9))
    return c


def glow_config(dataset: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """Paper 001's conditional Glow training (Adam 1e-3, divided by 10 every 60 of 150 epochs;
    warm-up, as Glow needs; the image dequantized inside the model); the variant is
    ``model.glow.variant``; ``arg='smoke'`` shrinks it."""
    c = _flow_config("glow", dataset)
    c.model.glow.pad_to = 32 if c.data.image_size > 8 else c.data.image_size
    c.optim.update(dict(lr=1e-3, schedule="step", decay_every_epochs=60, warmup_steps=500))
    c.num_epochs = 150
    c.batch_size, c.eval_batch_size = 64, 200
    if _flow_smoke(c, arg):
        c.model.glow.update(dict(levels=2, steps=2, width=8, pad_to=0))
    return c


def ibinn_config(dataset: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """Ardizzone et al.'s IB-INN training as their code: SGD 0.07, momentum 0.9, weight decay
    1e-4, gradient clipping 8, the class means at 3x the lr without momentum or decay, batch 128,
    lr / 10 at epochs 150, 250, 350 of 450 after 500 warm-up steps; CIFAR-10: widths (16, 32, 64),
    blocks (8, 24, 24), one fully connected coupling; MNIST-like (one channel): Haar entry, then
    levels (32, 64) of 24 blocks, label smoothing 0.01. The image is dequantized inside the
    model. ``arg='smoke'`` shrinks it."""
    c = _flow_config("ibinn", dataset)
    if c.data.channels == 1:  # MNIST-like: Haar first, the first level skipped (28x28: 7x7 at the DCT)
        c.model.ibinn.update(dict(entry="haar", widths=(32, 64), blocks=(24, 24),
                                  label_smoothing=0.01))
    c.optim.update(dict(name="sgd", lr=0.07, momentum=0.9, weight_decay=1e-4, grad_clip=8.0,
                        schedule="milestones", milestones=(150, 250, 350), warmup_steps=500,
                        prior_lr_factor=3.0))
    c.num_epochs = 450
    c.batch_size, c.eval_batch_size = 128, 200
    if _flow_smoke(c, arg):
        c.model.ibinn.update(dict(widths=(4, 8), blocks=(1, 1), fc_width=16))
    return c


def _flow_config(family: str, dataset: str) -> ml_collections.ConfigDict:
    """The base config with a flow family's data block (random crops for CIFAR-10)."""
    size, channels, val_size, flip = SCORE_DATASETS[dataset]
    c = base_config(family)
    c.data.name, c.data.image_size, c.data.channels = dataset, size, channels
    c.data.val_size, c.data.flip = val_size, flip
    c.data.crop_padding = 4 if dataset == "cifar10" else 0
    return c


def _flow_smoke(c: ml_collections.ConfigDict, arg: str | None) -> bool:
    """Checks ``arg``; for 'smoke' shrinks ``c``'s data and batches in place and returns True
    (the caller shrinks its model)."""
    if arg not in (None, "smoke"):
        raise ValueError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
    if arg is None:
        return False
    smoke(c)  # in place
    c.data.max_train_examples, c.data.val_size = 64, 16
    c.batch_size, c.eval_batch_size = 16, 16
    c.optim.warmup_steps = 2
    return True


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a config's data, batches and epochs to a seconds-long run on CPU (tests); the
    family's model is shrunk by the caller."""
    c.data.max_train_examples = 256
    c.data.val_size = 64
    c.batch_size = 32
    c.eval_batch_size = 128
    c.num_epochs = 2
    c.log_every = 2
    return c


def to_json(config: ml_collections.ConfigDict) -> str:
    """A workdir's config.json: the config, and the version of gcj that wrote it."""
    from gcj import __version__  # noqa: PLC0415 (gcj/__init__ imports this module's users)

    return json.dumps(dict(gcj_version=__version__, **json.loads(config.to_json())), indent=2)


def from_json(text: str) -> ml_collections.ConfigDict:
    """A locked config from a workdir's config.json, as the gcj that wrote it meant it (see the
    module's doc); unknown or missing keys raise ``KeyError`` naming them."""
    given = json.loads(text)
    version = given.pop("gcj_version", "0.1.0")  # gcj < 0.2.0 recorded no version
    flat = _flatten(given)
    if "model.family" not in flat:
        raise KeyError("config.json has no model.family")
    family = flat["model.family"]
    c = base_config(family)
    c.lock()
    known = _flatten(c.to_dict())
    if _older(version, BLOCKS_SINCE):
        flat = _from_one_schema(flat, family, known, version)
    filled = {k: ADDED[k][1] for k in set(known) - set(flat)
              if k in ADDED and _older(version, ADDED[k][0])}
    unknown, missing = sorted(set(flat) - set(known)), sorted(set(known) - set(flat) - set(filled))
    if unknown:
        raise KeyError(f"unknown config keys in config.json (gcj {version}): {', '.join(unknown)}")
    if missing:
        raise KeyError(f"config.json (gcj {version}) lacks {', '.join(missing)}: written by a gcj "
                       "that predates them, and gcj.config.ADDED does not say how it behaved")
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
    candidates = {old_name(family, k): k for k in _flatten(config.to_dict())}
    return candidates.get(key)


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
            raise ValueError(f"{key} takes true or false, not {text!r}")
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


def _older(version: str, than: str) -> bool:
    return tuple(map(int, version.split("."))) < tuple(map(int, than.split(".")))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = tuple(v) if isinstance(v, list) else v
    return out
