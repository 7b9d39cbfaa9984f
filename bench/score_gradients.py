"""How much an attack gradient through the score model's ODE says, checked for gradient masking
(paper 004 Tab. 3's PGD): on the first ``--num_images`` images its attacks pick (the same seed,
the same images as ``bench/score_attack.py --num_images n``), the margin loss's gradient under
``--draws`` independent likelihood draws (dequantization and Hutchinson probe) each:

- how alike two draws' gradients are: their cosine, and the share of pixels whose sign (what an
  L∞ step follows) agrees (0.5: a coin). For gradients g = s + noise the cosine of two draws is
  ρ = |s|² / (|s|² + E|noise|²), so the mean of k draws (PGD's EoT) has cosine k ρ / (1 + (k - 1) ρ)
  with another such mean; ``eot_cosine`` gives that for k = 1, 2, 10 (ρ below 0, sampling noise: 0);
- how alike the variational bound's gradient (``classifier.surrogate(clf, 'elbo')``, the mean of
  as many draws) is to the mean of the ODE's: whether attacking through the bound could transfer;
- the margin each draw gives (best other class minus the true one; < 0 is correct): how far each
  image lies inside its class against how much one draw moves it.

    .venv/bin/python bench/score_gradients.py --workdir pretrained/sbgc_digits --num_images 10 --draws 4 \\
        --out bench/results/score_gradients_sbgc_digits.json

``--num_probes 10`` gives each likelihood paper 004's 10 probes (about 10× the cost): how much of
the noise is the probe's.
"""
import argparse
import itertools
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gcj  # noqa: E402
from gcj import attacks, classifier, cli, data  # noqa: E402
from machine import cpu_model  # noqa: E402
from score_attack import EXACT, attacked  # noqa: E402


def cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="pretrained/sbgc_digits")
    p.add_argument("--num_images", type=int, default=10)
    p.add_argument("--draws", type=int, default=4, help="independent likelihood draws per gradient kind")
    p.add_argument("--chunk", type=int, default=5, help="images differentiated at a time (memory)")
    p.add_argument("--num_probes", type=int, default=0,
                   help="Hutchinson probes per likelihood (0: the model's; paper 004's robustness runs: 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu_devices", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    cli.use_cpu_devices(args.cpu_devices)
    probes = {"model.score.ode.num_probes": args.num_probes} if args.num_probes else {}
    clf, put = classifier.local_data_parallel(gcj.load(args.workdir, overrides={**EXACT, **probes}))
    bound = classifier.surrogate(clf, "elbo")
    test = data.load_dataset(clf.config.data, "test")
    key = jax.random.key(args.seed)
    order, ok = attacked(clf, put, test, key, args.num_images)
    x, y = data.to_float(test.images[order[ok]]), test.labels[order][ok]
    k = jax.random.fold_in(key, 8)  # draws of their own, apart from the attacks' keys

    def gradients(model):  # [draws, images, pixels], per chunk of images
        out = []
        for r in range(args.draws):
            kr = jax.random.fold_in(k, r)
            out.append(np.concatenate([np.asarray(attacks.loss_gradient(
                model, put(x[i:i + args.chunk]), put(y[i:i + args.chunk]), jax.random.fold_in(kr, i), loss="margin"))
                for i in range(0, len(y), args.chunk)]).reshape(len(y), -1))
        return np.stack(out)

    t0 = time.time()
    g = gradients(clf)
    ode_seconds = time.time() - t0
    gb = gradients(bound)
    margins = np.stack([np.asarray(attacks.attack_loss(clf.class_log_likelihoods(put(x), jax.random.fold_in(k, r)), y))
                        for r in range(args.draws)])  # [draws, images]
    pairs = list(itertools.combinations(range(args.draws), 2))

    def between_draws(grads, alike):  # [images]: alike(one draw, another), averaged over the pairs
        return np.array([np.mean([alike(grads[a, i], grads[b, i]) for a, b in pairs]) for i in range(len(y))])

    cos = between_draws(g, cosine)
    sign = between_draws(g, lambda u, v: float(np.mean(np.sign(u) == np.sign(v))))
    rho = float(cos.mean())  # every image has as many pairs: the mean over all pairs
    transfer = [cosine(g[:, i].mean(0), gb[:, i].mean(0)) for i in range(len(y))]
    bound_cos = between_draws(gb, cosine)
    result = dict(
        workdir=args.workdir, cpu=cpu_model(), devices=str(jax.devices()), num_images=int(len(y)),
        test_indices=order[ok].tolist(), draws=args.draws, loss="margin",
        num_probes=int(clf.config.model.score.ode.num_probes),
        ode_seconds_per_gradient_per_image=ode_seconds / args.draws / len(y),
        ode_cosine_between_draws_mean=rho, ode_cosine_between_draws_per_image=cos.tolist(),
        ode_sign_agreement_between_draws_mean=float(sign.mean()),
        ode_sign_agreement_per_image=sign.tolist(),
        eot_cosine={str(m): m * max(rho, 0) / (1 + (m - 1) * max(rho, 0)) for m in (1, 2, 10)},
        bound_cosine_between_draws_mean=float(np.mean(bound_cos)),
        bound_to_ode_cosine_of_means_mean=float(np.mean(transfer)), bound_to_ode_cosine_of_means_per_image=transfer,
        margin_mean_per_image=margins.mean(0).tolist(), margin_sd_over_draws_per_image=margins.std(0, ddof=1).tolist())
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
