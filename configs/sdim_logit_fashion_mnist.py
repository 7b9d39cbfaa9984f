"""SDIM-logit (paper 003) on the logits of a frozen discriminative Fashion-MNIST ResNet10.
Goal: accuracy within 0.3 points of the base.

    python train.py --config configs/sdim_logit_fashion_mnist.py --workdir workdirs/sdim_logit_fashion_mnist \
        --config.model.sdim_logit.base_workdir=workdirs/disc_fashion_mnist
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import paper_config


def get_config(arg=None):
    c = paper_config("sdim_logit", "fashion_mnist", arg)
    if arg is None:
        c.num_epochs = 20  # the reference code's
    return c
