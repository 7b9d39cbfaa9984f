"""Orbax checkpoints in ``<workdir>/checkpoints``: the model variables and the optimizer state are
separate items, so a classifier can be restored without knowing the optimizer."""

from __future__ import annotations

import os

import orbax.checkpoint as ocp


def manager(workdir: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """The workdir's checkpoint manager (keeps the ``max_to_keep`` latest steps)."""
    path = os.path.abspath(os.path.join(workdir, "checkpoints"))
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))


def save(mgr: ocp.CheckpointManager, step: int, variables, train_state) -> None:
    """Saves variables and ``train_state`` (optimizer state, counters) at ``step``; blocks."""
    mgr.save(step, args=ocp.args.Composite(variables=ocp.args.StandardSave(variables),
                                           train=ocp.args.StandardSave(train_state)))
    mgr.wait_until_finished()


def restore(mgr: ocp.CheckpointManager, step: int, variables_target, train_target=None):
    """Restores ``(variables, train_state)`` at ``step``; ``train_state`` is None if not asked."""
    items = dict(variables=ocp.args.StandardRestore(variables_target))
    if train_target is not None:
        items["train"] = ocp.args.StandardRestore(train_target)
    try:
        out = mgr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax raises many types for corrupt or mismatched files
        raise ValueError(f"unreadable checkpoint at step {step} in {mgr.directory}: "
                         f"{type(e).__name__}: {e}") from e
    return out["variables"], out.get("train") if train_target is not None else None


def restore_variables(workdir: str, target, step: int | None = None):
    """The model variables of ``step`` (default: latest) in a workdir."""
    mgr = manager(workdir)
    step = mgr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
    return restore(mgr, step, target)[0]
