#!/bin/bash
# Paper 004 Fig. 4 / Tab. 2 and paper 002 Tab. 5's tests on committed models: the corruption suite
# (15 corruptions x 5 severities, generated offline) on a seeded random 10% of the test images
# (paper 004's subset): accuracy (all; without the three noises) and mean log p(x) per set, OOD
# AUROC of max_y log p(x|y) and paper 002's three tests on log p(x) (fitted on 5000 training images).
# bash bench/corruption_likelihood.sh  ->  bench/results/corruptions_<model>/ (report.json, PNGs)
set -e
cd "$(dirname "$0")/.."
source bench/lib.sh  # PY, stale: a report already of this gcj version is kept
for M in ibinn_fashion_mnist_beta1 glow_digits_base; do
  stale bench/results/corruptions_$M/report.json || continue
  $PY evaluate.py --workdir pretrained/$M --suites corruptions --corruption_subset random \
      --corruption_images $([ $M = glow_digits_base ] && echo 36 || echo 1000) --max_images 5000 --out bench/results/corruptions_$M/report.json
done
