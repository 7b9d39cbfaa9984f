#!/usr/bin/env bash
# Two of paper 000 / 002's definitions measured against gcj's choice, each on Fashion-MNIST with the
# committed model's recipe and seed, one field changed (same epochs):
#   - SDIM's NLL and margin losses on log p (paper 000, loss_scale=total) instead of log p / d
#     (per_dim: the committed pretrained/sdim_fashion_mnist);
#   - the beta = 1 IB-INN trained without Gaussian input noise (noise=0: only the uniform
#     dequantization, as paper 002) instead of N(0, 0.01^2) (pretrained/ibinn_fashion_mnist_beta1),
#     then paper 002 Tabs. 7-9's CW attacks on it (as bench/paper002_cw.sh, log q in nats).
# Reports: bench/results/ablations/<name>.json (evaluate.py, MNIST-5k out) and
# bench/results/paper002_cw_<name>.json; the comparison by
#   .venv/bin/python bench/results_table.py ablations > bench/results/ablations_table.md
# Resumable (train.py resumes; a report of this gcj version is kept). On 2 CPU cores: SDIM 1 to 1.5 h,
# IB-INN ~30 min, its CW table ~10 min.
#   [TRAIN_FLAGS="--cpu_devices 1"] nohup bash bench/ablations_fashion_mnist.sh > workdirs/ablations.log 2>&1 &
# (one JAX device when other jobs share the cores: no device then waits for another to catch up)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
W=${W:-workdirs}
OUT=bench/results/ablations
mkdir -p $OUT
evaluate() {  # name
  stale $OUT/$1.json || return 0
  $PY evaluate.py --workdir $W/$1 --ood_dataset mnist5k --ood_split all --noplots --out $OUT/$1.json
}
$PY train.py --config configs/ibinn_fashion_mnist.py --workdir $W/ibinn_fashion_mnist_beta1_nonoise \
    --config.model.ibinn.beta=1 --config.model.ibinn.noise=0 ${TRAIN_FLAGS:-}
evaluate ibinn_fashion_mnist_beta1_nonoise
D=""
for K in 0.01 1 inf; do D=$D,cw_l2_kappa${K}_d66,cw_l2_kappa${K}_d1000; done
if stale bench/results/paper002_cw_ibinn_fashion_mnist_beta1_nonoise.json; then
  $PY evaluate.py --workdir $W/ibinn_fashion_mnist_beta1_nonoise --suites adversarial --noplots \
    --attacks cw_l2_kappa0.01,cw_l2_kappa1,cw_l2_kappainf$D --nodetector_per_dim --attack_images 200 \
    --max_images 5000 --out bench/results/paper002_cw_ibinn_fashion_mnist_beta1_nonoise.json
fi
$PY train.py --config configs/sdim_fashion_mnist.py --workdir $W/sdim_fashion_mnist_total \
    --config.num_epochs=15 --config.optim.schedule=cosine --config.model.sdim.loss_scale=total ${TRAIN_FLAGS:-}
evaluate sdim_fashion_mnist_total
