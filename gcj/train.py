"""The one training loop: every family trains through its module's ``losses`` method.

Workdir: ``config.json``, ``metrics.jsonl`` (and the same as TensorBoard event files),
``checkpoints/`` (orbax), ``thresholds.json``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import threading
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from gcj import checkpoint, classifier, data, keys, lock, metric_writer, models, rejection, stopwatch
from gcj import config as config_lib
from gcj.errors import NonFiniteError, Preempted, UserError


def log(text: str) -> None:
    """A line of the training log: printed by the first process only."""
    if jax.process_index() == 0:
        print(text, flush=True)


def make_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int, num_epochs: int):
    """The learning rate as an optax schedule of the step, warm-up included."""
    total = max(steps_per_epoch * num_epochs, 1)
    if cfg.schedule == "constant":
        lr = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, cfg.warmup_steps, total)
    elif cfg.schedule == "step":  # divided by 10 every decay_every_epochs (paper 001: 60)
        lr = optax.exponential_decay(cfg.lr, max(cfg.decay_every_epochs, 1) * steps_per_epoch,
                                     0.1, staircase=True)
    elif cfg.schedule == "milestones":  # divided by 10 at each of these epochs (IB-INN)
        lr = optax.piecewise_constant_schedule(
            cfg.lr, {int(m) * steps_per_epoch: 0.1 for m in cfg.milestones})
    else:
        raise UserError(f"unknown schedule {cfg.schedule!r}; use 'constant', 'cosine', 'step' "
                        "or 'milestones'")
    if cfg.warmup_steps:  # the decay counts from the end of the warm-up
        lr = optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps), lr],
                                  [cfg.warmup_steps])
    return lr


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int, num_epochs: int,
                   params, frozen=lambda path: False) -> optax.GradientTransformation:
    """optax optimizer and schedule; parameters whose path (a tuple of names) is ``frozen`` stay
    as they are (a family's ``frozen``: SDIM-logit's base)."""
    lr = make_schedule(cfg, steps_per_epoch, num_epochs)
    if cfg.name == "adam":
        tx = optax.adamw(lr, weight_decay=cfg.weight_decay) if cfg.weight_decay else optax.adam(lr)
    elif cfg.name == "sgd":
        tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                         optax.sgd(lr, momentum=cfg.momentum))
    else:
        raise UserError(f"unknown optimizer {cfg.name!r}; use 'adam' or 'sgd'")
    if cfg.grad_clip:
        tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx)
    def group(path, _):
        names = [getattr(k, "key", None) for k in path]
        if frozen(tuple(names)):
            return "frozen"
        return "prior" if cfg.prior_lr_factor and names[:1] == ["prior"] else "train"

    transforms = {"train": tx, "frozen": optax.set_to_zero()}
    if cfg.prior_lr_factor:  # IB-INN: the class means by plain SGD at a multiple of the lr
        transforms["prior"] = optax.sgd(lambda step: cfg.prior_lr_factor * lr(step))
    return optax.multi_transform(transforms, jax.tree_util.tree_map_with_path(group, params))


def init_state(variables, tx, ema_decay: float = 0.0) -> dict:
    """The training state: step, parameters, BN statistics ({} if none), optimizer state, and an
    EMA of the parameters when ``ema_decay`` > 0."""
    state = dict(step=jnp.zeros((), jnp.int32), params=variables["params"],
                 batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(variables["params"]))
    if ema_decay:
        state["ema"] = jax.tree_util.tree_map(jnp.copy, variables["params"])  # own buffers: donated
    return state


def eval_variables(state) -> dict:
    """The variables a classifier evaluates with: the EMA parameters when kept, BN statistics
    when the family has them."""
    v = dict(params=state.get("ema", state["params"]))
    if state["batch_stats"]:
        v["batch_stats"] = state["batch_stats"]
    return v


def _train_item(state) -> dict:
    """What a checkpoint needs besides the evaluation variables to resume training exactly."""
    t = dict(step=state["step"], opt_state=state["opt_state"])
    if "ema" in state:
        t["params"] = state["params"]
    return t


def make_train_step(module, tx, data_cfg, ema_decay: float = 0.0):
    """Pure ``(state, images uint8, labels, key) -> (state, metrics)``."""
    def train_step(state, images, labels, key):
        key = jax.random.fold_in(key, state["step"])
        k_aug, k_noise, k_drop = jax.random.split(key, 3)
        x = data.augment(k_aug, images, crop_padding=data_cfg.crop_padding, flip=data_cfg.flip,
                         dequantize=data_cfg.dequantize)

        def loss_fn(params):
            variables = {"params": params}
            if state["batch_stats"]:
                variables["batch_stats"] = state["batch_stats"]
            (loss, metrics), updates = module.apply(
                variables, x, labels, train=True, method="losses", mutable=["batch_stats"],
                rngs=dict(noise=k_noise, dropout=k_drop))
            return loss, (metrics, updates.get("batch_stats", {}))

        grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(state["params"])
        metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new_state = dict(step=state["step"] + 1, params=optax.apply_updates(state["params"], updates),
                         batch_stats=batch_stats, opt_state=opt_state)
        if "ema" in state:
            new_state["ema"] = optax.incremental_update(new_state["params"], state["ema"],
                                                        1.0 - ema_decay)
        return new_state, metrics
    return train_step


class Trainer(NamedTuple):
    """What one training run is built from: its module, contract, optimizer and jitted step."""
    module: Any
    log_likelihood_fn: classifier.LogLikelihoodFn
    tx: optax.GradientTransformation
    step_fn: Callable  # jitted, sharded over the data axis: (state, images, labels, key) -> ...
    to_global: Callable  # a host batch -> a global array sharded over the devices
    replicated: NamedSharding  # where the state lives
    steps_per_epoch: int


def load_base(config, base_fn=None) -> classifier.Classifier | None:
    """The trained base a family is built on (``Family.takes_base_fn``: SDIM-logit's
    ``config.model.<family>.base_workdir``), loaded; None for other families or a ``base_fn``."""
    family = models.get(config.model.family)
    if not family.takes_base_fn or base_fn is not None:
        return None
    workdir = models.family.block(config).base_workdir
    if not workdir:
        raise UserError(f"{family.name} needs config.model.{family.name}.base_workdir: a trained 'disc' "
                        "workdir (or a base_fn)")
    return classifier.load(workdir)


def create_state(config, train: data.Split, key, base_fn=None, base=None) -> tuple[Trainer, dict]:
    """The trainer and a fresh state (initialised on the first training batch, for the flows;
    ``jax.device_put(state, trainer.replicated)`` places it for the step). ``base``: the loaded
    base (``load_base``; loaded here when not given)."""
    steps_per_epoch = len(train.labels) // config.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"batch_size {config.batch_size} exceeds the {len(train.labels)} training images")
    n_dev = jax.device_count()
    if config.batch_size % n_dev:
        raise UserError(f"batch_size {config.batch_size} must be divisible by the {n_dev} devices")
    family = models.get(config.model.family)
    module = classifier.build_module(config, base_fn)
    first = data.to_float(train.images[:config.batch_size])  # data-dependent init (flows)
    base = load_base(config, base_fn) if base is None else base
    variables = family.attach(config, classifier.init_variables(
        config, jax.random.fold_in(key, 0), base_fn, first), base)
    tx = make_optimizer(config.optim, steps_per_epoch, config.num_epochs, variables["params"],
                        family.frozen)
    state = init_state(variables, tx, config.optim.ema_decay)

    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    train_step = make_train_step(module, tx, config.data, config.optim.ema_decay)

    def step_at_precision(*args):  # (config.precision: traced in its context)
        with classifier.precision(config):
            return train_step(*args)

    step_fn = jax.jit(step_at_precision, donate_argnums=0,
                      in_shardings=(replicated, sharded, sharded, replicated),
                      out_shardings=(replicated, replicated))

    def to_global(batch):
        # Each process feeds its own slice of the global batch (one process: all of it).
        per = len(batch) // jax.process_count()
        local = batch[jax.process_index() * per:(jax.process_index() + 1) * per]
        return jax.make_array_from_process_local_data(sharded, local, batch.shape)

    trainer = Trainer(module, classifier.make_log_likelihood_fn(module, config), tx, step_fn,
                      to_global, replicated, steps_per_epoch)
    return trainer, state


def restore(mgr, state: dict, workdir: str) -> dict:
    """``state`` from the newest readable checkpoint (unreadable newer ones set aside), or as it is."""
    latest = checkpoint.restore_latest(mgr, eval_variables(state), _train_item(state))
    if latest is None:
        return state
    step, v, t = latest
    for path in checkpoint.set_aside(mgr, step):  # the run will write these steps again
        log(f"unreadable checkpoint moved to {path}")
    state = dict(state, step=t["step"], opt_state=t["opt_state"], batch_stats=v.get("batch_stats", {}))
    state.update({"ema": v["params"], "params": t["params"]} if "ema" in state
                 else {"params": v["params"]})
    log(f"resumed from step {int(state['step'])} in {workdir}")
    return state


def train_epoch(trainer: Trainer, state: dict, batches, step_key, log_every: int, on_log,
                save_every: int = 0, save=None, stop=lambda: False) -> tuple[dict, dict]:
    """One pass over ``batches``: returns the state and the epoch's mean metrics.

    Metrics stay on the device and are fetched only every ``log_every`` steps (a fetch waits for
    the device) and at the end; ``on_log(step, running means)`` is called at each fetch. A
    non-finite loss raises ``FloatingPointError`` naming its first step, at the next fetch.
    ``save(state)`` every ``save_every`` steps (after a fetch: a checkpoint is never of a
    non-finite run); the pass ends early, after the step in progress, once ``stop()`` is true.
    """
    sums, count, first_bad = None, 0, jnp.zeros((), jnp.int32)
    start = int(state["step"])

    def fetch():
        bad = int(first_bad)
        if bad:
            raise NonFiniteError(f"non-finite loss at step {bad}")
        return {k: float(v) / count for k, v in jax.device_get(sums).items()}

    for images, labels in batches:
        state, metrics = trainer.step_fn(state, trainer.to_global(images), trainer.to_global(labels), step_key)
        count += 1
        sums = metrics if sums is None else jax.tree_util.tree_map(jnp.add, sums, metrics)
        first_bad = jnp.where((first_bad == 0) & ~jnp.isfinite(metrics["loss"]), start + count, first_bad)
        if (start + count) % log_every == 0:
            on_log(start + count, fetch())
        if save_every and save is not None and (start + count) % save_every == 0:
            fetch()
            save(state)
        if stop():
            break
    return state, (fetch() if count else {})


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       base_fn=None) -> classifier.Classifier:
    """Trains (resuming from the latest checkpoint), then fits rejection thresholds.

    ``base_fn``: SDIM-logit on any frozen function ``x -> logits`` instead of
    ``config.model.sdim_logit.base_workdir``; pass the same ``base_fn`` to ``gcj.load`` later. ``config`` is
    not changed (the workdir's config.json records what the run used).
    """
    os.makedirs(workdir, exist_ok=True)
    primary = jax.process_index() == 0  # (a multi-process run: every process trains, the first writes)
    with lock.hold(workdir, active=primary):  # one run per workdir
        return _train_and_evaluate(config, workdir, base_fn, primary)


@contextlib.contextmanager
def _stop_on_sigterm():
    """A flag set by SIGTERM (what schedulers send before preempting a job) while the block runs,
    instead of the default of dying at once; nothing changes off the main thread."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: asked.set())
    try:
        yield asked
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train_and_evaluate(config, workdir: str, base_fn, primary: bool) -> classifier.Classifier:
    base = load_base(config, base_fn)
    config = models.get(config.model.family).prepare(config, base)  # a copy if it changes

    clock = stopwatch.Stopwatch()
    train, val = data.load_train_val(config)
    clock.lap("data")
    key = jax.random.key(config.seed)
    trainer, state = create_state(config, train, key, base_fn, base)
    mgr = checkpoint.manager(workdir, training=True)
    try:  # the manager's threads closed on every path out of training
        state = jax.device_put(restore(mgr, state, workdir), trainer.replicated)
        if primary:  # (after the restore: a checkpoint of another config leaves the workdir as it was)
            with open(os.path.join(workdir, "config.json"), "w") as f:
                f.write(config_lib.to_json(config))
        clock.lap("build")

        start_step = int(state["step"])
        data_key, step_key = jax.random.fold_in(key, 2), jax.random.fold_in(key, 3)
        first_step_seconds = None
        spe = trainer.steps_per_epoch
        final_val_ll = None  # the last epoch's validation scores: the conformal thresholds reuse them

        def save(s):  # asynchronous: training goes on while it is written (checkpoint.save)
            checkpoint.save(mgr, int(s["step"]), eval_variables(s), _train_item(s))

        def validate(s, last: bool):  # (val/accuracy, [N, C]) of the scored validation images
            scored = scored_subset(val, config, "val")  # the last epoch's scoring resumable (hours of ODEs)
            ll = classifier.batched_log_likelihoods(_classifier(config, trainer.log_likelihood_fn, s), scored.images,
                                                    config.eval_batch_size,
                                                    resume=classifier.resume_path(_scores(workdir), "val") if last else None)
            return float(np.mean(ll.argmax(1) == scored.labels)), ll

        def stop_preempted(s, where: str):  # SIGTERM: the step reached saved and written, then out
            if mgr.latest_step() != int(s["step"]):
                save(s)
            checkpoint.wait(mgr)
            raise Preempted(f"stopped by SIGTERM at step {int(s['step'])} ({where}): checkpoint saved in "
                            f"{workdir}; run the same command to resume from it")

        with metric_writer.MetricWriter(workdir, config, active=primary) as writer, \
                _stop_on_sigterm() as asked:  # metrics.jsonl, TensorBoard
            def write_epoch(record):  # printed, and written to every sink
                log(_line(record))
                writer.write(record)

            for epoch in range(start_step // spe, config.num_epochs):
                t0, cpu0 = time.time(), time.process_time()
                done = int(state["step"]) - epoch * spe  # > 0: resumed inside this epoch
                batches = itertools.islice(data.batches(train, config.batch_size, jax.random.fold_in(data_key, epoch)),
                                           done, None)
                bar = tqdm(batches, total=spe - done, desc=f"epoch {epoch + 1}/{config.num_epochs}",
                           mininterval=2.0, leave=False, disable=None if primary else True)

                def on_log(step, avg):
                    nonlocal first_step_seconds
                    if first_step_seconds is None:
                        first_step_seconds = clock.since_lap()
                    bar.set_postfix({k: f"{avg[k]:.4f}" for k in ("loss", "accuracy") if k in avg})
                    writer.write(dict(step=step, epoch=epoch + 1, **{f"train/{k}": v for k, v in avg.items()}))

                try:
                    state, means = train_epoch(trainer, state, bar, step_key, config.log_every, on_log,
                                               config.checkpoint_every_steps, save, asked.is_set)
                except FloatingPointError as e:
                    last = mgr.latest_step()
                    kept = (f"The last good checkpoint (step {last}) in {workdir} is intact"
                            if last is not None else
                            f"There is no checkpoint yet: nothing was saved in {workdir}")
                    raise NonFiniteError(
                        f"{e} (epoch {epoch + 1}); training stopped. {kept}: lower optim.lr or add "
                        "optim.warmup_steps and run again" + (" to resume." if last is not None else ".")) from None
                finally:
                    bar.close()
                if asked.is_set() and int(state["step"]) < (epoch + 1) * spe:  # preempted mid-epoch
                    stop_preempted(state, f"epoch {epoch + 1}")
                if first_step_seconds is None:
                    first_step_seconds = clock.since_lap()
                record = dict(step=int(state["step"]), epoch=epoch + 1, epoch_seconds=time.time() - t0,
                              epoch_cpu_seconds=time.process_time() - cpu0,  # this process, all threads
                              **{f"train/{k}": v for k, v in means.items()})
                last = epoch + 1 == config.num_epochs
                if ((epoch + 1) % config.checkpoint_every_epochs == 0 or last) and mgr.latest_step() != int(state["step"]):
                    save(state)  # before validating: a run stopped while it scores (hours of ODEs for the
                    # score family) resumes with its training done
                every = config.val_every_epochs
                if len(val.labels) and (last or (every and (epoch + 1) % every == 0)):
                    record["val/accuracy"], ll = validate(state, last)
                    final_val_ll = ll if last else None
                write_epoch(record)
                if asked.is_set():  # (after the last epoch: before the thresholds' scorings)
                    stop_preempted(state, f"end of epoch {epoch + 1}")
            if (start_step == config.num_epochs * spe and len(val.labels)
                    and not any(r.get("epoch") == config.num_epochs and "val/accuracy" in r
                                for r in metric_writer.records(workdir))):
                # a run killed in the last epoch's validation, after its checkpoint: that epoch's
                # record written now, its validation only (its training means went with the process)
                accuracy, final_val_ll = validate(state, True)
                record = {"step": start_step, "epoch": config.num_epochs, "val/accuracy": accuracy}
                write_epoch(record)
            checkpoint.wait(mgr)  # the last save written before the thresholds are fitted
    except metric_writer.MetricWriteError as e:  # (a full disk: say what is left to resume from)
        checkpoint.wait(mgr)
        raise metric_writer.MetricWriteError(f"{e}; {checkpoint.kept(mgr)}") from e
    finally:
        mgr.close()
    steps = int(state["step"]) - start_step
    clock.lap("training" + (f" ({steps} steps; the first log, with compilation, after "
                            f"{first_step_seconds:.1f} s)" if steps else ""))

    clf = _classifier(config, trainer.log_likelihood_fn, state)
    thresholds = fit_thresholds(clf, train, val, config, final_val_ll, scores_dir=_scores(workdir))
    if primary:
        with open(os.path.join(workdir, "thresholds.json"), "w") as f:
            json.dump(thresholds, f, indent=2)
        shutil.rmtree(_scores(workdir), ignore_errors=True)
    clock.lap("thresholds")
    log(f"time: {clock}")
    return classifier.Classifier(config, clf.params, clf.log_likelihood_fn, thresholds)


def _classifier(config, log_likelihood_fn, state) -> classifier.Classifier:
    return classifier.Classifier(config, eval_variables(state), log_likelihood_fn)


def scored_subset(split: data.Split, config, name: str) -> data.Split:
    """The images of ``split`` that validation or the thresholds score: all, or a seeded subset of
    ``config.max_scored_images``."""
    return data.subset(split, config.max_scored_images or None, keys.named(jax.random.key(config.seed), "scored", name))


def _line(record: dict) -> str:
    """An epoch's record as training prints it."""
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())


def _scores(workdir: str) -> str:
    """Where training keeps the closing scorings' finished batches until thresholds.json is
    written (``workdir/scores/``): a run stopped there resumes them."""
    return os.path.join(workdir, "scores")


def fit_thresholds(clf: classifier.Classifier, train: data.Split, val: data.Split, config,
                   val_ll: np.ndarray | None = None, scores_dir: str | None = None) -> dict:
    """Percentile thresholds on un-augmented training images; conformal ones on the validation split
    (each at most ``config.max_scored_images``: ``scored_subset``). ``val_ll``: that subset's
    log-likelihoods, already computed by the same classifier (training's last validation), not
    scored again. ``scores_dir``: the scorings resumable there (``batched_log_likelihoods``' ``resume``)."""
    train, val = scored_subset(train, config, "train"), scored_subset(val, config, "val")
    out = {}
    if config.thresholds.percentiles:
        ll = classifier.batched_log_likelihoods(clf, train.images, config.eval_batch_size,
                                                resume=classifier.resume_path(scores_dir, "train"))
        out = {f"p{p:g}": rejection.percentile_thresholds(ll, train.labels, p).tolist()
               for p in config.thresholds.percentiles}
    if len(val.labels):
        if val_ll is None:
            val_ll = classifier.batched_log_likelihoods(clf, val.images, config.eval_batch_size,
                                                        resume=classifier.resume_path(scores_dir, "val"))
        alpha = config.thresholds.conformal_alpha
        out[f"conformal{alpha:g}"] = rejection.conformal_thresholds(val_ll, alpha).tolist()
    return out
