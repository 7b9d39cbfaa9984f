# Shared by the bench scripts (source it): the Python to run, and which outputs need (re)making.
PY=${PY:-.venv/bin/python}
# true when the evaluate.py report FILE is missing, or was written by another gcj version
stale() {
  ! $PY -c "import json, sys, gcj; sys.exit(json.load(open(sys.argv[1])).get('gcj_version') != gcj.__version__)" \
    "$1" 2>/dev/null
}
# true (after saying so) when pretrained/NAME does not exist yet: the caller skips that model
untrained() {
  [ -d "pretrained/$1" ] && return 1
  echo "skip $1 (not trained yet)"
}
# the newest complete orbax checkpoint step under the workdir DIR (empty if none)
latest_step() {
  ls "$1/checkpoints" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1 || true
}
# rewrites orbax's commit markers under DIR, which name the path written to, without this machine's path
scrub_markers() {
  find "$1" -name commit_success.txt -exec sh -c 'echo "Checkpoint commit was successful" > "$1"' _ {} \;
}
