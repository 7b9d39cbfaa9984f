"""Discriminative ResNet10 on Fashion-MNIST (paper 000's counterpart of SDIM). Paper: 94.25%.

    python train.py --config configs/disc_fashion_mnist.py --workdir workdirs/disc_fashion_mnist
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import paper_config


def get_config(arg=None):
    return paper_config("disc", "fashion_mnist", arg)
