"""IB-INN generative classifier (Ardizzone et al.'s MNIST setup, paper 002's training): Haar
entry, levels of 24 coupling blocks at widths 32 and 64, DCT pooling, one fully connected
coupling; SGD 0.07 with lr / 10 at epochs 150, 250, 350 of 450. `--config.model.ibinn.beta=B`.

    python train.py --config configs/ibinn_mnist.py --workdir workdirs/ibinn_mnist
"""
from gcj.recipes import ibinn_config


def get_config(arg=None):
    return ibinn_config("mnist", arg)
