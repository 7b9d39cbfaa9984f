"""What train.py and evaluate.py share: a user's mistake (a missing workdir, an unknown config key,
suite or dataset, a flag a suite needs, an unreadable checkpoint, a non-finite loss) ends the
program with one line that names it and a non-zero exit, not a traceback. ``GCJ_DEBUG=1`` shows
the traceback."""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

# What gcj raises for bad requests and data; also what ml_collections raises for a bad --config.
USER_ERRORS = (ValueError, KeyError, AttributeError, OSError, FloatingPointError)


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
        except USER_ERRORS as e:
            _fail(e, argv)
    app.run(guarded, flags_parser=_parse)


def _parse(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:  # absl's own: unknown or missing flags
        _fail(e, argv, hint="Pass --help to see the flags.")
    except USER_ERRORS as e:  # ml_collections: the config file or an override
        _fail(e, argv)


def _fail(e: BaseException, argv, hint: str = ""):
    if os.environ.get("GCJ_DEBUG"):
        raise e
    prog = os.path.basename(argv[0]) if argv else "gcj"
    sys.stderr.write(f"{prog}: error: {_message(e, argv)}{' ' + hint if hint else ''}\n")
    sys.exit(2)


def _message(e: BaseException, argv) -> str:
    """``e``'s message on one line; an unknown key named with the ``--config.`` override that has it."""
    if isinstance(e, (KeyError, AttributeError)):  # an unknown key: name the override that has it
        key = str(e.args[0] if e.args else e).strip("'\"")
        for arg in argv or ():
            if arg.startswith("--config.") and key in arg.split("=")[0].split("."):
                return f"unknown config key {key!r} in {arg.split('=')[0]}"
        text = f"unknown key {key!r}" if isinstance(e, AttributeError) else key
    else:
        text = str(e)
    return " ".join(text.split())
