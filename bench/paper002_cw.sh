#!/bin/bash
# Paper 002 Tabs. 7-9 on the committed Fashion-MNIST IB-INNs: CW L2 (c = 10) at kappa = 0.01, 1, inf,
# each plain (d = 0) and with eq. 25's detector term (d = 66, 1000; log q in nats as printed, and per
# dimension: bench/results/paper002_cw_per_dim_<model>.json); 200 correctly classified test
# images with random targets, the paper's stopping rule (CW 300 steps at most, 3000 at kappa = inf),
# the OOD tests fitted on 5000 training images. Then the table (bench/paper002_tables.py).
# bash bench/paper002_cw.sh  ->  bench/results/paper002_cw_<model>.json (a report of this gcj version is not made again)
set -e
cd "$(dirname "$0")/.."
source bench/lib.sh
D=""
for K in 0.01 1 inf; do D=$D,cw_l2_kappa${K}_d66,cw_l2_kappa${K}_d1000; done
for M in ibinn_fashion_mnist_beta1 ibinn_fashion_mnist_betainf; do
  if stale bench/results/paper002_cw_$M.json; then
    $PY evaluate.py --workdir pretrained/$M --suites adversarial --noplots \
      --attacks cw_l2_kappa0.01,cw_l2_kappa1,cw_l2_kappainf$D --nodetector_per_dim --attack_images 200 \
      --max_images 5000 --out bench/results/paper002_cw_$M.json
  fi
  # eq. 25 with log q per dimension (the default) instead of in nats: the detector attacks again
  if stale bench/results/paper002_cw_per_dim_$M.json; then
    $PY evaluate.py --workdir pretrained/$M --suites adversarial --noplots --attacks ${D#,} --detector_per_dim \
      --attack_images 200 --max_images 5000 --out bench/results/paper002_cw_per_dim_$M.json
  fi
done
$PY bench/paper002_tables.py
