"""TensorBoard event files without TensorFlow: scalar summaries, framed and encoded as
``tf.summary.scalar`` writes them, so ``tensorboard --logdir <workdir>`` shows the training curves.

An event file is a sequence of TFRecords (``uint64`` length, its masked CRC-32C, the bytes, their
masked CRC-32C); each record is an ``Event`` protobuf (wall_time = 1: double, step = 2: int64,
file_version = 3: string, summary = 5: ``Summary``), a ``Summary`` is repeated ``value`` = 1
(``tag`` = 1: string, ``simple_value`` = 2: float). The few fields are encoded here by hand.
"""

from __future__ import annotations

import os
import socket
import struct
import time


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 as protobuf's two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire_type) + payload


def _bytes_field(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


def _event(wall_time: float, step: int = 0, file_version: str | None = None,
           scalars: dict | None = None) -> bytes:
    out = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version is not None:
        out += _bytes_field(3, file_version.encode())
    if scalars:
        summary = b"".join(
            _bytes_field(1, _bytes_field(1, tag.encode()) + _field(2, 5, struct.pack("<f", value)))
            for tag, value in scalars.items())
        out += _bytes_field(5, summary)
    return out


def record(data: bytes) -> bytes:
    """``data`` framed as one TFRecord."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


class SummaryWriter:
    """Appends scalar summaries to a new event file in ``logdir`` (a context manager)."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.gcj"
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed by close / __exit__)
        self._file.write(record(_event(time.time(), file_version="brain.Event:2")))

    def scalars(self, step: int, values: dict) -> None:
        """One event at ``step`` holding every ``tag: value`` (numbers; others are skipped)."""
        values = {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
        if values:
            self._file.write(record(_event(time.time(), int(step), scalars=values)))
            self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
