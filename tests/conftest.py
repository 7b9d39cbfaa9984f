"""Shared fixtures: strict JAX, one tiny trained workdir for the whole session."""
import importlib.util
import os
import sys
import tempfile

# One XLA compilation cache for the run, shared by the xdist workers and the train.py /
# evaluate.py subprocesses: many tests build the same small models (a new module object is a new
# jit trace, but the same XLA program), and a cache hit skips the compilation that dominates this
# suite on CPU. Fresh for every run (keyed by xdist's run id), so timings stay a fresh clone's.
# Set before jax is imported: jax reads these at import.
_run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"pid{os.getpid()}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"gcj-tests-xla-{_run_id}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The suite is bound by XLA:CPU's compilation (LLVM), not by running what it compiles: without
# LLVM's optimizations it takes ~25% less wall time on 2 cores (7 min 45 s -> 5 min 52 s here).
# The maths is the same; the tests' float tolerances must hold under any code generation anyway.
# (The benches and the two README commands compile with XLA's defaults, and so does a test whose
# run, not its compilation, is the cost: it drops FAST_COMPILE from a subprocess's XLA_FLAGS.)
FAST_COMPILE = "--xla_backend_optimization_level=0"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
jax.config.update("jax_numpy_rank_promotion", "raise")
# (again, in case a pytest plugin imported jax before this file)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
jax.config.update("jax_persistent_cache_min_entry_size_bytes",
                  int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))

from gcj import checkpoint  # noqa: E402
from gcj.train import train_and_evaluate  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test of 15 s or more on 2 CPU cores (runs first)")


def pytest_collection_modifyitems(config, items):
    """The slow tests first (a stable sort): xdist then deals them to its workers at the start, and
    the workers finish together instead of one waiting on a long test dealt last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def load_module(path):
    """The Python file at ``path`` (relative to the repository: a config, a bench script) as a module."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(name, arg=None):
    """``configs/<name>.py``'s ``get_config(arg)``."""
    return load_module(f"configs/{name}.py").get_config(arg)


def checkpoint_steps(workdir):
    """The steps of a workdir's complete checkpoints, read by a manager closed afterwards."""
    with checkpoint.manager(workdir) as mgr:
        return sorted(mgr.all_steps())


def smoke_config(name="demo", **overrides):
    """A configs/<name>.py:smoke config with flattened ``overrides`` ('optim.lr': 1.0, ...)."""
    c = load_config(name, "smoke")
    c.update_from_flattened_dict(overrides)
    c.lock()
    return c


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory):
    """A 2-epoch SDIM smoke run on MNIST-5k, with thresholds (shared: tests only read it)."""
    workdir = str(tmp_path_factory.mktemp("sdim_smoke"))
    clf = train_and_evaluate(smoke_config(), workdir)
    return workdir, clf
