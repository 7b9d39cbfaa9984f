"""What gcj raises when a user's input is wrong: an image of the wrong shape, dtype or pixel range,
a NaN, an unknown config key, suite, attack or dataset, a missing workdir or dataset (with how to
get it), an unreadable checkpoint, a non-finite loss or likelihood. ``train.py`` and
``evaluate.py`` print such an error's message on one line and exit 2; any other exception is a bug
and shows its traceback.

Each is also the built-in exception it always was (``UserError`` is a ``ValueError``,
``NotFoundError`` a ``FileNotFoundError`` ...), so code that caught those still does."""


class UserError(ValueError):
    """A user's mistake, named in the message."""


class NotFoundError(UserError, FileNotFoundError):
    """A workdir, file, checkpoint or dataset that is not there."""


class ConfigKeyError(UserError, KeyError):
    """An unknown or missing config key."""

    def __str__(self) -> str:  # (KeyError quotes its message)
        return str(self.args[0]) if self.args else ""


class NonFiniteError(UserError, FloatingPointError):
    """A NaN or infinite loss or log-likelihood: training stops, evaluation refuses to go on."""


class Preempted(Exception):  # noqa: N818 - not an error: the run stopped as asked
    """Training was asked to stop (SIGTERM, as schedulers send before preempting a job): it saved a
    checkpoint at the step it reached. ``train.py`` exits with ``EXIT_STATUS`` (128 + SIGTERM);
    running the same command again resumes from that step."""
    EXIT_STATUS = 143


class LostProcessError(UserError):
    """A process of a multi-process run stopped (killed, preempted, its host lost): the others end
    too; restarting all of them resumes from the last checkpoint."""
