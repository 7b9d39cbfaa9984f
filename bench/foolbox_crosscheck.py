"""Cross-check: gcj's PGD and APGD L∞ against foolbox 3.3.4's LinfPGD and FMN at the same budgets.

    pip install foolbox==3.3.4   # not a gcj requirement
    python bench/foolbox_crosscheck.py --workdir pretrained/glow_digits_base --num_images 200 \
        --out bench/results/foolbox_crosscheck_glow_digits_base.json
    python bench/foolbox_crosscheck.py --workdir pretrained/sdim_fashion_mnist --num_images 100 --eps 8 \
        --apgd --out bench/results/foolbox_crosscheck_sdim_fashion_mnist.json

All attack the same correctly classified test images through the class log-likelihoods as logits
(foolbox's cross-entropy = gcj's "ce" loss). PGD: 40 steps of eps/30 (foolbox's default relative
step) from a random start, at several eps; gcj also with its margin loss. With ``--apgd``: foolbox's
FMN (L∞ minimum-norm, ``--fmn_steps`` 100; a success counts within eps) and gcj's APGD-CE, APGD-DLR
(100 steps) and APGD-T (9 targets × 100), and per image which of them broke which images
(``foolbox_only``: images a foolbox attack broke that none of gcj's APGD runs did).
Success = misclassified. foolbox is eager (not jitted) and draws its random start from its own
unseeded state.
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
    p.add_argument("--apgd", action="store_true", help="also foolbox FMN and gcj's APGD-CE / DLR / T")
    p.add_argument("--fmn_steps", type=int, default=100)
    p.add_argument("--apgd_steps", type=int, default=100)
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
        if args.apgd:
            broken = {"foolbox_pgd": np.asarray(logits(clipped).argmax(1)) != np.asarray(y)}
            t0 = time.time()
            _, clipped, _ = fb.attacks.LInfFMNAttack(steps=args.fmn_steps)(fmodel, x, y, epsilons=eps)
            row["foolbox_fmn_seconds"] = time.time() - t0
            broken["foolbox_fmn"] = ((np.asarray(logits(clipped).argmax(1)) != np.asarray(y))
                                     & (np.abs(np.asarray(clipped) - np.asarray(x)).max(axis=(1, 2, 3)) <= eps + 1e-6))
            fn = lambda v, k: logits(v)  # noqa: E731
            for name, run in (("apgd_ce", lambda k: attacks.apgd(fn, x, y, k, eps=eps, steps=args.apgd_steps, loss="ce")),
                              ("apgd_dlr", lambda k: attacks.apgd(fn, x, y, k, eps=eps, steps=args.apgd_steps, loss="dlr")),
                              ("apgd_t", lambda k: attacks.apgd_targeted(fn, x, y, k, eps=eps, steps=args.apgd_steps))):
                t0 = time.time()
                r = run(jax.random.fold_in(key, int(e)))
                r.x.block_until_ready()
                row[f"gcj_{name}_seconds"] = time.time() - t0
                assert float(jnp.abs(r.x - x).max()) <= eps + 1e-6
                broken[f"gcj_{name}"] = np.asarray(logits(r.x).argmax(1)) != np.asarray(y)
            for k, v in broken.items():
                row[f"{k}_success"] = float(v.mean())
            gcj_any = broken["gcj_apgd_ce"] | broken["gcj_apgd_dlr"] | broken["gcj_apgd_t"]
            row["gcj_apgd_any_success"] = float(gcj_any.mean())
            row["foolbox_only"] = {k: int((broken[k] & ~gcj_any).sum()) for k in ("foolbox_pgd", "foolbox_fmn")}
        rows.append(row)
        print(json.dumps(row))
    result = dict(workdir=args.workdir, num_images=int(len(idx)), steps=args.steps, rel_stepsize=1 / 30,
                  random_start=True, foolbox=fb.__version__, rows=rows,
                  gcj_ce_at_least_foolbox=all(r["gcj_ce_success"] >= r["foolbox_success"] for r in rows))
    if args.apgd:
        result.update(fmn_steps=args.fmn_steps, apgd_steps=args.apgd_steps, gcj_apgd_at_least_foolbox=all(
            max(r[f"gcj_{k}_success"] for k in ("apgd_ce", "apgd_dlr", "apgd_t"))
            >= max(r["foolbox_pgd_success"], r["foolbox_fmn_success"]) for r in rows))
    print(json.dumps({k: v for k, v in result.items() if k.endswith("foolbox")}))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
