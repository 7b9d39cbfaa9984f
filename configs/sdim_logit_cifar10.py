"""SDIM-logit (paper 003) on the logits of a frozen gcj discriminative CIFAR-10 model (the paper
used a ResNet-18 base: 95.16% -> 95.01%). Code settings: alpha, beta, gamma = 0.6, 0.2, 0.2; K = 10;
std >= 0.02; Adam 1e-3, batch 128, 20 epochs; d = C.

    python train.py --config configs/sdim_logit_cifar10.py --workdir workdirs/sdim_logit_cifar10 \
        --config.model.sdim_logit.base_workdir=workdirs/disc_cifar10
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import paper_config


def get_config(arg=None):
    c = paper_config("sdim_logit", "cifar10", arg)
    if arg is None:
        c.num_epochs = 20  # the reference code's
    return c
