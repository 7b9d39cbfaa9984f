"""Runs evaluation suites on a train.py workdir: the classifier is loaded and the test (and where
needed training) images are scored once into ``[N, C]`` class log-likelihoods; each suite
(``gcj.suites``) reads that one context. Every family is evaluated the same way."""

from __future__ import annotations

import json
import os
import re
import shutil
import types

import jax
import numpy as np

from gcj import checkpoint, classifier, data, keys, lock, metric_writer, rejection, stopwatch
from gcj.errors import NotFoundError, UserError
from gcj.suites import DEFAULT_SUITES as _DEFAULT, SUITES as _REGISTRY, Context, Request
from gcj.version import __version__, provenance

DEFAULT_SUITES = _DEFAULT
SUITES = tuple(_REGISTRY)


def suite_options(given: dict | None = None) -> types.SimpleNamespace:
    """Every suite's options: their declared defaults, updated by ``given`` (unknown names refused)."""
    defaults = {o.name: o.default for s in _REGISTRY.values() for o in s.options}
    unknown = set(given or {}) - set(defaults)
    if unknown:
        raise UserError(f"unknown suite options {sorted(unknown)}; known: {', '.join(defaults)}")
    return types.SimpleNamespace(**{**defaults, **(given or {})})


def evaluate(workdir: str, suites=DEFAULT_SUITES, ood_datasets=(), out: str | None = None,
             ood_split: str = "test", data_dir: str | None = None, plots: bool = True,
             max_images: int | None = None, options: dict | None = None,
             log=print, max_test_images: int | None = None, overrides: dict | None = None,
             save_log_likelihoods: bool = False, resumable: bool = False) -> dict:
    """Runs ``suites`` on a train.py workdir; writes ``out`` (JSON) and PNG plots beside it.

    ``max_images`` caps the sets scored besides the test set (the training scores of the rejection
    curve and typicality tests, each OOD set) by a seeded random subset, for families whose
    likelihood is expensive (the score family's ODE); the thresholds are those fitted at training.
    ``options``: the suites' options by name (``gcj.suites.<suite>`` declares them, with their
    defaults). ``overrides``: config keys changed for this evaluation (``classifier.load``; e.g.
    the score family's ``model.score.ode.num_probes``). The report records the options each
    suite ran with, the overrides and the config evaluated. ``save_log_likelihoods``: also the test
    images' ``[N, C]`` log-likelihoods, their positions in the test set and labels, in
    ``log_likelihoods_path(out)`` (for analyses that must not score them again). ``resumable``:
    the test, training, OOD and corrupted sets are scored in batches kept under ``scores_dir(out)``
    (``batched_log_likelihoods``' ``resume``), and the adversarial suite keeps each attack's batches
    and judged images there, so a stopped evaluation run again with the same arguments resumes at
    its next batch; the folder is removed once the report is written."""
    classifier.read_config(workdir)  # a missing workdir is the first thing to say
    primary = jax.process_index() == 0  # (several processes: each computes the report, the first writes it)
    log = log if primary else (lambda *args, **kw: None)
    clock = stopwatch.Stopwatch()
    request = Request(suite_options(options), tuple(ood_datasets), ood_split, data_dir,
                      max_images, max_test_images)
    for name, v in (("max_images", max_images), ("max_test_images", max_test_images)):
        if v is not None and v < 2:
            raise UserError(f"{name} must be at least 2, got {v}")
    unknown = set(suites) - set(_REGISTRY)
    if unknown:
        raise UserError(f"unknown suites {sorted(unknown)}; known: {', '.join(_REGISTRY)}")
    chosen = [s for name, s in _REGISTRY.items() if name in suites]
    for suite in chosen:  # refused before any work
        suite.check(request)
    clf = classifier.load(workdir, overrides=overrides)
    training = lock.holder(workdir)
    if training and lock.alive(training):  # (orbax lists only complete checkpoints)
        with checkpoint.manager(workdir) as mgr:
            log(f"{workdir} is still being trained by {lock.describe(training)}: evaluating its newest "
                f"complete checkpoint, step {mgr.latest_step()}")
    for suite in chosen:
        suite.check_model(clf)
    if clf.thresholds is None and any(s.needs_thresholds for s in chosen):
        raise NotFoundError(f"{workdir} has no thresholds.json: training did not finish")
    cfg = clf.config
    bs = cfg.eval_batch_size
    if resumable and not out:
        raise UserError("a resumable evaluation keeps its scores beside its report: give out")
    kept = scores_dir(out) if resumable else None
    clock.lap("load")
    key = jax.random.key(cfg.seed)
    test, test_indices = data.subset(data.load_dataset(cfg.data, "test"), max_test_images,
                                keys.named(key, "test", "subset"), with_indices=True)
    ll_test = classifier.batched_log_likelihoods(clf, test.images, bs, keys.named(key, "test", "likelihood"),
                                                 resume=classifier.resume_path(kept, "test"))
    thresholds, not_fitted = rejection.split_fitted(clf.thresholds or {}, cfg.thresholds.conformal_alpha,
                                                    cfg.data.val_size)
    ctx = Context(clf, request, test, ll_test, thresholds, not_fitted, key, log, test_indices, scores_dir=kept)
    if any(s.needs_train for s in chosen):
        ctx.train = data.subset(data.load_train_val(cfg)[0], max_images, keys.named(key, "train", "subset"))
        ctx.ll_train = ctx.log_likelihoods(ctx.train.images, keys.named(key, "train", "likelihood"), "train")
    clock.lap("scoring")
    if save_log_likelihoods and out and primary:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        np.savez(log_likelihoods_path(out), test=ll_test, test_labels=test.labels,
                 test_indices=np.arange(len(test.labels)) if test_indices is None else test_indices,
                 batch_size=bs, seed=cfg.seed)
    # the workdir relative to the report (or as given): no path of this machine in a report
    where = os.path.relpath(os.path.abspath(workdir), os.path.dirname(os.path.abspath(out))) if out else workdir
    report = dict(gcj_version=__version__, provenance=provenance(), workdir=where,
                  model=os.path.basename(os.path.abspath(workdir)), dataset=cfg.data.name,
                  family=cfg.model.family, num_test=int(len(test.labels)))
    if not_fitted:
        report["thresholds_not_fitted"] = not_fitted
    if overrides:
        report["overrides"] = {k: str(v) for k, v in overrides.items()}
    if ctx.train is not None:
        report["num_train_scored"] = int(len(ctx.train.labels))
    plot_dir = os.path.dirname(os.path.abspath(out)) if out and primary else None
    if plot_dir:
        os.makedirs(plot_dir, exist_ok=True)
    images = {}  # the PNGs written: TensorBoard images beside the report too
    for suite in chosen:
        report[suite.name] = suite.run(ctx)
        if plots and plot_dir and suite.plot:
            before = _pngs(plot_dir)
            suite.plot(report[suite.name], ctx, plot_dir)
            images.update({f"{suite.name}/{os.path.splitext(f)[0]}": os.path.join(plot_dir, f)
                           for f, t in _pngs(plot_dir).items() if before.get(f) != t})
    if images:
        metric_writer.write_images(plot_dir, images)
    clock.lap("suites")
    report["seconds"] = clock.laps
    report["options"] = {s.name: {o: _jsonable(request.get(o)) for o in
                                  (*s.reads, *(opt.name for opt in s.options))}
                         for s in chosen if s.reads or s.options}
    report["config"] = json.loads(cfg.to_json())
    if out and primary:
        with open(out, "w") as f:
            f.write(dumps(report))
        if kept:
            shutil.rmtree(kept, ignore_errors=True)
    return report


