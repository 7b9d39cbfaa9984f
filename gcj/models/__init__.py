"""The family registry: each family is declared once, in its module, as a ``Family``
(``gcj/models/family.py``); gcj finds it here by ``config.model.family`` and by nothing else.

A new family: a module here with its linen module and ``FAMILY = Family(...)``, and its line below.
"""
from gcj.errors import UserError
from gcj.models import flow, ibinn, score, sdim
from gcj.models.family import Family

FAMILIES: dict[str, Family] = {f.name: f for f in (
    sdim.SDIM_FAMILY,        # paper 000: SDIM
    sdim.DISC_FAMILY,        # its discriminative counterpart (logits), SDIM-logit's base
    sdim.SDIM_LOGIT_FAMILY,  # paper 003: SDIM on a frozen classifier's logits
    score.FAMILY,            # paper 004: score-based, likelihoods by the probability-flow ODE
    flow.FAMILY,             # paper 001: class-conditional Glow
    ibinn.FAMILY,            # paper 002: IB-INN
)}


def get(name: str) -> Family:
    """The registered family called ``name``; a ValueError naming the known ones otherwise."""
    if name not in FAMILIES:
        raise UserError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]
