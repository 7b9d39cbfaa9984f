#!/bin/bash
# Paper 001 Tab. 2 on the committed conditional Glows: CW-L2 and the boundary attack, each plain and
# aware of the detector (CW's threshold term; the boundary attack with rejection as a class), on 100
# correctly classified test images. The detector is the paper's: one threshold on log p(x) at the
# highest test bits/dim (every test image accepted), beside the per-class p1 one; success within the
# paper's L2 budget of 1.5 at 32x32 (0.375 at 8x8: the same per-pixel size), judged under the
# attack's own noise draw as the paper does (success_rate_attack_draw; a fresh draw beside it).
# The 32x32 Glows (glow_mnist5k, the Fashion-MNIST ones padded from 28x28) at the paper's 1.5;
# a model not trained yet is skipped. About 10 min per model and threshold on 2 CPU cores (the
# Fashion-MNIST Glow: about 15 min).
#   bash bench/paper001_table2.sh   ->  bench/results/table2_<model>_<threshold>.json
set -e
cd "$(dirname "$0")/.."
source bench/lib.sh
ATTACKS=cw_l2_untargeted_c10,cw_l2_kappa1_threshold,boundary,boundary_untargeted
run() {  # model, threshold, max L2
  local out=bench/results/table2_$1_$2.json
  untrained $1 && return 0
  stale $out || return 0
  $PY evaluate.py --workdir pretrained/$1 --suites adversarial --noplots --attacks $ATTACKS \
      --attack_images 100 --black_box_images 100 --max_l2 $3 --max_test_bpd_threshold \
      --attack_threshold $2 --out $out
}
for V in reweighted split; do
  for T in bpd_test_max p1; do run glow_digits_$V $T 0.375; done
done
run glow_mnist5k bpd_test_max 1.5
for V in reweighted split; do run glow_fashion_mnist_$V bpd_test_max 1.5; done
