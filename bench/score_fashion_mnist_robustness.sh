#!/usr/bin/env bash
# The Fashion-MNIST score model's robustness (pretrained/sbgc_fashion_mnist; paper 004 Tab. 3 and the
# README cross-family table's cells), each part resumable (run the same command again after a stop;
# bench/wip.sh carries the partials across machines), tens of hours of 2 CPU cores in all:
#   nohup bash bench/score_fashion_mnist_robustness.sh > workdirs/score_fashion_mnist_robustness.log 2>&1 &
# PGD L∞ 8/255 and L2 0.5 through the variational bound on 20 seeded test images, judged by the
# exact classifier (2 images per chunk); the APGD worst case at L∞ 8/255 through the bound on 10
# (2 at a time), judged by exact
# (APGD-CE, APGD-DLR and the rejection-aware APGD, 20 steps, 2 draws per gradient: APGD-T's
# 9 targets of 100 steps would take 1.5 h per image here), the table's worst-case cells; the
# corruption suite on 10 test images (75 sets, exact), the table's corruption cell; PGD through
# the ODE on the first 11 of the bound's images (paper 004 Tab. 3; at least 10 stay after the
# run's own check that each is classified correctly; 40 gradients per image and threat, 33 to
# 43 s each per image on 2 cores, about 10 h for both threats: two images per chunk, one on each
# CPU device, where one image alone leaves the second device idle; a process per chunk and per
# judging draw, as XLA:CPU keeps memory from those gradients; the longest part, and the one to
# give a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
P=pretrained/sbgc_fashion_mnist
A="--steps 20 --eot 2 --check_draws 4"
todo() { [ ! -f "$1" ] || [ -f "$1.partial.npz" ]; }  # (an attack writes its report after each threat)
out=bench/results/score_attack_elbo_sbgc_fashion_mnist.json
todo $out && $PY bench/score_attack.py --workdir $P --through elbo --num_images 20 --ode_gradient_images 0 $A \
    --chunk 2 --out $out
mkdir -p bench/results/worst_case
out=bench/results/worst_case/sbgc_fashion_mnist.json
if stale $out; then
  $PY evaluate.py --workdir $P --set model.score.classify=exact --set eval_batch_size=2 \
      --suites clean,adversarial --max_test_images 20 \
      --max_images 20 --attacks apgd_ce_linf_8,apgd_dlr_linf_8,apgd_rejection_linf_8 --apgd_steps 20 \
      --attack_surrogate elbo --attack_images 10 --eot 2 --eot_check_draws 4 --noplots --resumable --out $out
fi
if stale $P/report/robustness.json; then
  $PY evaluate.py --workdir $P --set model.score.classify=exact --suites clean,corruptions --max_test_images 10 \
      --max_images 10 --corruption_images 10 --noplots --resumable --out $P/report/robustness.json
fi
out=bench/results/score_attack_ode_sbgc_fashion_mnist.json
while todo $out; do  # a process per piece of work: XLA:CPU keeps memory from the ODE's gradients
  $PY bench/score_attack.py --workdir $P --through ode $A --chunk 2 --stop_after 1 --out $out \
      --test_indices 2427,9289,652,7881,6414,9709,7901,2961,2691,1379,7454
done
