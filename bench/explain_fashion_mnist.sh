#!/bin/bash
# Paper 002 §4.3 and Tab. 4 on the committed Fashion-MNIST models: the explain suite (Figs. 6, 8,
# 10; MNIST-5k as the out-set) on the two IB-INNs (beta = 1, inf), and the calibration suite (the
# top-label ECE and paper 002's over all class probabilities) on them and on SDIM and Disc.
# bash bench/explain_fashion_mnist.sh  ->  bench/results/explain_<model>/ (report.json and PNGs),
#                                          bench/results/calibration_<model>.json
set -e
cd "$(dirname "$0")/.."
source bench/lib.sh  # PY, stale: a report already of this gcj version is kept
for M in ibinn_fashion_mnist_beta1 ibinn_fashion_mnist_betainf; do
  stale bench/results/explain_$M/report.json || continue
  $PY evaluate.py --workdir pretrained/$M --suites explain --ood_dataset mnist5k --ood_split all \
      --max_images 5000 --out bench/results/explain_$M/report.json
done
for M in ibinn_fashion_mnist_beta1 ibinn_fashion_mnist_betainf sdim_fashion_mnist disc_fashion_mnist; do
  stale bench/results/calibration_$M.json || continue
  $PY evaluate.py --workdir pretrained/$M --suites calibration --noplots --out bench/results/calibration_$M.json
done
