"""SDIM-logit (paper 003) on the logits of a frozen discriminative Fashion-MNIST ResNet10.

    python train.py --config configs/sdim_logit_fashion_mnist.py --workdir workdirs/sdim_logit_fashion_mnist \
        --config.model.base_workdir=workdirs/disc_fashion_mnist
Settings of the paper's code: alpha, beta, gamma = 0.6, 0.2, 0.2; K = 10; std >= 0.02; Adam 1e-3,
batch 128, 20 epochs; d = C. Goal: accuracy within 0.3 points of the base. `:smoke` for tests.
"""
from gcj import config as config_lib


def get_config(arg=None):
    c = config_lib.base_config()
    c.data.name = "fashion_mnist"
    c.data.val_size = 2000
    c.model.family = "sdim_logit"
    c.model.rep_dim = 10
    c.model.alpha, c.model.beta, c.model.gamma, c.model.margin = 0.6, 0.2, 0.2, 10.0
    c.model.min_std = 0.02
    c.num_epochs = 20
    return config_lib.smoke(c) if arg == "smoke" else c
