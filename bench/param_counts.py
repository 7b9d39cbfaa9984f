"""Parameter counts of the paper configs via jax.eval_shape (no FLOPs), paper 000 / 003 vs gcj.

    .venv/bin/python bench/param_counts.py > bench/results/param_counts.md
    .venv/bin/python bench/param_counts.py flows > bench/results/param_counts_flows.md
"""
import os
import sys

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from gcj import classifier  # noqa: E402
from gcj.recipes import paper_config  # noqa: E402
from gcj.models.sdim import count_params  # noqa: E402

ROWS = [("disc", "fashion_mnist", "Disc ResNet10", "0.31M"), ("sdim", "fashion_mnist", "SDIM ResNet10", "0.36M"),
        ("disc", "cifar10", "Disc ResNet26", "4.39M"), ("sdim", "cifar10", "SDIM ResNet26", "4.60M"),
        ("sdim_logit", "fashion_mnist", "SDIM-logit head (C=10, d=10)", "~12k (reference code)")]


# configs/<name>.py of the flow families: (paper's count, where it is stated)
FLOWS = [("glow_mnist", "not stated; App. B: 4 levels × 12 steps × 128 channels"),
         ("glow_cifar10", "not stated; App. B: 4 levels × 16 steps × 256 channels"),
         ("glow_fashion_mnist", "(the MNIST architecture, scaled down for 2 CPU cores)"),
         ("ibinn_mnist", "—"), ("ibinn_cifar10", "—"),
         ("ibinn_imagenet", "55.4M network, 77.5M with μ (paper 002 Tab. 2)")]


def flows():
    import importlib.util
    print("| config | paper (001 / 002) | gcj network | gcj prior (μ, class weights) | gcj total |")
    print("|---|---|---|---|---|")
    for name, paper in FLOWS:
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        c = m.get_config()
        p = jax.eval_shape(lambda: classifier.init_variables(c, jax.random.key(0)))["params"]
        prior = count_params(p["prior"])
        print(f"| {name} | {paper} | {count_params(p) - prior:,} | {prior:,} | {count_params(p):,} |")


def main():
    print("| model | paper | gcj without T_omega | gcj with T_omega (MI critic) |")
    print("|---|---|---|---|")
    for family, dataset, label, paper in ROWS:
        c = paper_config(family, dataset)
        p = jax.eval_shape(lambda: classifier.init_variables(c, jax.random.key(0)))["params"]
        total, critic = count_params(p), count_params(p.get("critic", {}))
        if family == "sdim_logit":
            total -= count_params(p["encoder"]["base"])  # the frozen base is not SDIM-logit's own
        without = total - critic
        print(f"| {label} | {paper} | {without:,} | {total:,} |" if critic else
              f"| {label} | {paper} | {without:,} | — |")


if __name__ == "__main__":
    flows() if sys.argv[1:] == ["flows"] else main()
