"""What the benches share: the CPU they ran on, how they time, and how they report their figures.

    from machine import best_seconds, cpu_model, write_report   # (bench/ is on sys.path as a script's own folder)
"""
import json
import platform
import time


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def write_report(result: dict, out: str | None) -> None:
    """Prints ``result`` as JSON and writes it to ``out`` when given."""
    print(json.dumps(result, indent=2))
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=2)


def best_seconds(f, *args, repeats: int = 3) -> float:
    """The fastest of ``repeats`` calls of ``f(*args)`` (waited for), after one call that compiles."""
    import jax  # (score_gradient.py's float64 child configures jax before its first import)
    jax.block_until_ready(f(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t0)
    return best
