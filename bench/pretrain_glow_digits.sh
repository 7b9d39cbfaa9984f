#!/usr/bin/env bash
# Trains, evaluates and packages the three conditional Glow variants of paper 001 (Tab. 1: Base,
# Reweighted, Split prior) on scikit-learn's 8x8 digits; ~5 min each on 2 CPU cores. Resumable.
#   nohup bash bench/pretrain_glow_digits.sh > workdirs/glow_digits.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
W=${W:-workdirs}
for v in base reweighted split; do
  $PY train.py --config configs/glow_digits.py --workdir $W/glow_digits_$v --config.model.glow.variant=$v
  mkdir -p $W/glow_digits_$v/report
  $PY evaluate.py --workdir $W/glow_digits_$v --ood_dataset fashion_mnist \
      --out $W/glow_digits_$v/report/report.json | tee $W/glow_digits_$v/report/tables.txt
  bash bench/package.sh $W/glow_digits_$v pretrained/glow_digits_$v
done
