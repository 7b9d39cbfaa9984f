"""What train.py and evaluate.py share: a user's mistake (``gcj.UserError``: a missing workdir, an
unknown config key, suite or dataset, a flag a suite needs, an unreadable checkpoint, a non-finite
loss) ends the program with one line that names it and exit status 2; any other exception is a bug
and shows its traceback. ``GCJ_DEBUG=1`` shows the traceback of a user error too."""

from __future__ import annotations

import os
import sys

import jax
from absl import app, flags, logging

from gcj import config as config_lib
from gcj import migration, models
from gcj.errors import ConfigKeyError, UserError

# What ml_collections raises for an unknown key in a --config.<key>=value override (the only code
# that runs while the flags are parsed, besides the config file's own)
_OVERRIDE_ERRORS = (KeyError, AttributeError)


def auto_cpu_devices(cores: int, batch_sizes=()) -> int:
    """The largest k <= min(``cores``, 8) that divides every one of ``batch_sizes``."""
    return max(k for k in range(1, min(cores, 8) + 1) if all(b % k == 0 for b in batch_sizes))


def use_cpu_devices(n: int = 0, batch_sizes=()) -> int:
    """Splits the CPU into ``n`` JAX devices (before JAX starts its backends), so that the data-parallel
    mesh of training and evaluation runs a slice of each batch on each core: XLA:CPU leaves most of
    a small network's convolutions on one thread (measured: bench/train_step_vs_torch.py).

    ``n`` = 0: ``auto_cpu_devices(cores, batch_sizes)``. Nothing changes where ``XLA_FLAGS``
    already sets a host device count (returns 0 then); else returns the number set.
    Only the CPU backend is affected; on GPU / TPU the accelerator devices are used as they are.
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return 0
    n = n if n > 0 else auto_cpu_devices(os.cpu_count() or 1, batch_sizes)
    jax.config.update("jax_num_cpu_devices", n)
    return n


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
        try:
            return main(argv)
        except UserError as e:
            _fail(e, argv)
    app.run(guarded, flags_parser=_parse)


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
    sys.exit(2)


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
