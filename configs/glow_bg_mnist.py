"""Reweighted conditional Glow (paper 001 §4.5, Tab. 3) on BG-MNIST: MNIST-5k digits over natural
backgrounds blurred by X pixels (`bg_mnist_0`, `bg_mnist_1`, `bg_mnist_5`; `mnist5k` for plain
digits), sized for 2 CPU cores: padded to 32x32, 3 levels of 4 steps with 32-channel couplings,
Adam 1e-3 with 100 warm-up steps, 40 epochs of 3500 images (lr / 10 after 30; ~9 s per epoch on 2
CPU cores); 500 held out.

    python train.py --config configs/glow_bg_mnist.py --workdir workdirs/glow_bg_mnist_0 \
        --config.data.name=bg_mnist_0
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import glow_config


def get_config(arg=None):
    c = glow_config("mnist", arg)
    c.data.name = "bg_mnist_0"
    c.data.image_size, c.data.resize = 32, "pad"  # padded by the data (so bits/dim count 32x32)
    c.model.glow.update(dict(variant="reweighted", pad_to=0))
    if arg is None:
        c.data.val_size = 500
        c.model.glow.update(dict(levels=3, steps=4, width=32))
        c.num_epochs = 40
        c.optim.update(dict(decay_every_epochs=30, warmup_steps=100))
        c.checkpoint_every_epochs = 1
        c.log_every = 20
    return c
