"""Discriminative ResNet26 on SVHN (paper 000's counterpart). Needs svhn_cropped prepared with TFDS.

    python train.py --config configs/disc_svhn.py --workdir workdirs/disc_svhn
Append `:smoke` to the config path for a seconds-long run (tests).
"""
from gcj.recipes import paper_config


def get_config(arg=None):
    return paper_config("disc", "svhn", arg)
