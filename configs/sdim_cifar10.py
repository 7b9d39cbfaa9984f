"""SDIM ResNet26 on CIFAR-10 (paper 000). Paper: 92.53%; CIFAR10->SVHN detection 94.24% / 95.81%.
Needs CIFAR-10 (TFDS, or the official binary files in data.data_dir).

    python train.py --config configs/sdim_cifar10.py --workdir workdirs/sdim_cifar10
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import paper_config


def get_config(arg=None):
    return paper_config("sdim", "cifar10", arg)
