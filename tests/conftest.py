"""Shared fixtures: strict JAX, one tiny trained workdir for the whole session."""
import os
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
jax.config.update("jax_numpy_rank_promotion", "raise")


def smoke_config(name="demo", **overrides):
    """A configs/<name>.py:smoke config with flattened ``overrides`` ('optim.lr': 1.0, ...)."""
    from ml_collections import config_flags  # noqa: F401  (the same loader train.py uses)
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("smoke")
    c.update_from_flattened_dict(overrides)
    c.lock()
    return c


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory):
    """A 2-epoch SDIM smoke run on MNIST-5k, with thresholds (shared: tests only read it)."""
    from gcj.train import train_and_evaluate

    workdir = str(tmp_path_factory.mktemp("sdim_smoke"))
    clf = train_and_evaluate(smoke_config(), workdir)
    return workdir, clf
