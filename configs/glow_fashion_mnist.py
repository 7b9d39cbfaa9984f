"""Conditional Glow classifier (paper 001's layout) on Fashion-MNIST, small enough for 2 CPU cores:
padded to 32x32, channels doubled with noise, 4 levels of 4 steps with 32-channel couplings,
Adam 1e-3 with warm-up, 20 epochs (lr / 10 after 12). `--config.model.glow.variant=base|reweighted|split`.

    python train.py --config configs/glow_fashion_mnist.py --workdir workdirs/glow_fashion_mnist_split \
        --config.model.glow.variant=split
"""
from gcj.recipes import glow_config


def get_config(arg=None):
    c = glow_config("fashion_mnist", arg)
    if arg is None:
        c.model.glow.update(dict(levels=4, steps=4, width=32))
        c.num_epochs = 20
        c.optim.decay_every_epochs = 12
    return c
