"""How well a score model's classes separate, cheaply (no ODE): the accuracy of its variational
bound (``gcj.models.score.class_bounds``, the family's attack surrogate 'elbo') on the validation images training scores, and where the
true class ranks, for a workdir in or after training (its newest checkpoint). For watching a
score model train: the exact classifier is seconds to minutes per image on a CPU.

    .venv/bin/python bench/score_monitor.py --workdir workdirs/score_fashion_mnist_cpu --num_images 100
"""
import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gcj  # noqa: E402
from gcj import classifier, data  # noqa: E402
from gcj.train import scored_subset  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", required=True)
    p.add_argument("--num_images", type=int, default=100)
    p.add_argument("--draws", type=int, default=64)
    p.add_argument("--batch", type=int, default=25)
    args = p.parse_args()
    clf = gcj.load(args.workdir, overrides={"model.score.elbo_draws": str(args.draws)})
    val = scored_subset(data.load_train_val(clf.config)[1], clf.config, "val")
    y = val.labels[:args.num_images]
    t0 = time.time()  # the bound through the contract (the family's attack surrogate 'elbo'), batched
    b = classifier.batched_log_likelihoods(classifier.surrogate(clf, "elbo"), val.images[:args.num_images],
                                           args.batch, jax.random.key(0))
    rank = (b > b[np.arange(len(y)), y][:, None]).sum(1)  # 0: the true class first
    steps = [int(d) for d in os.listdir(os.path.join(args.workdir, "checkpoints")) if d.isdigit()]
    print(json.dumps(dict(workdir=args.workdir, step=max(steps), num_images=len(y), draws=args.draws,
                          bound_accuracy=float(np.mean(rank == 0)), true_class_rank_mean=float(rank.mean()),
                          seconds=time.time() - t0)))

if __name__ == "__main__":
    main()
