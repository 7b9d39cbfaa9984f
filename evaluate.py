"""Evaluates a train.py workdir: python evaluate.py --workdir <dir> [--suites ...] (the same program
as the installed ``gcj-evaluate``: gcj/scripts/evaluate.py; --help lists the flags)."""
from gcj.scripts.evaluate import main

if __name__ == "__main__":
    main()
