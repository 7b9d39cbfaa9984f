"""Orbax checkpoints in ``<workdir>/checkpoints``: the model variables and the optimizer state are
separate items, so a classifier can be restored without knowing the optimizer. A checkpoint
restores onto this run's devices, whatever number of devices saved it.

The manager keeps the two latest steps; when the newest cannot be read (a disk filled or a file
overwritten), ``restore_latest`` falls back to the newest readable one with a warning naming both."""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gcj.errors import NotFoundError, UserError


class UnreadableCheckpointError(UserError):
    """No checkpoint of a workdir (or not the one asked for) can be read."""


def manager(workdir: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """The workdir's checkpoint manager (keeps the ``max_to_keep`` latest steps)."""
    path = os.path.abspath(os.path.join(workdir, "checkpoints"))
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))


class CheckpointSaveError(UserError):
    """A checkpoint could not be written (a full disk, a removed or read-only folder, another run
    writing the same workdir)."""


def save(mgr: ocp.CheckpointManager, step: int, variables, train_state) -> None:
    """Saves variables and ``train_state`` (optimizer state, counters) at ``step``; blocks. A save
    that fails is a ``CheckpointSaveError`` naming the step, the folder and the last good step."""
    try:
        mgr.save(step, args=ocp.args.Composite(variables=ocp.args.StandardSave(variables),
                                               train=ocp.args.StandardSave(train_state)))
        mgr.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - orbax and the filesystem raise many types
        first = (str(e).strip().splitlines() or [""])[0][:300]
        last = [s for s in mgr.all_steps() if s != step]
        kept = f"the last good checkpoint (step {max(last)}) is intact" if last else "no checkpoint was saved before"
        raise CheckpointSaveError(f"could not save the checkpoint of step {step} in {mgr.directory} "
                                  f"({type(e).__name__}: {first}); {kept}") from e


def on_this_mesh(target):
    """``target``'s shapes and dtypes (arrays or ``jax.ShapeDtypeStruct``s) replicated over this
    run's devices: what a checkpoint is restored onto, never the devices that saved it."""
    replicated = NamedSharding(Mesh(np.asarray(jax.devices()), ("data",)), PartitionSpec())
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), target)


def restore(mgr: ocp.CheckpointManager, step: int, variables_target, train_target=None):
    """Restores ``(variables, train_state)`` at ``step`` onto this run's devices (``on_this_mesh``);
    ``train_state`` is None if not asked."""
    items = dict(variables=ocp.args.StandardRestore(on_this_mesh(variables_target)))
    if train_target is not None:
        items["train"] = ocp.args.StandardRestore(on_this_mesh(train_target))
    try:
        out = mgr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax raises many types for corrupt or mismatched files
        raise UnreadableCheckpointError(f"unreadable checkpoint at step {step} in {mgr.directory}: "
                                        f"{type(e).__name__}: {e}") from e
    return out["variables"], out.get("train") if train_target is not None else None


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
    mgr = manager(workdir)
    if step is not None:
        return restore(mgr, step, target)[0]
    latest = restore_latest(mgr, target)
    if latest is None:
        raise NotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
    return latest[1]
