"""SBGC of paper 004 on CIFAR-10: DDPM++ (nf=128, ch_mult (1, 2, 2, 2), 4 residual blocks, attention
at 16x16, dropout 0.1), VP SDE, likelihood weighting with importance sampling, Adam 2e-4 with 5000
warm-up steps, gradient clipping 1, EMA 0.9999, batch 128, random flips, ~950k steps (2700 epochs
of 45k images). Likelihoods with 30 Rademacher probes, rtol = atol = 1e-5, eps = 1e-5.
Paper: 95.04% accuracy at 3.11 bits/dim (days on GPUs).

    python train.py --config configs/score_cifar10.py --workdir workdirs/score_cifar10
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import score_config


def get_config(arg=None):
    c = score_config("cifar10", arg)
    if arg is None:
        c.num_epochs = 2700
        c.val_every_epochs = 50
    return c
