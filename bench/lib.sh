# Shared by the bench scripts (source it): the Python to run, and which outputs need (re)making.
PY=${PY:-.venv/bin/python}
# true when the evaluate.py report FILE is missing, or was written by another gcj version
stale() {
  ! $PY -c "import json, sys, gcj; sys.exit(json.load(open(sys.argv[1])).get('gcj_version') != gcj.__version__)" \
    "$1" 2>/dev/null
}
