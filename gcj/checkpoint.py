"""Orbax checkpoints in ``<workdir>/checkpoints``: the model variables and the optimizer state are
separate items, so a classifier can be restored without knowing the optimizer. A checkpoint
restores onto this run's devices, whatever number of devices saved it.

The manager keeps the two latest steps; when the newest cannot be read (a disk filled or a file
overwritten), ``restore_latest`` falls back to the newest readable one with a warning naming both."""

from __future__ import annotations

import errno
import os
import shutil
import warnings
import weakref

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gcj.errors import NotFoundError, UserError


class UnreadableCheckpointError(UserError):
    """No checkpoint of a workdir (or not the one asked for) can be read."""


class VariablesOnlyError(UserError):
    """Training asked to resume from a checkpoint that holds the model variables only (a released
    model, as under ``pretrained/``: ``bench/package.sh`` leaves out the optimizer state)."""


def manager(workdir: str, max_to_keep: int = 2, training: bool = False) -> ocp.CheckpointManager:
    """The workdir's checkpoint manager (keeps the ``max_to_keep`` latest steps). ``training``: the
    run that holds the workdir, which removes what a failed save left half-written (never done by
    a reader: it could be a save in progress)."""
    path = os.path.abspath(os.path.join(workdir, "checkpoints"))
    if training and jax.process_index() == 0 and os.path.isdir(path):
        for name in os.listdir(path):  # what a failed save left (orbax writes into "*.orbax-checkpoint-tmp*")
            if ".orbax-checkpoint-tmp" in name:
                shutil.rmtree(os.path.join(path, name), ignore_errors=True)
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))


class CheckpointSaveError(UserError):
    """A checkpoint could not be written (a full disk, a removed or read-only folder, another run
    writing the same workdir)."""


_pending: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # manager -> the step being written


def save(mgr: ocp.CheckpointManager, step: int, variables, train_state) -> None:
    """Starts saving variables and ``train_state`` (optimizer state, counters) at ``step`` and
    returns: orbax writes them in the background while training goes on (from copies, so the next
    step may reuse the arrays' buffers). The previous save is awaited first. A save that fails,
    this one or the one before, is a ``CheckpointSaveError`` naming the step, the folder and the
    last good step; ``wait`` awaits the last one."""
    wait(mgr)
    variables, train_state = jax.tree_util.tree_map(lambda a: a.copy() if isinstance(a, jax.Array) else a,
                                                    (variables, train_state))
    try:
        mgr.save(step, args=ocp.args.Composite(variables=ocp.args.StandardSave(variables),
                                               train=ocp.args.StandardSave(train_state)))
    except Exception as e:  # noqa: BLE001 - orbax and the filesystem raise many types
        raise _save_error(mgr, step, e) from e
    _pending[mgr] = step


def wait(mgr: ocp.CheckpointManager) -> None:
    """Awaits the save in progress, if any; its failure is a ``CheckpointSaveError``."""
    step = _pending.pop(mgr, None)
    try:
        mgr.wait_until_finished()
    except Exception as e:  # noqa: BLE001
        raise _save_error(mgr, step, e) from e


def _save_error(mgr, step, e: BaseException) -> CheckpointSaveError:
    text = str(e).strip()
    full = isinstance(e, OSError) and e.errno == errno.ENOSPC or "No space left on device" in text
    first = (text.splitlines() or [""])[0][:240]
    return CheckpointSaveError(f"could not save the checkpoint of step {step} in {mgr.directory}"
                               f"{': no space left on device' if full else ''} ({type(e).__name__}: {first}); "
                               f"{kept(mgr, but=step)}")


def kept(mgr: ocp.CheckpointManager, but: int | None = None) -> str:
    """What a run that stops now leaves: "the last good checkpoint (step N) is intact", or that there
    is none (``but``: a step being written, not counted)."""
    last = [s for s in mgr.all_steps() if s != but]
    return f"the last good checkpoint (step {max(last)}) is intact" if last else "no checkpoint was saved before"


def on_this_mesh(target):
    """``target``'s shapes and dtypes (arrays or ``jax.ShapeDtypeStruct``s) replicated over this
    run's devices: what a checkpoint is restored onto, never the devices that saved it."""
    replicated = NamedSharding(Mesh(np.asarray(jax.devices()), ("data",)), PartitionSpec())
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), target)


class CheckpointMismatchError(UserError):
    """A readable checkpoint that holds another model than this run's (another config): never set
    aside as unreadable, never skipped for an older one."""


class CheckpointReadError(UserError):
    """A checkpoint that could not be read for a reason other than its files: memory, permissions,
    an I/O error. Reported as itself: a good checkpoint is never set aside for it."""


