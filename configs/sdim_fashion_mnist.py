"""SDIM ResNet10 on Fashion-MNIST (paper 000; 32x32, d=64, Adam 1e-3, batch 128, 100 epochs).
Paper: 94.58% clean accuracy; 1st-percentile rejection: acc-left 96.45% at 4.63% rejected;
Fashion->MNIST detection 99.36% / 99.64% (1st / 2nd percentile).

    python train.py --config configs/sdim_fashion_mnist.py --workdir workdirs/sdim_fashion_mnist
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import paper_config


def get_config(arg=None):
    return paper_config("sdim", "fashion_mnist", arg)
