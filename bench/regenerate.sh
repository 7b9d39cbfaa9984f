#!/usr/bin/env bash
# Brings every committed evaluate.py output to this gcj version (after a change of the evaluation's
# random draws or definitions), cheapest first; resumable: a report already of this version is
# kept. ~8-10 h on 2 CPU cores in all, most of it the robustness reports and the score models.
#   nohup bash bench/regenerate.sh > workdirs/regenerate.log 2>&1 &
# Then the README's tables: bench/results_table.py, bench/paper001_tables.py, bench/paper002_tables.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
report() {  # model, evaluate.py flags...: pretrained/<model>/report/report.json (+ tables.txt, plots)
  local name=$1; shift
  local out=pretrained/$name/report/report.json
  if ! stale "$out"; then echo "skip $name report (done)"; return; fi
  echo "== $name report $(date +%T)"
  $PY evaluate.py --workdir pretrained/$name "$@" --out "$out" > pretrained/$name/report/tables.txt
}
# the reports train.py / the pretraining scripts made (pretrained/README.md: the same flags)
for m in glow_digits_base glow_digits_reweighted glow_digits_split ibinn_digits_beta1 ibinn_digits_beta4 \
         ibinn_digits_beta16 ibinn_digits_betainf; do
  report $m --ood_dataset fashion_mnist
done
for m in disc_fashion_mnist sdim_fashion_mnist sdim_logit_fashion_mnist ibinn_fashion_mnist_beta1 \
         ibinn_fashion_mnist_betainf; do
  report $m --ood_dataset mnist5k --ood_split all
done
for m in glow_mnist5k glow_bg_mnist_5 glow_bg_mnist_1 glow_bg_mnist_0; do
  report $m --suites clean,interpolation --interpolation_pairs 1200 --interpolation_steps 100
done
bash bench/robustness_all.sh
bash bench/paper002_cw.sh
bash bench/worst_case_all.sh
for s in paper001_table2 boundary_fashion_mnist corruption_likelihood explain_fashion_mnist; do
  bash bench/$s.sh
done
for m in glow_fashion_mnist_base glow_fashion_mnist_reweighted glow_fashion_mnist_split; do
  report $m --ood_dataset mnist5k --ood_split all
done
bash bench/score_fashion_mnist.sh  # (its report: hours of 2 CPU cores)
bash bench/score_fashion_mnist_robustness.sh  # (its evaluate.py reports ~2 h; its attack reports kept)
report sbgc_digits --ood_dataset fashion_mnist --max_images 360
out=pretrained/sbgc_digits/report/robustness.json
if stale $out; then
  $PY evaluate.py --workdir pretrained/sbgc_digits --suites clean,adversarial,interpolation,nll_gap \
    --attacks fgsm_linf_8 --eot 1 --eot_check_draws 4 --attack_images 20 --max_test_images 60 --max_images 40 \
    --interpolation_pairs 5 --out $out > pretrained/sbgc_digits/report/robustness.txt
fi
$PY bench/pretrained_index.py --write  # pretrained/README.md's table
echo "done $(date +%T)"
