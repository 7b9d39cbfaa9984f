"""Cross-check: gcj's PGD L∞ against foolbox 3.3.4's LinfPGD at the same budget, steps and step size.

    pip install foolbox==3.3.4   # not a gcj requirement
    python bench/foolbox_crosscheck.py --workdir pretrained/glow_digits_base --num_images 200 \
        --out bench/results/foolbox_crosscheck_glow_digits_base.json

Both attack the same correctly classified test images through the class log-likelihoods as logits
(foolbox's cross-entropy = gcj's "ce" loss), 40 steps of eps/30 (foolbox's default relative step)
from a random start, at several eps; gcj also with its margin loss. Success = misclassified.
foolbox is eager (not jitted) and draws its random start from its own unseeded state.
"""
import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gcj  # noqa: E402
from gcj import attacks, data  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="pretrained/glow_digits_base")
    p.add_argument("--num_images", type=int, default=200)
    p.add_argument("--eps", default="1,2,4,8", help="L∞ budgets in /255")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import foolbox as fb

    clf = gcj.load(args.workdir)
    test = data.load_dataset(clf.config.data, "test")
    x_all = data.to_float(test.images)
    ll = clf.class_log_likelihoods(x_all)
    idx = np.flatnonzero(np.asarray(ll.argmax(1)) == test.labels)[:args.num_images]
    x, y = jnp.asarray(x_all[idx]), jnp.asarray(test.labels[idx])
    key = jax.random.key(0)

    def logits(v):  # deterministic noise key: the same function for both libraries
        return clf.log_likelihood_fn(clf.params, v, key)

    fmodel = fb.JAXModel(logits, bounds=(0, 1))
    rows = []
    for e in [float(v) for v in args.eps.split(",")]:
        eps = e / 255
        row = dict(eps_255=e)
        t0 = time.time()
        attack = fb.attacks.LinfPGD(rel_stepsize=1 / 30, steps=args.steps, random_start=True)
        _, clipped, success = attack(fmodel, x, y, epsilons=eps)
        row["foolbox_seconds"] = time.time() - t0
        pred = np.asarray(logits(clipped).argmax(1))
        row["foolbox_success"] = float(np.mean(pred != np.asarray(y)))
        row["foolbox_reported_success"] = float(np.mean(np.asarray(success)))
        for loss in ("ce", "margin"):
            t0 = time.time()
            r = attacks.pgd(lambda v, k: logits(v), x, y, jax.random.fold_in(key, int(e)), eps=eps, steps=args.steps,
                            step_size=eps / 30, loss=loss)
            r.x.block_until_ready()
            row[f"gcj_{loss}_seconds"] = time.time() - t0
            row[f"gcj_{loss}_success"] = float(np.mean(np.asarray(logits(r.x).argmax(1)) != np.asarray(y)))
        rows.append(row)
        print(json.dumps(row))
    result = dict(workdir=args.workdir, num_images=int(len(idx)), steps=args.steps, rel_stepsize=1 / 30,
                  random_start=True, foolbox=fb.__version__, rows=rows,
                  gcj_ce_at_least_foolbox=all(r["gcj_ce_success"] >= r["foolbox_success"] for r in rows))
    print(json.dumps(dict(gcj_ce_at_least_foolbox=result["gcj_ce_at_least_foolbox"])))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
