"""The command-line programs: ``gcj-train`` / ``python train.py`` and ``gcj-evaluate`` /
``python evaluate.py`` (each module defines its absl flags and ``main``)."""
