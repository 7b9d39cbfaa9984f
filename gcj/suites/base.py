"""What every suite is given and what it declares (``gcj.suites.SUITES`` finds them by name)."""

from __future__ import annotations

import contextlib
import dataclasses
import types
from typing import Any, Callable

import jax
import numpy as np
from matplotlib.figure import Figure

from gcj import classifier, data


@dataclasses.dataclass(frozen=True)
class Option:
    """An option of one suite: ``evaluate.py --<name>`` (its help starts with the suite's name) and
    ``Request.options.<name>``. A tuple default makes a comma-separated list flag of ``item``s,
    ``choices`` an enum; the type of the default is the flag's."""
    name: str
    default: Any
    help: str
    choices: tuple = ()
    item: type = str


@dataclasses.dataclass(frozen=True)
class Request:
    """What ``evaluate`` was asked for besides the suites (evaluate.py's flags): the shared fields
    and every suite's options (``options.<name>``, each suite's defaults where not given)."""
    options: types.SimpleNamespace = dataclasses.field(default_factory=types.SimpleNamespace)
    ood_datasets: tuple = ()
    ood_split: str = "test"
    data_dir: str | None = None
    max_images: int | None = None       # training / OOD images scored at most (a seeded subset)
    max_test_images: int | None = None  # test images at most (a seeded subset)

    def get(self, name: str):
        """A request field or a suite's option, by name."""
        return getattr(self, name) if hasattr(self, name) else getattr(self.options, name)


@dataclasses.dataclass
class Context:
    """The evaluation one workdir's suites share: loaded and scored once."""
    clf: Any                      # gcj.Classifier
    request: Request
    test: data.Split
    ll_test: np.ndarray           # [N, C] log p(x|y) of the test images
    thresholds: dict              # the fitted rejection thresholds, name -> [C]
    not_fitted: dict              # name -> why it could not be fitted
    key: jax.Array
    log: Callable = print
    test_indices: np.ndarray | None = None  # the test images' positions in the test set (None: all)
    train: data.Split | None = None     # (scored when a requested suite needs_train)
    ll_train: np.ndarray | None = None
    arrays: dict = dataclasses.field(default_factory=dict)  # what a suite keeps for its plot
    scores_dir: str | None = None  # where scoring keeps its finished batches (resumable), or None

    def log_likelihoods(self, images: np.ndarray, key: jax.Array, name: str) -> np.ndarray:
        """``[N, C]`` log p(x|y) of ``images`` by the classifier (``batched_log_likelihoods``),
        resumable under ``scores_dir`` as ``<name>.npz``."""
        return classifier.batched_log_likelihoods(self.clf, images, self.batch_size, key,
                                                  resume=classifier.resume_path(self.scores_dir, name))

    @property
    def config(self):
        return self.clf.config

    @property
    def batch_size(self) -> int:
        return self.clf.config.eval_batch_size

    @property
    def percentile_thresholds(self) -> dict:
        """The training-percentile thresholds in the config's order (``thresholds.percentiles``:
        'p1', 'p2' by default), those the robustness suites report; the first is the one their
        rejection-aware attacks and accepted images use."""
        fitted = self.clf.thresholds or {}
        names = [f"p{p:g}" for p in self.config.thresholds.percentiles]
        return {n: fitted[n] for n in names if n in fitted}


@dataclasses.dataclass(frozen=True)
class Suite:
    """A suite: ``run(ctx) -> block`` (JSON-able, the report's ``<name>`` entry), ``table(block)``
    -> lines of the printed tables (``table(block, report)``), ``plot(block, ctx, directory)`` -> PNGs.
    ``options``: its own ``Option``s; ``reads``: the shared request fields it reads (both recorded
    in the report); ``check(request)`` refuses a request before anything is loaded,
    ``check_model(clf)`` a model before anything is scored."""
    name: str
    run: Callable[[Context], dict]
    table: Callable[[dict, dict], list]
    plot: Callable[[dict, Context, str], None] | None = None
    options: tuple = ()             # Option, ...
    reads: tuple = ()               # names of Request fields
    needs_train: bool = False       # training images scored (percentile curves, tests, attacks)
    needs_thresholds: bool = False  # the workdir's thresholds.json
    check: Callable[[Request], None] = lambda request: None
    # (the loaded Classifier) -> None, or raises: refuses a model the suite cannot run on before
    # anything is scored
    check_model: Callable[[Any], None] = lambda clf: None


def pct(v) -> str:
    return f"{100 * v:6.2f}%"


@contextlib.contextmanager
def figure(path, *grid, figsize):
    """The axes of a new figure, laid out and saved to ``path`` (PNG) on exit. A plain
    ``matplotlib.figure.Figure``: neither pyplot's global state nor a notebook's backend is touched."""
    fig = Figure(figsize=figsize)
    axes = fig.subplots(*grid)
    yield axes
    fig.tight_layout()
    fig.savefig(path, dpi=100)
