"""IB-INN generative classifier on scikit-learn's 8x8 digits, for CPU: Haar entry (4x4x4), two
levels of 4 coupling blocks (widths 32, 64) with a downsampling coupling between them, DCT
pooling to 64 dimensions, one fully connected coupling (256 wide); Adam 1e-3 with warm-up for
300 epochs (lr / 10 after 200). `--config.model.ibinn.beta=B` (1, 4, 16, inf: bench/pretrain_ibinn_digits.sh).

    python train.py --config configs/ibinn_digits.py --workdir workdirs/ibinn_digits_beta1
"""
from gcj.config import ibinn_config


def get_config(arg=None):
    c = ibinn_config("digits", arg)
    if arg is None:
        c.model.ibinn.update(dict(widths=(32, 64), blocks=(4, 4), fc_width=256))
        c.optim.update(dict(name="adam", lr=1e-3, weight_decay=0.0, momentum=0.9,
                            schedule="step", decay_every_epochs=200, warmup_steps=200))
        c.num_epochs = 300
        c.batch_size = 64
        c.checkpoint_every_epochs = c.val_every_epochs = c.log_every = 20
    return c
