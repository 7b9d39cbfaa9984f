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
# 4. robustness (ROBUSTNESS=1; each part resumable, hours to tens of hours of 2 CPU cores in all):
#    PGD L∞ 8/255 and L2 0.5 through the variational bound on 20 seeded test images, judged by the
#    exact classifier (2 images per chunk: the bound's gradient keeps every draw's activations,
#    22 GB for 5 images), and through the ODE on the first 11 of the same (paper 004 Tab. 3; at
#    least 10 stay after the run's own check that each is classified correctly; 41 gradients per
#    image and threat, 2 min each on 2 cores shared with another job); the corruption suite on 10 test images (75 sets, exact), the cross-family
#    table's corruption cell; the APGD worst case at L∞ 8/255 through the bound on 10, judged by exact
#    (APGD-CE, APGD-DLR and the rejection-aware APGD, 20 steps, 2 draws per gradient: APGD-T's
#    9 targets of 100 steps would take 1.5 h per image here), the table's worst-case cells (the
#    adversarial suite does not resume: about 2 h of 2 cores in one sitting).
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
[ -n "${ROBUSTNESS:-}" ] || exit 0
A="--steps 20 --eot 2 --check_draws 4 --chunk 2"
todo() { [ ! -f "$1" ] || [ -f "$1.partial.npz" ]; }  # (an attack writes its report after each threat)
out=bench/results/score_attack_elbo_sbgc_fashion_mnist.json
todo $out && $PY bench/score_attack.py --workdir $P --through elbo --num_images 20 --ode_gradient_images 0 $A --out $out
out=bench/results/score_attack_ode_sbgc_fashion_mnist.json
todo $out && $PY bench/score_attack.py --workdir $P --through ode $A --out $out \
    --test_indices 2427,9289,652,7881,6414,9709,7901,2961,2691,1379,7454
if stale $P/report/robustness.json; then
  $PY evaluate.py --workdir $P --set model.score.classify=exact --suites clean,corruptions --max_test_images 10 \
      --max_images 10 --corruption_images 10 --noplots --resumable --out $P/report/robustness.json
fi
mkdir -p bench/results/worst_case
out=bench/results/worst_case/sbgc_fashion_mnist.json
if stale $out; then
  $PY evaluate.py --workdir $P --set model.score.classify=exact --suites clean,adversarial --max_test_images 20 \
      --max_images 20 --attacks apgd_ce_linf_8,apgd_dlr_linf_8,apgd_rejection_linf_8 --apgd_steps 20 \
      --attack_surrogate elbo --attack_images 10 --eot 2 --eot_check_draws 4 --noplots --out $out
fi