def restore(mgr: ocp.CheckpointManager, step: int, variables_target, train_target=None):
    """Restores ``(variables, train_state)`` at ``step`` onto this run's devices (``on_this_mesh``);
    ``train_state`` is None if not asked.

    Only corruption is ``UnreadableCheckpointError`` (its files cannot be read or decoded); a
    checkpoint of another model is ``CheckpointMismatchError`` (the first difference named) and a
    failure of the machine (memory, permissions, I/O) ``CheckpointReadError``."""
    items = dict(variables=ocp.args.StandardRestore(on_this_mesh(variables_target)))
    if train_target is not None and not os.path.isdir(os.path.join(str(mgr.directory), str(step), "train")):
        raise VariablesOnlyError(
            f"the checkpoint at step {step} in {mgr.directory} holds the model variables only (a released "
            "model, without its optimizer state), so training cannot resume from it: gcj.load and evaluate.py "
            "read it as it is; to train, use a new workdir (the config is in its config.json)")
    if train_target is not None:
        items["train"] = ocp.args.StandardRestore(on_this_mesh(train_target))
    where = f"checkpoint at step {step} in {mgr.directory}"
    # another model is named before any array is read (a failed read leaves orbax's reads running)
    difference = _difference(mgr, step, variables_target)
    if difference:
        raise CheckpointMismatchError(f"the {where} holds another model than this config's ({difference}): "
                                      "train it with the config in its config.json, or use a new workdir")
    try:
        out = mgr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # noqa: BLE001 - orbax raises many types for corrupt files
        if isinstance(e, MemoryError) or (isinstance(e, OSError) and not isinstance(e, FileNotFoundError)):
            raise CheckpointReadError(f"could not read the {where}: {type(e).__name__}: {e}") from e
        raise UnreadableCheckpointError(f"unreadable {where}: {type(e).__name__}: {e}") from e
    return out["variables"], out.get("train") if train_target is not None else None


def _shapes(tree) -> dict:
    return {jax.tree_util.keystr(p): (tuple(v.shape), np.dtype(v.dtype).name)
            for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _difference(mgr, step: int, variables_target) -> str | None:
    """The first difference between the model variables saved at ``step`` and ``variables_target``,
    from the checkpoint's metadata. None: the same names, shapes and dtypes, or metadata that
    cannot be read (the read of the arrays then tells corruption from a failure of the machine)."""
    try:
        with ocp.StandardCheckpointer() as reader:  # (closed: its threads do not outlive the read)
            meta = reader.metadata(os.path.join(str(mgr.directory), str(step), "variables"))
        saved = _shapes(getattr(meta, "item_metadata", meta))
    except Exception:  # noqa: BLE001
        return None
    if not saved:  # (orbax returns empty metadata for a file it cannot parse)
        return None
    want = _shapes(variables_target)
    for name in sorted(set(saved) | set(want)):
        if name not in want:
            return f"{name} is saved but not in this model"
        if name not in saved:
            return f"{name} of this model is not saved"
        if saved[name] != want[name]:
            return f"{name} is saved as {saved[name][0]} {saved[name][1]}, this model has {want[name][0]} {want[name][1]}"
    return None


def restore_latest(mgr: ocp.CheckpointManager, variables_target, train_target=None):
    """``(step, variables, train_state)`` of the newest readable checkpoint, or None if there is
    none at all. An unreadable newer one is skipped with a warning naming both steps; if none can
    be read, ``UnreadableCheckpointError`` says so for each."""
    errors = []
    for step in sorted(mgr.all_steps(), reverse=True):
        try:
            variables, train = restore(mgr, step, variables_target, train_target)
        except UnreadableCheckpointError as e:
            errors.append(e)
            continue
        if errors:
            warnings.warn(f"the newest checkpoint (step {max(mgr.all_steps())}) in {mgr.directory} "
                          f"is unreadable; using step {step} instead ({errors[0]})", stacklevel=2)
        return step, variables, train
    if errors:
        raise UnreadableCheckpointError("no readable checkpoint: " + "; ".join(map(str, errors)))
    return None


def set_aside(mgr: ocp.CheckpointManager, after_step: int) -> list[str]:
    """Renames the checkpoints newer than ``after_step`` (unreadable ones a resumed run would
    otherwise collide with) to ``<step>.unreadable``; returns the new paths. Several processes:
    the first renames, all wait for it."""
    moved = []
    for step in sorted(s for s in mgr.all_steps() if s > after_step):
        src = os.path.join(str(mgr.directory), str(step))
        if jax.process_index() == 0:
            os.replace(src, src + ".unreadable")
        moved.append(src + ".unreadable")
    if moved:
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("gcj: checkpoints set aside")
        mgr.reload()
    return moved


def restore_variables(workdir: str, target, step: int | None = None):
    """The model variables of ``step`` (default: the newest readable one) in a workdir."""
    with manager(workdir) as mgr:  # (closed: its threads do not outlive the read)
        if step is not None:
            return restore(mgr, step, target)[0]
        latest = restore_latest(mgr, target)
    if latest is None:
        raise NotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
    return latest[1]
