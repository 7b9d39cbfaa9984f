"""Paper 004 Fig. 3: accuracy and log-likelihood (correct class, best wrong class) against the
number of Hutchinson probes, from ONE solve per class with 30 probes (every probe has its own
divergence integral along the shared trajectory, so the estimate with n probes is the mean of
the first n).

    .venv/bin/python bench/sbgc_convergence.py --workdir pretrained/sbgc_digits --num_images 80 \
        --out bench/results/sbgc_digits_convergence.json
"""
import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gcj  # noqa: E402
from gcj import classifier, data  # noqa: E402
from gcj.models import score  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="pretrained/sbgc_digits")
    p.add_argument("--num_images", type=int, default=100)
    p.add_argument("--max_probes", type=int, default=30)
    p.add_argument("--batch_size", type=int, default=20)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    clf = gcj.load(a.workdir)
    cfg = clf.config.copy_and_resolve_references()
    cfg.model.score.ode.num_probes = a.max_probes
    module = classifier.build_module(cfg)
    test = data.load_dataset(cfg.data, "test")
    images, labels = test.images[:a.num_images], test.labels[:a.num_images]

    fn = jax.jit(lambda v, x, k: score.class_likelihoods(module, cfg.model.score.ode, v, x, k).probe_logp)
    key = jax.random.key(cfg.seed)
    per_probe = []
    for i in range(0, len(images), a.batch_size):
        x = data.to_float(jnp.asarray(images[i:i + a.batch_size]))
        per_probe.append(np.asarray(fn(clf.params, x, jax.random.fold_in(key, i))))  # [B, C, P]
        print(f"{i + len(x)}/{len(images)} images", flush=True)
    ll = np.concatenate(per_probe)  # [N, C, P]

    rows = []
    n_img = len(labels)
    for n in range(1, a.max_probes + 1):
        est = ll[:, :, :n].mean(2)                         # [N, C]
        correct = est[np.arange(n_img), labels]
        wrong = np.where(np.eye(est.shape[1], dtype=bool)[labels], -np.inf, est).max(1)
        rows.append(dict(num_probes=n, accuracy=float(np.mean(est.argmax(1) == labels)),
                         logp_correct=float(correct.mean()),
                         logp_correct_sem=float(correct.std(ddof=1) / np.sqrt(n_img)),
                         logp_best_wrong=float(wrong.mean()),
                         logp_best_wrong_sem=float(wrong.std(ddof=1) / np.sqrt(n_img))))
        print(rows[-1], flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(dict(workdir=a.workdir, num_images=n_img, rows=rows), f, indent=2)


if __name__ == "__main__":
    main()
