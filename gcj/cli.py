"""What train.py and evaluate.py share: a user's mistake (``gcj.UserError``: a missing workdir, an
unknown config key, suite or dataset, a flag a suite needs, an unreadable checkpoint, a non-finite
loss) ends the program with one line that names it and exit status 2; any other exception is a bug
and shows its traceback (status 1). Training stopped by SIGTERM (``gcj.errors.Preempted``) says
where it saved and exits 143. ``GCJ_DEBUG=1`` shows the traceback of a user error too."""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
import zlib

import jax
import numpy as np
from absl import app, flags, logging
from jax.experimental import multihost_utils

from gcj import config as config_lib
from gcj import migration, models
from gcj.errors import ConfigKeyError, LostProcessError, Preempted, UserError

# What ml_collections raises for an unknown key in a --config.<key>=value override (the only code
# that runs while the flags are parsed, besides the config file's own)
_OVERRIDE_ERRORS = (KeyError, AttributeError)


def auto_cpu_devices(cores: int, batch_sizes=()) -> int:
    """The largest k <= min(``cores``, 8) that divides every one of ``batch_sizes``."""
    return max(k for k in range(1, min(cores, 8) + 1) if all(b % k == 0 for b in batch_sizes))


# XLA:CPU's waits at a collective between this process's devices (seconds): warn after 10 min, abort after an hour
COLLECTIVE_TIMEOUTS = ("--xla_cpu_collective_call_warn_stuck_timeout_seconds=600",
                       "--xla_cpu_collective_call_terminate_timeout_seconds=3600")


def use_cpu_devices(n: int = 0, batch_sizes=()) -> int:
    """Splits the CPU into ``n`` JAX devices (before JAX starts its backends), so that the data-parallel
    mesh of training and evaluation runs a slice of each batch on each core: XLA:CPU leaves most of
    a small network's convolutions on one thread (measured: bench/train_step_vs_torch.py).

    ``n`` = 0: ``auto_cpu_devices(cores, batch_sizes)``. Nothing changes where ``XLA_FLAGS``
    already sets a host device count (returns 0 then); else returns the number set.
    Only the CPU backend is affected; on GPU / TPU the accelerator devices are used as they are.

    With more than one device it also gives XLA:CPU's collectives between them ``COLLECTIVE_TIMEOUTS``
    (unless ``XLA_FLAGS`` sets them): by default XLA aborts the process when one device reaches an
    all-reduce 40 s after the other, which another job on the same cores makes happen in a long
    ODE solve (the loop's stopping test is an all-reduce per step).
    """
    xla_flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in xla_flags:
        return 0
    n = n if n > 0 else auto_cpu_devices(os.cpu_count() or 1, batch_sizes)
    if n > 1 and "xla_cpu_collective_call" not in xla_flags:
        os.environ["XLA_FLAGS"] = " ".join([xla_flags, *COLLECTIVE_TIMEOUTS]).strip()
    jax.config.update("jax_num_cpu_devices", n)
    return n


def define_distributed_flags() -> None:
    """The flags of ``jax.distributed.initialize`` (``use_distributed`` reads them)."""
    flags.DEFINE_string("coordinator_address", None, "Several processes on one mesh: host:port of process 0's "
                        "coordinator (jax.distributed), the same for every process.")
    flags.DEFINE_integer("num_processes", None, "Several processes: how many (with --coordinator_address).")
    flags.DEFINE_integer("process_id", None, "Several processes: this one's index, 0 .. num_processes - 1.")
    flags.DEFINE_bool("distributed", False, "Several processes, their addresses detected by jax.distributed "
                      "(TPU pods, SLURM, Open MPI).")
    flags.DEFINE_integer("distributed_timeout", 60, "Seconds to wait for every process at start-up; a lost "
                         "process ends the others after as long.")


def use_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                    process_id: int | None = None, auto: bool = False, timeout: int = 60,
                    launch: str = "") -> bool:
    """Joins this process to the others through ``jax.distributed.initialize`` (before JAX starts
    its backends; the CPU's collectives through gloo), when ``coordinator_address`` is given or
    ``auto`` asks jax to detect the cluster. ``launch`` (e.g. the command line less the process id)
    must be the same in every process: processes started differently are refused at once. Returns
    whether it joined. A bad launch (a process id out of range, a coordinator that cannot be reached
    within ``timeout`` seconds) is a ``UserError``."""
    if not coordinator_address and not auto:
        return False
    if coordinator_address and (num_processes is None or process_id is None):
        raise UserError("--coordinator_address needs --num_processes and --process_id")
    if num_processes is not None and not 0 <= (process_id or 0) < num_processes:
        raise UserError(f"--process_id must be in 0 .. {num_processes - 1}, got {process_id}")
    if coordinator_address and process_id and not _reachable(coordinator_address, timeout):
        raise UserError(f"the coordinator {coordinator_address} cannot be reached within {timeout} s: is process 0 "
                        "running there, with the same --coordinator_address?")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id, initialization_timeout=timeout,
                                   heartbeat_timeout_seconds=timeout)
    except Exception as e:  # noqa: BLE001 - jax raises XlaRuntimeError, RuntimeError, ValueError here
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"jax.distributed could not start (coordinator {coordinator_address or 'auto'}, "
                        f"{timeout} s): {first}") from e
    mine = np.uint32(zlib.crc32(launch.encode()))
    if not np.all(multihost_utils.process_allgather(mine) == mine):
        raise UserError("the processes were started with different configs or flags")
    return True


def _reachable(address: str, timeout: float) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds (tried every
    half second): JAX's own client aborts the process when it cannot reach the coordinator."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)


