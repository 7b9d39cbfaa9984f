#!/usr/bin/env bash
# Copies a trained workdir into pretrained/<name>: config, metrics, thresholds, report, plots and
# the model variables of the latest checkpoint (not its optimizer state: training cannot resume
# from a released model), so that `gcj.load(pretrained/<name>)` and evaluate.py work on it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
src=$1 dst=$2
step=$(latest_step "$src")
rm -rf "$dst" && mkdir -p "$dst/checkpoints"
cp -r "$src/checkpoints/$step" "$dst/checkpoints/"
rm -rf "$dst/checkpoints/$step/train"
scrub_markers "$dst/checkpoints"
cp "$src"/config.json "$src"/metrics.jsonl "$src"/thresholds.json "$dst/"
cp -r "$src/report" "$dst/"
rm -f "$dst"/report/events.out.tfevents.*  # (TensorBoard images of the plots: the PNGs are kept)
du -sh "$dst"
