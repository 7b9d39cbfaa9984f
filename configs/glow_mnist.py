"""Conditional Glow classifier (paper 001) on MNIST as the paper: padded to 32x32, channels doubled
with noise, 4 levels of 12 steps with 128-channel couplings, Adam 1e-3 / 10 every 60 of 150 epochs.
The variant (paper Tab. 1: Base, Reweighted, Split prior) is a flag:

    python train.py --config configs/glow_mnist.py --workdir workdirs/glow_mnist_split \
        --config.model.glow.variant=split
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import glow_config


def get_config(arg=None):
    return glow_config("mnist", arg)
