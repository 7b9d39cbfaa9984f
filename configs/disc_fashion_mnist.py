"""Discriminative ResNet10 on Fashion-MNIST (paper 000's counterpart of SDIM; cross-entropy).

    python train.py --config configs/disc_fashion_mnist.py --workdir workdirs/disc_fashion_mnist
Paper: 94.25% clean accuracy. `:smoke` for a seconds-long run.
"""
from gcj import config as config_lib


def get_config(arg=None):
    c = config_lib.base_config()
    c.data.name = "fashion_mnist"
    c.data.val_size = 2000
    c.model.family = "disc"
    return config_lib.smoke(c) if arg == "smoke" else c
