#!/usr/bin/env bash
# Trains, evaluates (OOD: $OOD, by default Fashion-MNIST resized to the model's size) and packages
# one model per value of one config field; resumable (re-run to continue after an interruption).
#   [OOD="mnist5k --ood_split all"] [TRAIN_FLAGS="--cpu_devices 1"] bash bench/pretrain_sweep.sh CONFIG FIELD NAME_PREFIX VALUE...
# e.g. paper 001 Tab. 1 (Glow variants) and paper 002 Tab. 3 (IB-INN beta) on 8x8 digits, ~3-5
# min per model on 2 CPU cores:
#   nohup bash bench/pretrain_sweep.sh glow_digits model.glow.variant glow_digits_ base reweighted split > workdirs/glow_digits.log 2>&1 &
#   nohup bash bench/pretrain_sweep.sh ibinn_digits model.ibinn.beta ibinn_digits_beta 1 4 16 inf > workdirs/ibinn_digits.log 2>&1 &
# and Fashion-MNIST -> MNIST OOD (paper 002 Sec. 3.3), ~30 min per model (ran two at once: ~50):
#   OOD="mnist5k --ood_split all" nohup bash bench/pretrain_sweep.sh ibinn_fashion_mnist model.ibinn.beta ibinn_fashion_mnist_beta 1 inf > workdirs/ibinn_fashion_mnist.log 2>&1 &
# and the Fashion-MNIST Glows (paper 001 Tab. 1's variants), ~1.5 h per model alone on the cores:
#   OOD="mnist5k --ood_split all" TRAIN_FLAGS="--cpu_devices 1" nohup bash bench/pretrain_sweep.sh glow_fashion_mnist model.glow.variant glow_fashion_mnist_ base reweighted split > workdirs/glow_fashion_mnist.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
W=${W:-workdirs}
OOD=${OOD:-fashion_mnist}
config=$1 field=$2 prefix=$3
shift 3
for v in "$@"; do
  name=$prefix$v
  $PY train.py --config configs/$config.py --workdir $W/$name --config.$field=$v ${TRAIN_FLAGS:-}
  mkdir -p $W/$name/report
  $PY evaluate.py --workdir $W/$name --ood_dataset $OOD \
      --out $W/$name/report/report.json | tee $W/$name/report/tables.txt
  bash bench/package.sh $W/$name pretrained/$name
done
