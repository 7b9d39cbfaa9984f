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
        total = sum(self.laps.values())
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.laps.items()) + f"; total {total:.1f} s"
