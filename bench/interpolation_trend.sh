#!/usr/bin/env bash
# Paper 001's interpolations against training: does the share of never-rejected paths fall as the
# plain-digit Glow converges? configs/glow_bg_mnist.py on mnist5k (the committed glow_mnist5k's
# recipe) at a constant learning rate of 1e-3 (so that stopping and resuming at any epoch is the
# same run), evaluated after 10, 20, 40, 80 and 160 epochs with paper 001's rule (1,200 pairs,
# 100 steps): bench/results/interpolation_trend/epoch_<E>.json, then the table and plot by
#   .venv/bin/python bench/interpolation_trend.py
# Resumable (train.py resumes; a report already of this gcj version is kept). ~9 s per epoch alone
# (15-20 s beside another job) and ~1.5 min per evaluation on 2 CPU cores: ~45 min in all.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
W=${W:-workdirs}/glow_mnist5k_trend
OUT=bench/results/interpolation_trend
mkdir -p $OUT
for E in ${EPOCHS:-10 20 40 80 160}; do
  stale $OUT/epoch_$E.json || continue
  $PY train.py --config configs/glow_bg_mnist.py --workdir $W --config.data.name=mnist5k \
      --config.optim.schedule=constant --config.num_epochs=$E
  $PY evaluate.py --workdir $W --suites clean,interpolation --interpolation_pairs 1200 \
      --interpolation_steps 100 --noplots --out $OUT/epoch_$E.json
done