def scores_dir(out: str) -> str:
    """Where a resumable evaluation (``evaluate(..., resumable=True)``) of the report ``out``
    keeps its scored batches until the report is written: ``<name>_scores/`` beside it."""
    return os.path.splitext(out)[0] + "_scores"


def log_likelihoods_path(out: str) -> str:
    """Where ``evaluate(..., save_log_likelihoods=True)`` writes the test log-likelihoods of the
    report ``out``: beside it, ``<name>_log_likelihoods.npz``. Test image ``test_indices[i]`` of
    batch ``i // batch_size`` was scored with the key ``fold_in(keys.named(key(seed), 'test',
    'likelihood'), batch_size * (i // batch_size))``."""
    return os.path.splitext(out)[0] + "_log_likelihoods.npz"


_NUMBERS = re.compile(r"\[\s+([-+\d.eE,\sNaIfinty]+?)\s+\]")


def dumps(report: dict) -> str:
    """``report`` as indented JSON with each list of numbers on one line (a curve of 100 values
    is one line, not 100). Non-integer numbers in lists (per-image values, curves: float32 on the
    device) are written at float32 precision, in its shortest form; single numbers keep float64."""
    return _NUMBERS.sub(lambda m: "[" + ", ".join(map(_float32, m.group(1).split(","))) + "]",
                        json.dumps(report, indent=2))


def _float32(token: str) -> str:
    """A JSON number token as the shortest text of its float32 value (integers, NaN, ±Infinity as they are)."""
    t = token.strip()
    if not any(c in t for c in ".eE") or t.lstrip("-") in ("NaN", "Infinity"):
        return t
    with np.errstate(over="ignore"):
        v = np.float32(t)
    return repr(float(str(v))) if np.isfinite(v) else t


def _pngs(directory: str) -> dict:
    """The PNG files in ``directory`` -> their modification times."""
    return {f: os.stat(os.path.join(directory, f)).st_mtime_ns for f in os.listdir(directory) if f.endswith(".png")}


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


def format_tables(report: dict) -> str:
    """Plain-text tables of a report (what evaluate.py prints)."""
    lines = [f"{report['family']} on {report['dataset']} ({report['num_test']} test images): "
             f"{report.get('model') or os.path.basename(report['workdir'])}"]
    for name, suite in _REGISTRY.items():
        if name in report:
            lines += suite.table(report[name], report)
    if "seconds" in report:
        lines.append(f"time: {stopwatch.format_laps(report['seconds'])}")
    return "\n".join(lines)
