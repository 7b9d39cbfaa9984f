"""A workdir's records, each written once to every sink: ``metrics.jsonl`` (JSON lines, what gcj and
its users read back) and TensorBoard event files through tensorboardX (no TensorFlow needed):
training scalars, the config as hparams, the evaluation plots as images.
``tensorboard --logdir <workdir>`` (training) or ``--logdir <report folder>`` (evaluation) shows them."""

from __future__ import annotations

import json
import numbers
import os
import time

import ml_collections
import numpy as np
from PIL import Image
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.summary import hparams, image, scalar

from gcj import config as config_lib
from gcj.errors import UserError


class MetricWriteError(UserError):
    """metrics.jsonl or the TensorBoard file could not be written (a full disk, a removed folder)."""


class EventFile:
    """A TensorBoard event file in ``directory``, written in the caller's thread: ``add(summary,
    step)`` appends and flushes, so a full disk is an ``OSError`` there and then. (tensorboardX's
    ``SummaryWriter`` writes from a thread that dies of that error, after which its bounded queue
    blocks the next caller forever.) A context manager: closed on exit."""

    def __init__(self, directory: str):
        self._events = EventsWriter(os.path.join(directory, "events"))

    def add(self, summary, step: int | None = None) -> None:
        self._events.write_event(Event(wall_time=time.time(), step=step, summary=summary))
        self._events.flush()

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> EventFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def records(workdir: str) -> list[dict]:
    """The records of ``workdir``'s metrics.jsonl in the order written ([] where there is none); a
    line cut short by a killed process is no record."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _ends_a_line(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class MetricWriter:
    """Training records of a workdir: ``write(record)`` appends ``record`` (with ``step``) to
    metrics.jsonl and its numbers as TensorBoard scalars at that step; ``config`` (if given) is
    recorded as the run's hparams. ``active=False`` (the other processes of a multi-process run):
    writes nothing. Appends to a metrics.jsonl that is there (a resumed run's), on a line of its own.
    A context manager: closed on exit. A write the filesystem refuses is a
    ``MetricWriteError``; on the way out of another error, closing adds none of its own."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict | None = None, active: bool = True):
        self.active = active
        if not active:
            return
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
        if self._jsonl.tell() and not _ends_a_line(self._jsonl.name):
            self._jsonl.write("\n")  # (a line cut short by a killed process stays a line of its own)
        self._board = EventFile(workdir)
        if config is not None:
            # the HParams tab: this run's flattened config (tuples and None as text)
            flat = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                    for k, v in config_lib.flatten(config.to_dict()).items()}
            for summary in hparams(flat, {"val/accuracy": 0.0}):
                self._board.add(summary)

    def write(self, record: dict) -> None:
        if not self.active:
            return
        try:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        except OSError as e:
            raise MetricWriteError(f"could not write {self._jsonl.name}: {e.strerror or e}") from e
        for tag, value in record.items():
            if tag not in ("step", "epoch") and isinstance(value, numbers.Real) and not isinstance(value, bool):
                try:
                    self._board.add(scalar(tag, float(value)), record["step"])
                except OSError as e:
                    raise MetricWriteError(f"could not write the TensorBoard file in "
                                           f"{os.path.dirname(self._jsonl.name)}: {e.strerror or e}") from e

    def close(self) -> None:
        if not self.active:
            return
        try:
            self._jsonl.close()
            self._board.close()
        except OSError as e:
            raise MetricWriteError(f"could not finish writing the metrics in {os.path.dirname(self._jsonl.name)}: "
                                   f"{e.strerror or e}") from e

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, kind, error, tb) -> None:
        try:
            self.close()
        except MetricWriteError:
            if error is None:  # (else the error on its way out is the one to report)
                raise


def write_images(directory: str, images: dict) -> None:
    """PNG files as TensorBoard images in an event file in ``directory``: ``images`` tag -> path."""
    with EventFile(directory) as board:
        for tag, path in images.items():
            board.add(image(tag, np.asarray(Image.open(path).convert("RGB")), dataformats="HWC"))
