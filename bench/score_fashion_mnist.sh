#!/usr/bin/env bash
# The score-based generative classifier (paper 004) on Fashion-MNIST, MNIST-5k out, made on a
# 2-core CPU; every step resumable (run the same command again after a stop):
#   TRAIN_FLAGS="--cpu_devices 1" nohup bash bench/score_fashion_mnist.sh > workdirs/score_fashion_mnist.log 2>&1 &
# 1. train.py, configs/score_fashion_mnist.py:cpu (10 epochs; thresholds from 300 + 300 images,
#    classified adaptively), then bench/package.sh into pretrained/sbgc_fashion_mnist;
# 2. evaluate.py exactly (every class by the ODE at rtol = atol = 1e-5) on N_TEST seeded test
#    images and N_OTHER training and MNIST-5k images, in kept batches of 20 (--resumable), the
#    test scores saved (--save_log_likelihoods). Sized from one image's cost: its ten classes take
#    about 2 min on one core (590-650 drift evaluations each, mid-training), so 300 + 100 + 100
#    images are hours of 2 cores;
# 3. bench/score_bound.py on those test images and their exact scores: the score_flow method on 5
#    of them (bits/dim against exact's), then the variational bound and classify='adaptive'
#    against exact on all of them.
# Its robustness runs: bench/score_fashion_mnist_robustness.sh.
# Steps 1-2 of pretrained/sbgc_fashion_mnist: training on 2 CPU cores (2.1 CPU-h), then its closing
# scorings, step 1's packaging and step 2 on one GPU (H200, about 5 min: TRAIN_FLAGS= PY=python3). With
# pretrained/sbgc_fashion_mnist present, step 1 is skipped (bench/regenerate.sh runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
W=workdirs/score_fashion_mnist_cpu P=pretrained/sbgc_fashion_mnist
N_TEST=${N_TEST:-300} N_OTHER=${N_OTHER:-100}
[ -d $P ] || [ -f $W/thresholds.json ] || $PY train.py --config configs/score_fashion_mnist.py:cpu --workdir $W ${TRAIN_FLAGS:-}
mkdir -p $W/report
[ -d $P ] || bash bench/package.sh $W $P
if stale $P/report/report.json; then
  $PY evaluate.py --workdir $P --set model.score.classify=exact --set eval_batch_size=20 \
      --ood_dataset mnist5k --ood_split all --max_test_images $N_TEST --max_images $N_OTHER \
      --save_log_likelihoods --resumable --out $P/report/report.json | tee $P/report/tables.txt
fi
out=bench/results/score_flow_sbgc_fashion_mnist.json  # (about 10 min on 2 CPU cores)
[ -f $out ] || $PY bench/score_bound.py --workdir $P --exact_from $P/report/report_log_likelihoods.npz \
    --parts score_flow --score_flow_images 5 --out $out
out=bench/results/score_bound_sbgc_fashion_mnist.json  # (hours of 2 CPU cores)
[ -f $out ] || $PY bench/score_bound.py --workdir $P --exact_from $P/report/report_log_likelihoods.npz \
    --parts bound,adaptive --draws 64 --adaptive_top 3 --calibration_images 0 --out $out
