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
        family="sdim",          # 'sdim' | 'disc' | 'sdim_logit' | 'score' | 'glow' | 'ibinn'
        width=16, blocks=1,     # ResNet 8n+2 with widths w,2w,4w,8w (n=1, w=16: ResNet10)
        rep_dim=64, mi_units=256, mi_bound="jsd", alpha=1.0, beta=1.0, gamma=1.0, margin=5.0,
        min_std=0.0,            # > 0 clamps the class std from below (SDIM-logit: 0.02)
        hidden=256,             # SDIM-logit: logit-encoder MLP width
        base=dict(family="disc", width=16, blocks=1),  # SDIM-logit: the frozen base's model
        base_workdir="",        # SDIM-logit: train.py workdir of the frozen base
        # score (paper 004): DDPM++ network, SDE and training weighting, likelihood ODE
        unet=dict(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,),
                  dropout=0.1, skip_rescale=True),
        sde=dict(name="vp", beta_min=0.1, beta_max=20.0,
                 weighting="likelihood_is",  # 'likelihood_is' | 'likelihood' | 'dsm'
                 train_eps=1e-5),
        ode=dict(num_probes=30, probe="rademacher", divergence="hutchinson", rtol=1e-5,
                 atol=1e-5, eps=1e-5, max_steps=4096, dequantize=True,
                 checkpoints=None),  # backward-pass solver states (diffusion.log_likelihood)
        # glow (paper 001): multi-scale Glow with a class-conditional prior
        glow=dict(levels=4, steps=12, width=128, lu=True,
                  variant="base",       # 'base' | 'reweighted' | 'split'
                  pad_to=32,            # zero-pad images to this size (paper: MNIST to 32x32)
                  split_scale=1.0, split_sigma=1.0),  # split prior: p(z_s|y) = N(scale e_y, sigma^2)
        # ibinn (paper 002, Ardizzone et al.): invertible ResNet-like network + Gaussian mixture
        ibinn=dict(widths=(16, 32, 64), blocks=(8, 24, 24),  # per level; levels > 0 open with
                   entry="",            # a downsampling coupling. '' | 'haar' | 'downsample_haar'
                   entry_width=64, entry_kernel=7,  # the 'downsample_haar' entry coupling
                   clamp=0.7, s0=0.1, bottleneck=False, dropout=0.0,
                   fc_blocks=1, fc_width=1024, fc_dropout=0.5,  # couplings after the DCT pooling
                   beta=1.0,            # loss L_X + beta L_Y (inf: L_Y only)
                   label_smoothing=0.02, noise=0.01,  # training input noise (std, on [0, 1])
                   rank=0,              # > 0: low-rank class means with this many prototypes
                   learn_weights=True, init_scale=5.0))
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
    c = base_config()
    c.model.family = "score"
    c.data.name, c.data.image_size, c.data.channels = dataset, size, channels
    c.data.val_size, c.data.flip, c.data.dequantize = val_size, flip, True
    c.optim.update(dict(lr=2e-4, warmup_steps=5000, grad_clip=1.0, ema_decay=0.9999))
    c.eval_batch_size = 100
    if arg not in (None, "smoke"):
        raise ValueError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
    if arg == "smoke":
        c = smoke(c)
        c.model.unet.update(dict(nf=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=()))
        c.model.ode.update(dict(num_probes=2, rtol=1e-3, atol=1e-3))
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
    c = base_config()
    c.model.family = family
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


def to_json(config: ml_collections.ConfigDict) -> str:
    """A workdir's config.json: the config, and the version of gcj that wrote it."""
    from gcj import __version__  # noqa: PLC0415 (gcj/__init__ imports this module's users)

    return json.dumps(dict(gcj_version=__version__, **json.loads(config.to_json())), indent=2)


def from_json(text: str) -> ml_collections.ConfigDict:
    """A locked config from a workdir's config.json; unknown keys raise ``KeyError``."""
    c = base_config()
    c.lock()
    known = set(_flatten(c.to_dict()))
    given = json.loads(text)
    given.pop("gcj_version", None)  # (absent from what gcj wrote before 0.2.0)
    given = _flatten(given)
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
