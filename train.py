"""Trains a gcj classifier: python train.py --config configs/<name>.py --workdir <dir> [--config.k=v]
(the same program as the installed ``gcj-train``: gcj/scripts/train.py)."""
from gcj.scripts.train import main

if __name__ == "__main__":
    main()
