"""SDIM ResNet10 on MNIST (paper 000). Paper: 99.55% clean accuracy. Needs full MNIST (TFDS or IDX files in data.data_dir).

    python train.py --config configs/sdim_mnist.py --workdir workdirs/sdim_mnist
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import paper_config


def get_config(arg=None):
    return paper_config("sdim", "mnist", arg)
