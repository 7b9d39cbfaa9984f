"""Score-based generative classifier (paper 004) on Fashion-MNIST at 28x28, sized for a small GPU
budget: DDPM++ with nf=64, ch_mult (1, 2, 2), 2 residual blocks per level, attention at 7x7.

    python train.py --config configs/score_fashion_mnist.py --workdir workdirs/score_fashion_mnist
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import score_config


def get_config(arg=None):
    c = score_config("fashion_mnist", arg)
    if arg is None:
        c.model.score.unet.update(dict(nf=64, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(7,)))
        c.model.score.ode.num_probes = 10
        c.optim.update(dict(lr=5e-4, warmup_steps=1000, ema_decay=0.999))
        c.num_epochs = 50
        c.val_every_epochs = 10
    return c
