"""Discriminative ResNet26 on CIFAR-10 (paper 000's counterpart). Needs CIFAR-10 (TFDS or binary files).

    python train.py --config configs/disc_cifar10.py --workdir workdirs/disc_cifar10
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import paper_config


def get_config(arg=None):
    return paper_config("disc", "cifar10", arg)
