"""Cross-check: gcj's PGD and APGD L∞ against foolbox 3.3.4's LinfPGD and FMN at the same budgets,
and (``--cw``) gcj's CW L2 against foolbox's.

    pip install foolbox==3.3.4   # not a gcj requirement
    python bench/foolbox_crosscheck.py --workdir pretrained/glow_digits_base --num_images 200 \
        --out bench/results/foolbox_crosscheck_glow_digits_base.json
    python bench/foolbox_crosscheck.py --workdir pretrained/sdim_fashion_mnist --num_images 100 --eps 8 \
        --apgd --out bench/results/foolbox_crosscheck_sdim_fashion_mnist.json
    python bench/foolbox_crosscheck.py --workdir pretrained/glow_digits_base --num_images 50 --cw \
        --out bench/results/foolbox_cw_glow_digits_base.json
    (the committed file: foolbox's run of that command (1.6 h beside a training job), then gcj's part
    again with ``--reuse_foolbox`` <that file> once gcj's CW had its binary search)

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
    p.add_argument("--cw", action="store_true",
                   help="instead: CW L2 (untargeted, kappa 0) against foolbox's, with its binary search over c")
    p.add_argument("--cw_steps", type=int, default=1000, help="gcj's fixed-c CW step cap (per c)")
    p.add_argument("--cw_c", default="1,10,100", help="gcj's fixed c values (paper 002's attack, beside)")
    p.add_argument("--foolbox_cw_steps", type=int, default=10000, help="steps per c, both libraries' search")
    p.add_argument("--foolbox_cw_search", type=int, default=9, help="binary search steps over c, both libraries")
    p.add_argument("--reuse_foolbox", default=None,
                   help="take foolbox's CW figures from this earlier --out of the same run (workdir, images, "
                        "settings checked) instead of running it again (~1.5 h on 2 cores)")
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

    fmodel = fb.JAXModel(jax.jit(logits), bounds=(0, 1))
    if args.cw:
        return cw(args, fb, fmodel, logits, x, y, key, len(idx))
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


def cw(args, fb, fmodel, logits, x, y, key, num):
    """CW L2, untargeted at kappa 0, as a minimum-norm attack: foolbox 3.3.4's (Adam on tanh-space,
    ``--foolbox_cw_steps`` per c, ``--foolbox_cw_search`` binary-search steps over c from 1e-3,
    abort early: a tenth of the steps without a 1e-4 relative gain) against gcj's with the same
    search, steps and stopping rule (``attacks.cw_l2(search_steps=...)``: projected Adam on the
    pixels). Beside them gcj's fixed-c attack of paper 002 (each c of ``--cw_c``; per image the
    smallest L2 that fools). Success = misclassified; L2 over the successes. Also each attack's
    mean change of the pixels at exactly 0 or 1 (the background)."""
    y_np = np.asarray(y)
    edge = (np.asarray(x) == 0) | (np.asarray(x) == 1)
    settings = dict(steps=args.foolbox_cw_steps, binary_search_steps=args.foolbox_cw_search, stepsize=0.01,
                    confidence=0, initial_const=1e-3, abort_early=True)

    def summary(x_adv, seconds):
        ok = np.asarray(logits(jnp.asarray(x_adv)).argmax(1)) != y_np
        l2 = np.sqrt(np.sum((np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)) ** 2, axis=(1, 2, 3)))
        change = np.abs(np.asarray(x_adv) - np.asarray(x))
        return dict(success=float(ok.mean()), median_l2=float(np.median(l2[ok])) if ok.any() else None,
                    mean_l2=float(l2[ok].mean()) if ok.any() else None,
                    mean_change_at_0_or_1=float(change[edge].mean()), mean_change_elsewhere=float(change[~edge].mean()),
                    seconds=seconds), ok, l2

    if args.reuse_foolbox:
        with open(args.reuse_foolbox) as f:
            old = json.load(f)
        if (old["workdir"], old["num_images"], old["foolbox_settings"]) != (args.workdir, num, settings):
            raise SystemExit(f"{args.reuse_foolbox} is of another run: {old['workdir']}, {old['num_images']} images, "
                             f"{old['foolbox_settings']}")
        fool = old["foolbox_cw"]
    else:
        t0 = time.time()
        attack = fb.attacks.L2CarliniWagnerAttack(**settings)
        raw, _, _ = attack(fmodel, x, y, epsilons=None)
        fool, _, _ = summary(raw, time.time() - t0)
    print(json.dumps(dict(foolbox=fool)), flush=True)
    t0 = time.time()
    r = attacks.cw_l2(lambda v, k: logits(v), x, y, jax.random.fold_in(key, 7), c=1e-3, kappa=0.0, targeted=False,
                      lr=0.01, max_steps=args.foolbox_cw_steps, patience=args.foolbox_cw_steps // 10,
                      search_steps=args.foolbox_cw_search)
    r.x.block_until_ready()
    gcj_search, _, _ = summary(r.x, time.time() - t0)
    print(json.dumps(dict(gcj_search=gcj_search)), flush=True)
    per_c, best = {}, None
    for c in [float(v) for v in args.cw_c.split(",")]:
        t0 = time.time()
        r = attacks.cw_l2(lambda v, k: logits(v), x, y, jax.random.fold_in(key, int(c)), c=c, kappa=0.0,
                          targeted=False, max_steps=args.cw_steps)
        r.x.block_until_ready()
        per_c[f"{c:g}"], ok, l2 = summary(r.x, time.time() - t0)
        print(json.dumps({f"gcj_c{c:g}": per_c[f"{c:g}"]}), flush=True)
        l2 = np.where(ok, l2, np.inf)
        best = (l2, np.asarray(r.x)) if best is None else (np.minimum(best[0], l2),
                                                           np.where((l2 < best[0])[:, None, None, None], r.x, best[1]))
    gcj_best, _, _ = summary(best[1], sum(v["seconds"] for v in per_c.values()))
    ratio = (gcj_search["median_l2"] / fool["median_l2"]) if gcj_search["median_l2"] and fool["median_l2"] else None
    result = dict(workdir=args.workdir, num_images=num, foolbox=fb.__version__, foolbox_settings=settings,
                  foolbox_from_an_earlier_run=bool(args.reuse_foolbox),
                  gcj_settings=dict(c=1e-3, search_steps=args.foolbox_cw_search, max_steps=args.foolbox_cw_steps,
                                    patience=args.foolbox_cw_steps // 10, kappa=0.0, lr=0.01),
                  foolbox_cw=fool, gcj_cw_search=gcj_search,
                  gcj_fixed_c_settings=dict(c=args.cw_c, max_steps=args.cw_steps, kappa=0.0, lr=0.01, patience=20),
                  gcj_cw_per_c=per_c, gcj_cw_best_of_fixed_c=gcj_best,
                  median_l2_ratio_gcj_to_foolbox=ratio,
                  within_5_percent_and_success_no_lower=bool(ratio is not None and ratio <= 1.05
                                                             and gcj_search["success"] >= fool["success"]))
    print(json.dumps({k: result[k] for k in ("median_l2_ratio_gcj_to_foolbox", "within_5_percent_and_success_no_lower")}))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
