"""IB-INN generative classifier on scikit-learn's 8x8 digits, for CPU: Haar entry (4x4x4), two
levels of 4 coupling blocks (widths 8, 16; subnet dropout 0.2) with a downsampling coupling
between them, DCT pooling to 64 dimensions, one fully connected coupling (64 wide, dropout 0.5);
Adam 1e-3 with warm-up for 150 epochs (lr / 10 after 100). `--config.model.ibinn.beta=B`
(1, 4, 16, inf: see bench/pretrain_sweep.sh). Chosen by validation accuracy among four sizes
(wider subnets overfit the 1300 training images: 93-95% validation accuracy).

    python train.py --config configs/ibinn_digits.py --workdir workdirs/ibinn_digits_beta1
"""
from gcj.recipes import ibinn_config


def get_config(arg=None):
    c = ibinn_config("digits", arg)
    if arg is None:
        c.model.ibinn.update(dict(widths=(8, 16), blocks=(4, 4), fc_width=64, dropout=0.2))
        c.optim.update(dict(name="adam", lr=1e-3, weight_decay=0.0, momentum=0.9,
                            schedule="step", decay_every_epochs=100, warmup_steps=200,
                            prior_lr_factor=0.0))
        c.num_epochs = 150
        c.batch_size = 64
        c.checkpoint_every_epochs = c.val_every_epochs = c.log_every = 10
    return c
