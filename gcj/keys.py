"""Random keys by name: every draw of an evaluation is ``named(key, "suite", "what")``.

A key derived from a name needs no table of numbers to coordinate: a new suite, attack or draw
picks a name, and two names give independent keys (``fold_in`` of their CRC-32s).
"""

from __future__ import annotations

import zlib

import jax


def named(key: jax.Array, *names: str) -> jax.Array:
    """``key`` folded in with the CRC-32 of each name in turn: ``named(k, "ood", "mnist5k")``."""
    for name in names:
        key = jax.random.fold_in(key, zlib.crc32(name.encode()))
    return key
