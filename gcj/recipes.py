"""The papers' training recipes, one function per kind of model, that ``configs/<name>.py`` start
from: ``paper_config`` (papers 000 / 003: SDIM, Disc, SDIM-logit on their datasets' ResNets),
``score_config`` (paper 004), ``glow_config`` (paper 001), ``ibinn_config`` (paper 002);
``arg='smoke'`` shrinks any of them to a seconds-long run (tests)."""

from __future__ import annotations

import ml_collections

from gcj.config import base_config
from gcj.errors import UserError


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
        raise UserError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
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
        raise UserError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
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
    if dataset == "cifar10":  # paper 001 App. B: 16 steps of 256 channels per level (MNIST: 12 of 128)
        c.model.glow.update(dict(steps=16, width=256))
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
        raise UserError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
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
