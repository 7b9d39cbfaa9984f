"""The README demo (command 1): SDIM on Fashion-MNIST, sized to train in half a minute on 2 CPU
cores. Then evaluate.py shows it, and the committed paper-size model rejecting MNIST-5k digits as
out-of-distribution (paper 000's direction, Tab. 6).

A ResNet10 of half the paper's width (8/16/32/64 filters) on the native 28x28 images, one epoch
of a cosine-decayed Adam 2e-3 at batch 32 on 16000 training images (2000 more held out:
validation accuracy and the conformal thresholds): ~80% accuracy, but too little training for
its likelihoods to reject MNIST (they favour the simpler digits: AUROC ~40%; see the README).
`pretrained/sdim_fashion_mnist` is the paper-size model (15 epochs), which does.

    python train.py --config configs/demo.py --workdir workdirs/demo
    python evaluate.py --workdir workdirs/demo --suites clean,rejection,calibration
    python evaluate.py --workdir pretrained/sdim_fashion_mnist --ood_dataset mnist5k --ood_split all --max_images 5000
"""
from gcj.recipes import paper_config


def get_config(arg=None):
    c = paper_config("sdim", "fashion_mnist", arg)
    if arg is None:
        c.data.image_size = 28
        c.data.max_train_examples = 18000
        c.model.sdim.width = 8
        c.num_epochs = 1
        c.batch_size, c.optim.lr = 32, 2e-3
        c.log_every = 50
    else:  # the tests' smoke model, on MNIST-5k (no apt package needed)
        c.data.name = "mnist5k"
    c.optim.schedule = "cosine"
    return c
