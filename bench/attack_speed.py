"""Gradient attacks with gcj's convolutions (``conv_lib.Conv``) against jax.lax's, on committed models.

    .venv/bin/python bench/attack_speed.py --out bench/results/attack_speed_cpu.json

PGD (L-inf, eps 0.1, ``--steps`` steps, margin loss) on ``--num_images`` test images of each model,
once with the families' convolutions as they are (``conv_lib.conv_general_dilated``: the input gradient
an NHWC/HWIO convolution, fast inside the attack's ``fori_loop`` on XLA:CPU) and once with
``jax.lax.conv_general_dilated`` swapped in (JAX's own input gradient, which XLA:CPU runs as a
naive loop nest inside loops): seconds per attack after compiling (best of 3) and the largest
difference between the two adversarial batches (the same maths).
"""
import argparse
import functools
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gcj  # noqa: E402
from gcj import attacks, data  # noqa: E402
from gcj import conv as conv_lib  # noqa: E402
from machine import best_seconds, cpu_model, write_report  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["sdim_fashion_mnist", "disc_fashion_mnist",
                                                   "glow_digits_base", "ibinn_fashion_mnist_beta1"])
    p.add_argument("--num_images", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    ours = conv_lib.Conv
    rows = {}
    for name in a.models:
        row = {}
        for conv, swap in (("gcj", ours), ("lax", functools.partial(nn.Conv))):
            conv_lib.Conv = swap  # looked up when the model is traced
            clf = gcj.load(os.path.join("pretrained", name))  # fresh functions: traced again
            test = data.load_dataset(clf.config.data, "test")
            x, y = data.to_float(test.images[:a.num_images]), jnp.asarray(test.labels[:a.num_images])
            fn = lambda v, k, clf=clf: clf.log_likelihood_fn(clf.params, v, k)  # noqa: E731
            attack = lambda fn=fn, x=x, y=y: attacks.pgd(fn, x, y, jax.random.key(0), eps=0.1, steps=a.steps)  # noqa: E731
            row[f"{conv}_seconds"], row[f"{conv}_x"] = best_seconds(attack), attack().x
        conv_lib.Conv = ours
        row["lax_over_gcj"] = row["lax_seconds"] / row["gcj_seconds"]
        row["max_abs_difference"] = float(jnp.abs(row.pop("gcj_x") - row.pop("lax_x")).max())
        rows[name] = row
        print(name, row, flush=True)
    write_report(dict(command="python bench/attack_speed.py " + " ".join(sys.argv[1:]), cpu=cpu_model(),
                      cpu_count=os.cpu_count(), jax=jax.__version__, devices=jax.device_count(),
                      attack=dict(name="pgd", norm="linf", eps=0.1, steps=a.steps, loss="margin",
                                  num_images=a.num_images),
                      models=rows), a.out)


if __name__ == "__main__":
    main()
