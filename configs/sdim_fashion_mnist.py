"""SDIM ResNet10 on Fashion-MNIST (paper 000; 32x32, d=64, Adam 1e-3, batch 128, 100 epochs).

    python train.py --config configs/sdim_fashion_mnist.py --workdir workdirs/sdim_fashion_mnist
Paper: 94.58% clean accuracy; 1st-percentile rejection: acc-left 96.45% at 4.63% rejected;
Fashion->MNIST detection 99.36% / 99.64% (1st / 2nd percentile). `:smoke` for a seconds-long run.
"""
from gcj import config as config_lib


def get_config(arg=None):
    c = config_lib.base_config()
    c.data.name = "fashion_mnist"
    c.data.val_size = 2000
    c.model.family = "sdim"
    return config_lib.smoke(c) if arg == "smoke" else c
