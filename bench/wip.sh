#!/usr/bin/env bash
# Carries a long run's resumable state across machines that do not keep workdirs/ (a CPU run that
# takes several sittings): `save` packs what resuming needs into bench/wip/NAME.tar.gz, to commit;
# `restore` unpacks every such file into workdirs/ where no newer state is there. Delete the file
# (git rm) once its run is packaged into pretrained/: nothing only resuming needs stays in the tree.
#   bash bench/wip.sh save workdirs/score_fashion_mnist_cpu [more workdirs or files...]
#   bash bench/wip.sh restore
# A training workdir keeps config.json, metrics.jsonl, its latest checkpoint and scores/ (the
# closing scorings' kept batches); any other folder (`evaluate.py --resumable`'s <report>_scores/)
# or file (an attack's .partial.npz) is kept whole. Each lands back at the same path.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
mkdir -p bench/wip
case ${1:-} in
  save)
    shift
    for p in "$@"; do
      name=$(basename "$p")
      if [ -d "$p/checkpoints" ]; then
        last=$(latest_step "$p")
        keep=()
        for f in config.json metrics.jsonl scores ${last:+checkpoints/$last}; do
          [ -e "$p/$f" ] && keep+=("$p/$f")
        done
      else
        keep=("$p")
      fi
      stage=$(mktemp -d)  # a copy whose orbax markers name no path of this machine
      cp -r --parents "${keep[@]}" "$stage"
      scrub_markers "$stage"
      tar czf "bench/wip/$name.tar.gz" -C "$stage" --exclude='events.out.tfevents.*' "${keep[@]}"
      rm -rf "$stage"
      echo "bench/wip/$name.tar.gz: ${keep[*]} ($(du -h "bench/wip/$name.tar.gz" | cut -f1))"
    done ;;
  restore)
    for t in bench/wip/*.tar.gz; do
      [ -e "$t" ] || continue
      tar xzf "$t" --keep-newer-files --warning=no-ignore-newer && echo "restored $t" || echo "kept the newer files beside $t"
    done ;;
  *) echo "usage: bash bench/wip.sh save PATH... | restore" >&2; exit 2 ;;
esac
