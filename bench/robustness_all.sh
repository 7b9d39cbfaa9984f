#!/usr/bin/env bash
# Runs the robustness suites (adversarial, corruptions, interpolation, nll_gap) on every committed
# pretrained model and writes pretrained/<name>/report/robustness.{json,txt} (+ plots beside them).
# Same attacks and budgets for every model (eq. 25 in nats, as these reports were made before
# --detector_per_dim became the default); sizes per dataset (2 CPU cores):
#   8x8 digits: 100 attacked images (10 black-box), CW 300 steps, all 360 test images corrupted;
#   Fashion-MNIST: 50 attacked images (5 black-box), CW 100 steps, boundary 300 steps,
#   LocalSearch 50 rounds, the first 300 test images corrupted, 20 interpolation pairs.
# The attacks are the 29 of gcj 0.3 (the APGD / Square ensemble came later: bench/worst_case_all.sh),
# one likelihood draw per gradient step (--eot 1), as these reports were made.
# Not sbgc_digits: its ODE likelihood of the 360 clean test images alone takes ~1 h here (README).
# DIGITS= / FASHION= pick models ("" for none):
#   nohup bash bench/robustness_all.sh > workdirs/robustness.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SUITES=clean,adversarial,corruptions,interpolation,nll_gap
ATTACKS=fgsm_linf_8,pgd_linf_4_ce,pgd_linf_4_margin,pgd_linf_6_ce,pgd_linf_6_margin,pgd_linf_8_ce,pgd_linf_8_margin,\
pgd_linf_unbounded,pgd_l2_0.5,pgd_l2_2,pgd_linf_8_rejection,pgd_linf_unbounded_rejection,cw_l2_kappa0.01,cw_l2_kappa1,\
cw_l2_kappainf,cw_l2_kappa0.01_d66,cw_l2_kappa0.01_d1000,cw_l2_kappa1_d66,cw_l2_kappa1_d1000,cw_l2_kappainf_d66,\
cw_l2_kappainf_d1000,cw_l2_kappa1_threshold,cw_l2_untargeted_c1,cw_l2_untargeted_c10,cw_l2_untargeted_c100,\
cw_l2_untargeted_c1000,boundary,boundary_untargeted,local_search
run() {  # name, extra flags...
  local name=$1; shift
  untrained $name && return 0
  local out=pretrained/$name/report/robustness.json
  if ! stale "$out"; then echo "skip $name (done)"; return; fi
  echo "== $name $(date +%T)"
  $PY evaluate.py --workdir pretrained/$name --suites "$SUITES" --out "$out.tmp" --attacks "$ATTACKS" --eot 1 "$@" \
    > pretrained/$name/report/robustness.txt
  mv "$out.tmp" "$out"
}
DIGITS=${DIGITS-"glow_digits_base glow_digits_reweighted glow_digits_split ibinn_digits_beta1 ibinn_digits_beta4 ibinn_digits_beta16 ibinn_digits_betainf"}
FASHION=${FASHION-"disc_fashion_mnist sdim_fashion_mnist sdim_logit_fashion_mnist ibinn_fashion_mnist_beta1 ibinn_fashion_mnist_betainf glow_fashion_mnist_base glow_fashion_mnist_reweighted glow_fashion_mnist_split"}
for m in $DIGITS; do run $m --attack_images 100 --black_box_images 10 --cw_steps_kappa_inf 300 --nodetector_per_dim \
  --corruption_images 360; done
for m in $FASHION; do
  run $m --attack_images 50 --black_box_images 5 --cw_steps 100 --cw_steps_kappa_inf 100 --nodetector_per_dim \
    --boundary_steps 300 --ls_rounds 50 \
    --corruption_images 300 --interpolation_pairs 20
done
echo "done $(date +%T)"
