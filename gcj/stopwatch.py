"""Where the time goes: wall-clock seconds per named phase (train.py and evaluate.py print them)."""

import time


class Stopwatch:
    """Wall-clock seconds per named phase, printed as where the time went."""

    def __init__(self):
        self.laps, self._last = {}, time.perf_counter()

    def since_lap(self) -> float:
        return time.perf_counter() - self._last

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.laps[name], self._last = now - self._last, now
        return self.laps[name]

    def __str__(self):
        return f"{format_laps(self.laps)}; total {sum(self.laps.values()):.1f} s"


def format_laps(laps: dict) -> str:
    """``{'load': 0.31, ...}`` as 'load 0.3 s, ...' (also for the ``seconds`` of a report)."""
    return ", ".join(f"{k} {v:.1f} s" for k, v in laps.items())
