"""Times the jitted training step of the paper models on this machine's default device.

    .venv/bin/python bench/step_time.py --out bench/results/step_time_cpu.json
Writes seconds per step (median of --steps after 2 warm-up steps) and the implied seconds per
Fashion-MNIST epoch (58000 images / batch 128 = 453 steps).
"""
import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gcj import classifier  # noqa: E402
from gcj.recipes import paper_config  # noqa: E402
from gcj.train import make_optimizer, make_train_step  # noqa: E402


def time_step(family, dataset, batch, steps):
    c = paper_config(family, dataset)
    module = classifier.build_module(c)
    v = classifier.init_variables(c, jax.random.key(0))
    tx = make_optimizer(c.optim, 100, 1, v["params"])
    state = dict(step=jnp.zeros((), jnp.int32), params=v["params"], batch_stats=v["batch_stats"],
                 opt_state=tx.init(v["params"]))
    step = jax.jit(make_train_step(module, tx, c.data), donate_argnums=0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 32, 32, c.data.channels)).astype(np.uint8)
    labels = rng.integers(0, 10, batch).astype(np.int32)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        state, m = step(state, images, labels, jax.random.key(i))
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[2:]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    a = p.parse_args()
    rows = []
    for family, dataset in [("disc", "fashion_mnist"), ("sdim", "fashion_mnist"),
                            ("disc", "cifar10"), ("sdim", "cifar10")]:
        s = time_step(family, dataset, a.batch, a.steps)
        rows.append(dict(family=family, dataset=dataset, batch=a.batch, seconds_per_step=s,
                         seconds_per_fashion_epoch=s * (58000 // a.batch)))
        print(rows[-1], flush=True)
    out = dict(device=str(jax.devices()[0].device_kind), platform=jax.default_backend(),
               device_count=jax.device_count(), cpu_count=os.cpu_count(),
               machine=platform.machine(), jax=jax.__version__, rows=rows)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
