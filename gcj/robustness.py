"""Deprecated since gcj 0.5.0, removed in 0.6.0: each suite owns its evaluation, in
``gcj.suites.<name>`` (attacks by name in ``gcj.attacks.ATTACKS``). This module re-exports what
gcj 0.4 offered here that still exists."""
import warnings

from gcj.suites.adversarial import (  # noqa: F401
    ENSEMBLES, LINF_EPS, AttackSpec, attack_metrics, default_attacks, expand, sanity_checks, threat, threat_name,
    worst_case)
from gcj.suites.corruptions import corrupted_test_set, mce  # noqa: F401
from gcj.suites.interpolation import RECORDED_PAIRS  # noqa: F401

warnings.warn("gcj.robustness is deprecated: the suites' computations live in gcj.suites.adversarial, "
              "gcj.suites.corruptions, gcj.suites.interpolation and gcj.suites.nll_gap", DeprecationWarning,
              stacklevel=2)
