#!/bin/bash
# Paper 000 Tab. 5 (untargeted, rejection-unaware boundary attack) beside paper 001's targeted
# one with rejection as a class, on the committed SDIM and Disc Fashion-MNIST ResNet10s:
# 100 correctly classified test images, 1000 steps; thresholds from 5000 training images.
# bash bench/boundary_fashion_mnist.sh  ->  bench/results/boundary_<model>.json
set -e
cd "$(dirname "$0")/.."
source bench/lib.sh  # PY, stale: a report already of this gcj version is kept
for M in sdim_fashion_mnist disc_fashion_mnist; do
  stale bench/results/boundary_$M.json || continue
  $PY evaluate.py --workdir pretrained/$M --suites adversarial --noplots --attacks boundary,boundary_untargeted \
      --attack_images 100 --black_box_images 100 --boundary_steps 1000 --max_images 5000 \
      --out bench/results/boundary_$M.json
done
