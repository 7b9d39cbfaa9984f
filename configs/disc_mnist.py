"""Discriminative ResNet10 on MNIST (paper 000's counterpart). Paper: 99.42%. Needs full MNIST (TFDS or IDX files).

    python train.py --config configs/disc_mnist.py --workdir workdirs/disc_mnist
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import paper_config


def get_config(arg=None):
    return paper_config("disc", "mnist", arg)
