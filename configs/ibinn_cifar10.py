"""IB-INN generative classifier on CIFAR-10 as Ardizzone et al.: coupling widths (16, 32, 64),
blocks (8, 24, 24), downsampling couplings between levels, DCT pooling, one fully connected
coupling (1024 wide, dropout 0.5); SGD 0.07, lr / 10 at epochs 150, 250, 350 of 450.
Their CIFAR-10 result: 89.73% at 5.25 bits/dim (beta = 1). `--config.model.ibinn.beta=B`.

    python train.py --config configs/ibinn_cifar10.py --workdir workdirs/ibinn_cifar10
"""
from gcj.recipes import ibinn_config


def get_config(arg=None):
    return ibinn_config("cifar10", arg)
