"""Conditional Glow classifier (paper 001) on CIFAR-10 as the paper: 4 levels of 16 steps with
256-channel couplings, channels doubled with noise, random crops (padding 4) and flips, Adam 1e-3
/ 10 every 60 of 150 epochs. GPU-sized; `--config.model.glow.variant=base|reweighted|split`.

    python train.py --config configs/glow_cifar10.py --workdir workdirs/glow_cifar10_split \
        --config.model.glow.variant=split
"""
from gcj.recipes import glow_config


def get_config(arg=None):
    return glow_config("cifar10", arg)
