"""IB-INN generative classifier on Fashion-MNIST, small enough for 2 CPU cores: Haar entry
(14x14x4), levels of 4 coupling blocks at widths 16 and 32 with a downsampling coupling between
them (7x7x16), DCT pooling to 784 dimensions, one fully connected coupling (256 wide); Adam 1e-3
with warm-up, 30 epochs (lr / 10 after 20; ~45 s per epoch on 2 CPU cores). `--config.model.ibinn.beta=B`.

    python train.py --config configs/ibinn_fashion_mnist.py --workdir workdirs/ibinn_fashion_mnist
"""
from gcj.recipes import ibinn_config


def get_config(arg=None):
    c = ibinn_config("fashion_mnist", arg)
    if arg is None:
        c.model.ibinn.update(dict(widths=(16, 32), blocks=(4, 4), fc_width=256))
        c.optim.update(dict(name="adam", lr=1e-3, weight_decay=0.0, schedule="step",
                            decay_every_epochs=20, warmup_steps=200,
                            prior_lr_factor=0.0))
        c.num_epochs = 30
    return c
