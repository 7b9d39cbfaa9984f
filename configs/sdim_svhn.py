"""SDIM ResNet26 on SVHN (paper 000). Paper: 95.74%. Needs svhn_cropped prepared with TFDS.

    python train.py --config configs/sdim_svhn.py --workdir workdirs/sdim_svhn
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import paper_config


def get_config(arg=None):
    return paper_config("sdim", "svhn", arg)