def launch(argv, extra: str = "") -> str:
    """The command line ``argv`` less its ``--process_id``, and ``extra``: what every process of
    one run shares (``use_distributed`` compares it)."""
    out, args = [], iter(argv[1:])
    for arg in args:
        if arg == "--process_id":
            next(args, None)
        elif not arg.startswith("--process_id="):
            out.append(arg)
    return " ".join(out) + extra


def run(main, flags_module: str | None = None) -> None:
    """``absl.app.run(main)`` with one-line errors for flags, configs and what ``main`` raises.

    ``flags_module``: the module that defines the program's flags, listed by ``--help`` whatever
    starts it (``python train.py``, the ``gcj-train`` entry point)."""
    if flags_module:
        for flag in flags.FLAGS.get_key_flags_for_module(flags_module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    def guarded(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
        if not os.environ.get("GCJ_DEBUG"):  # gcj reports what orbax's threads fail at, in one line
            logging.get_absl_handler().addFilter(lambda record: "orbax" not in record.pathname)
        try:
            return main(argv)
        except Exception as e:
            lost = _lost_peer(e) if jax.distributed.is_initialized() else None
            if lost is not None:  # (whatever raised it: a collective, a checkpoint's save)
                _fail(LostProcessError(f"a process of this run stopped ({lost}); restart all of them to resume "
                                       "from the last checkpoint"), argv)
            if isinstance(e, UserError):
                _fail(e, argv)
            if isinstance(e, Preempted):  # stopped as asked, its checkpoint saved: not an error
                sys.stderr.write(f"{os.path.basename(argv[0]) if argv else 'gcj'}: {e}\n")
                _exit(Preempted.EXIT_STATUS)
            # a bug: its traceback, then out at once (threads a library left running or other
            # processes would keep the interpreter from ending)
            traceback.print_exc()
            _exit(1)
    app.run(guarded, flags_parser=_parse)


# what the collectives and the coordination service say when another process of the run is gone
_PEER_LOST = ("gloo", "connection reset", "connection refused", "heartbeat", "unavailable", "barrier")


def _lost_peer(e: BaseException) -> str | None:
    """The first line of what says, in ``e`` or its causes, that another process is gone; None if
    nothing does (a bug of this process)."""
    while e is not None:
        first = (str(e).strip().splitlines() or [""])[0]
        if isinstance(e, jax.errors.JaxRuntimeError) or any(s in first.lower() for s in _PEER_LOST):
            return first[:200]
        e = e.__cause__ or e.__context__
    return None


def _parse(argv):
    argv_new, renamed = _old_model_names(argv)
    saved, sys.argv = sys.argv, argv_new  # ml_collections reads the overrides from sys.argv
    try:
        rest = flags.FLAGS(argv_new)
        for key, text in renamed:
            _override_old_name(flags.FLAGS.config, key, text, argv)
        return rest
    except flags.Error as e:  # absl's own: unknown or missing flags
        _fail(e, argv, hint="Pass --help to see the flags.")
    except (UserError, *_OVERRIDE_ERRORS) as e:  # a config file's check, or an unknown override key
        _fail(e, argv)
    finally:
        sys.argv = saved


def _old_model_names(argv):
    """``argv`` without the ``--config.model.<key>`` overrides that name a model key as gcj < 0.3.0
    did (not ``family``, not a family's block: ``--config.model.width=8``), and those overrides as
    (key, text); they are applied once the config, hence its family, is known."""
    keep, renamed, args = [], [], iter(argv)
    for arg in args:
        name = arg.split("=")[0]
        parts = name.split(".")
        if (name.startswith("--config.model.") and len(parts) > 2
                and parts[2] != "family" and parts[2] not in models.FAMILIES):
            text = arg.split("=", 1)[1] if "=" in arg else next(args, "")
            renamed.append((name[len("--config."):], text))
        else:
            keep.append(arg)
    return keep, renamed


def _override_old_name(config, key: str, text: str, argv) -> None:
    """Applies an override given by its gcj < 0.3.0 name to its per-family key, saying so."""
    new = migration.new_name(config, key)
    if new is None:
        raise ConfigKeyError(f"unknown config key {key!r} in --config.{key}: family "
                             f"{config.model.family!r} has no such key (its keys are config.model."
                             f"{config.model.family}.*)")
    config_lib.override(config, new, text)
    prog = os.path.basename(argv[0]) if argv else "gcj"
    sys.stderr.write(f"{prog}: note: --config.{key} is --config.{new} since gcj 0.3.0 "
                     "(the old name still works)\n")


def _fail(e: BaseException, argv, hint: str = ""):
    if os.environ.get("GCJ_DEBUG"):
        raise e
    prog = os.path.basename(argv[0]) if argv else "gcj"
    sys.stderr.write(f"{prog}: error: {_message(e, argv)}{' ' + hint if hint else ''}\n")
    _exit(2)


def _exit(status: int):
    """Ends the process now, whatever threads orbax or tqdm left running (the interpreter would wait
    for them) and whatever other processes of the run (the shutdown barrier would wait for them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _message(e: BaseException, argv) -> str:
    """``e``'s message on one line; an unknown key named with the ``--config.`` override that has it."""
    if isinstance(e, _OVERRIDE_ERRORS) and not isinstance(e, UserError):  # name the override that has it
        key = str(e.args[0] if e.args else e).strip("'\"")
        for arg in argv or ():
            if arg.startswith("--config.") and key in arg.split("=")[0].split("."):
                return f"unknown config key {key!r} in {arg.split('=')[0]}"
        text = f"unknown key {key!r}" if isinstance(e, AttributeError) else key
    else:
        text = str(e)
    return " ".join(text.split())
