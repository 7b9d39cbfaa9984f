"""Score-based generative classifier (paper 004) on scikit-learn's 8x8 digits, small enough to train
on 2 CPU cores: DDPM++ with nf=16, ch_mult (1, 2), 1 residual block per level, attention at 4x4
(189k parameters); VP SDE, likelihood weighting with importance sampling, Adam 1e-3 cosine, EMA 0.999,
2000 epochs of 1300 images (40k steps, ~30 min on 2 CPU cores).
Likelihoods with ONE Rademacher probe by default (CPU budget: 10 classes x probes x ~150 network
evaluations per image); bench/sbgc_convergence.py reports accuracy and log p against 1..30 probes.

    python train.py --config configs/score_digits.py --workdir workdirs/score_digits
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import score_config


def get_config(arg=None):
    c = score_config("digits", arg)
    if arg is None:
        c.model.score.unet.update(dict(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,)))
        c.model.score.ode.num_probes = 1
        c.optim.update(dict(lr=1e-3, warmup_steps=200, ema_decay=0.999, schedule="cosine"))
        c.batch_size = 64
        c.num_epochs = 2000
        c.val_every_epochs = 0
        c.checkpoint_every_epochs = 20
        c.log_every = 20
    return c
