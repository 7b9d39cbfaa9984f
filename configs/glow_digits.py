"""Conditional Glow classifier (paper 001's layout) on scikit-learn's 8x8 digits for CPU: channels
doubled with noise, 3 levels (8x8, 4x4, 2x2) of 4 steps with 32-channel couplings, Adam 1e-3 with
warm-up, 300 epochs (lr / 10 after 200). `--config.model.glow.variant=base|reweighted|split`.

    python train.py --config configs/glow_digits.py --workdir workdirs/glow_digits_split \
        --config.model.glow.variant=split
"""
from gcj.recipes import glow_config


def get_config(arg=None):
    c = glow_config("digits", arg)
    if arg is None:
        c.model.glow.update(dict(levels=3, steps=4, width=32))
        c.num_epochs = 300
        c.optim.decay_every_epochs = 200
        c.optim.warmup_steps = 200
        c.checkpoint_every_epochs = 20
        c.val_every_epochs = 20
        c.log_every = 20
    return c
