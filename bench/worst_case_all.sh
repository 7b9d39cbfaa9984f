#!/usr/bin/env bash
# The per-image worst case over the autoattack ensemble (APGD-CE, APGD-T, Square, the rejection-aware
# APGD and PGD at L-inf 8/255; APGD-CE, APGD-T, rejection-aware APGD at L2 0.5; untargeted CW L2) on every
# committed model: bench/results/worst_case/<name>.json, table by
#   .venv/bin/python bench/results_table.py worst_case > bench/results/worst_case_table.md
# Sizes (2 CPU cores): 8x8 digits 100 attacked images, Fashion-MNIST 50; APGD 100 steps (APGD-T:
# 9 targets x 100), Square 5000 queries (Fashion-MNIST: 1000), CW 100 steps; EoT draws per gradient
# for the stochastic (dequantizing) flows: $EOT (default 5). DIGITS= / FASHION= pick models ("" for none).
#   nohup bash bench/worst_case_all.sh > workdirs/worst_case.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
EOT=${EOT:-5}
mkdir -p bench/results/worst_case
run() {  # name, extra flags...
  local name=$1; shift
  untrained $name && return 0
  local out=bench/results/worst_case/$name.json
  if ! stale "$out"; then echo "skip $name (done)"; return; fi
  echo "== $name $(date +%T)"
  $PY evaluate.py --workdir pretrained/$name --suites clean,adversarial --attacks autoattack --noplots \
    --out "$out.tmp" --eot "$EOT" --cw_steps 100 "$@" > "bench/results/worst_case/$name.txt"
  mv "$out.tmp" "$out"
}
DIGITS=${DIGITS-"glow_digits_base glow_digits_reweighted glow_digits_split ibinn_digits_beta1 ibinn_digits_beta4 ibinn_digits_beta16 ibinn_digits_betainf"}
FASHION=${FASHION-"disc_fashion_mnist sdim_fashion_mnist sdim_logit_fashion_mnist ibinn_fashion_mnist_beta1 ibinn_fashion_mnist_betainf glow_fashion_mnist_base glow_fashion_mnist_reweighted glow_fashion_mnist_split"}
for m in $DIGITS; do run $m --attack_images 100; done
for m in $FASHION; do run $m --attack_images 50 --square_queries 1000; done
echo "done $(date +%T)"
