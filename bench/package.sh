#!/usr/bin/env bash
# Copies a trained workdir into pretrained/<name>: config, metrics, thresholds, report, plots and
# the model variables of the latest checkpoint (not its optimizer state: training cannot resume
# from a released model), so that `gcj.load(pretrained/<name>)` and evaluate.py work on it.
set -euo pipefail
src=$1 dst=$2
step=$(ls "$src/checkpoints" | grep -E '^[0-9]+$' | sort -n | tail -1)
rm -rf "$dst" && mkdir -p "$dst/checkpoints"
cp -r "$src/checkpoints/$step" "$dst/checkpoints/"
rm -rf "$dst/checkpoints/$step/train"
for f in $(find "$dst/checkpoints" -name commit_success.txt); do  # orbax's marker names where it wrote:
  echo "Checkpoint commit was successful to checkpoints/$step" > "$f"  # no path of this machine
done
cp "$src"/config.json "$src"/metrics.jsonl "$src"/thresholds.json "$dst/"
cp -r "$src/report" "$dst/"
rm -f "$dst"/report/events.out.tfevents.*  # (TensorBoard images of the plots: the PNGs are kept)
du -sh "$dst"
