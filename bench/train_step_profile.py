"""Where gcj's training step spends its time: XLA's own profile of the jitted step, by kind of op.

    .venv/bin/python bench/train_step_profile.py --family disc --dataset fashion_mnist \
        --out bench/results/train_step_profile_disc_fashion_mnist.json

Runs ``--steps`` steps of ``bench/train_step_vs_torch.py``'s gcj step (batch 128) under
``jax.profiler.trace`` on ``--cpu_devices`` devices and sums the profiled ops per step by kind:
``ynn_fusion`` (the convolutions and matmuls XLA hands to YNNPACK), ``transpose_copy`` (layout
transposes, mostly of activations and gradients for the weight-gradient convolutions), and the rest
of XLA's fusions; plus the step's wall time and the 12 costliest ops.
"""
import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--family", default="disc")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--cpu_devices", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    from gcj import cli
    cli.use_cpu_devices(a.cpu_devices)
    import jax
    import numpy as np
    from gcj.recipes import paper_config
    from machine import cpu_model, write_report
    from train_step_vs_torch import gcj_stepper, synthetic

    c = paper_config(a.family, a.dataset)
    step = gcj_stepper(c, *synthetic(c, 128))
    for _ in range(3):
        step()
    wall = []
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(a.steps):
                t0 = time.perf_counter()
                step()
                wall.append(time.perf_counter() - t0)
        events = json.load(gzip.open(glob.glob(os.path.join(d, "**", "*.trace.json.gz"), recursive=True)[0]))
    ops = collections.Counter()
    for e in events["traceEvents"]:
        name = e.get("name", "")
        # XLA's ops: fusions and library calls (not the host's Python frames or the executor's spans)
        if e.get("ph") == "X" and not name.startswith("$") and re.search(r"fusion|convolution|dot|copy|custom", name):
            ops[name] += e["dur"] / 1e3 / a.steps
    kinds = collections.Counter()
    for name, ms in ops.items():
        kinds["ynn_fusion" if name.startswith("ynn_fusion") else
              "transpose_copy" if name.startswith("transpose_copy") else "other"] += ms
    out = dict(command="python bench/train_step_profile.py " + " ".join(sys.argv[1:]), cpu=cpu_model(),
               cpu_count=os.cpu_count(), jax=jax.__version__, devices=jax.device_count(),
               family=a.family, dataset=a.dataset, batch=128, step_ms=1e3 * float(np.median(wall)),
               ms_per_step_by_kind={k: round(v, 2) for k, v in kinds.most_common()},
               costliest_ops_ms={k: round(v, 2) for k, v in ops.most_common(12)})
    write_report(out, a.out)


if __name__ == "__main__":
    main()
