"""Adversarial attacks on the class log-likelihoods: the papers' attacks (``default_attacks``, found
by name in ``gcj.attacks.ATTACKS``) on correctly classified test images; success, undetected
success and detection at the thresholds, perturbation sizes, paper 002's OOD tests on the attacked
images, the per-image worst case per threat model, and gradient-masking sanity checks."""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from gcj import attacks, classifier, data, keys, metrics, ops, rejection
from gcj.errors import UserError
from gcj.suites.base import Context, Option, Suite, figure, pct


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack of the suite: the registered ``attack`` (``gcj.attacks.ATTACKS``) with its
    ``params``; ``targeted`` runs get random other classes as targets; ``detector``: "" (none),
    "median" (paper 002 eq. 25: the suite supplies the training median of log q) or "threshold"
    (rejection-aware: the suite supplies the per-class thresholds); ``black_box`` attacks run on
    the first ``black_box_images`` only."""
    name: str
    attack: str
    params: tuple = ()   # keyword arguments of the attack, as (key, value) pairs
    targeted: bool = False
    detector: str = ""
    black_box: bool = False


LINF_EPS = (4, 6, 8)  # / 255, paper 000 Fig. 2 and paper 003 Fig. 2

# Named attack ensembles for ``--attacks``. "autoattack": AutoAttack's standard runs (APGD-CE,
# APGD-T with the targeted DLR loss, Square) at L∞ 8/255 and L2 0.5 (Square: L∞ only), with
# untargeted CW L2 in FAB-T's place (a minimum-norm attack) and the rejection-aware attacks a
# rejection defense must face: APGD's, and PGD's 200 small steps (APGD's first steps of 2ε
# overshoot a curved log-likelihood: on glow_digits_split it got 1% of images accepted, PGD's 9%).
ENSEMBLES = {"autoattack": ("apgd_ce_linf_8", "apgd_t_dlr_linf_8", "square_linf_8", "apgd_rejection_linf_8",
                            "pgd_linf_8_rejection", "apgd_ce_l2_0.5", "apgd_t_dlr_l2_0.5",
                            "apgd_rejection_l2_0.5", "cw_l2_untargeted_c10")}


def expand(names) -> tuple:
    """Attack names with ensemble names (``ENSEMBLES``) replaced by their members, in order."""
    out = []
    for n in names:
        out += [m for m in ENSEMBLES.get(n, (n,)) if m not in out]
    return tuple(out)


def default_attacks(cw_steps: int = 300, boundary_steps: int = 1000, ls_rounds: int = 150,
                    cw_steps_kappa_inf: int = 3000, apgd_steps: int = 100, square_queries: int = 5000):
    """Every attack of the suite, with the papers' budgets (pixels in [0, 1]). CW runs at most
    ``cw_steps`` Adam steps, ``cw_steps_kappa_inf`` at κ = ∞, whose loss keeps falling for long:
    paper 002's rule (20 steps without gain) stopped 1 of 20 Fashion-MNIST images by 1000 steps
    and all 20 by 3000 (ibinn_fashion_mnist_beta1). APGD: ``apgd_steps`` per run (AutoAttack: 100;
    APGD-T: per target, 9 targets); Square: ``square_queries`` per image (AutoAttack: 5000)."""
    specs = [AttackSpec("fgsm_linf_8", "fgsm", (("eps", 8 / 255), ("loss", "ce")))]
    for eps in LINF_EPS:  # 40 steps of 0.01 (paper 003), both losses
        for loss in ("ce", "margin"):
            specs.append(AttackSpec(f"pgd_linf_{eps}_{loss}", "pgd",
                                    (("eps", eps / 255), ("steps", 40), ("step_size", 0.01), ("loss", loss))))
    specs += [
        AttackSpec("pgd_linf_unbounded", "pgd", (("eps", 1.0), ("steps", 100), ("step_size", 0.05),
                                                  ("loss", "margin"), ("random_start", False))),
        AttackSpec("pgd_l2_0.5", "pgd", (("eps", 0.5), ("norm", "l2"), ("steps", 50), ("loss", "margin"))),
        AttackSpec("pgd_l2_2", "pgd", (("eps", 2.0), ("norm", "l2"), ("steps", 50), ("loss", "margin"))),
        # The rejection-aware loss must keep a class likelihood high: large signed steps overshoot
        # the curved log-likelihood and never get accepted (measured on glow_digits_base: 0% at
        # step 0.01-0.05, 95% at 0.002), so these take 200 steps of 0.002.
        AttackSpec("pgd_linf_8_rejection", "pgd", (("eps", 8 / 255), ("steps", 200), ("step_size", 0.002),
                                                    ("loss", "rejection")), detector="threshold"),
        AttackSpec("pgd_linf_unbounded_rejection", "pgd", (("eps", 1.0), ("steps", 200),
                   ("step_size", 0.002), ("loss", "rejection"), ("random_start", False)),
                   detector="threshold"),
    ]
    for norm, eps, tag in (("linf", 8 / 255, "linf_8"), ("l2", 0.5, "l2_0.5")):  # Croce & Hein 2020
        apgd = (("eps", eps), ("norm", norm), ("steps", apgd_steps))
        specs.append(AttackSpec(f"apgd_ce_{tag}", "apgd", apgd + (("loss", "ce"),)))
        if norm == "linf":
            specs.append(AttackSpec(f"apgd_dlr_{tag}", "apgd", apgd + (("loss", "dlr"),)))
        specs += [AttackSpec(f"apgd_t_dlr_{tag}", "apgd_t", apgd),
                  AttackSpec(f"apgd_rejection_{tag}", "apgd", apgd + (("loss", "rejection"),),
                             detector="threshold")]
        if norm == "linf":
            specs.append(AttackSpec(f"square_{tag}", "square", (("eps", eps), ("queries", square_queries))))

    def cw(kappa):
        return (("c", 10.0), ("max_steps", cw_steps_kappa_inf if kappa == float("inf") else cw_steps),
                ("kappa", kappa))
    for kappa in (0.01, 1.0, float("inf")):
        specs.append(AttackSpec(f"cw_l2_kappa{kappa:g}", "cw_l2", cw(kappa), targeted=True))
    for kappa in (0.01, 1.0, float("inf")):  # paper 002 eq. 25, Tabs. 7-9
        for d in (66.0, 1000.0):
            specs.append(AttackSpec(f"cw_l2_kappa{kappa:g}_d{d:g}", "cw_l2", cw(kappa) + (("detector_weight", d),),
                                    targeted=True, detector="median"))
    specs.append(AttackSpec("cw_l2_kappa1_threshold", "cw_l2", cw(1.0) + (("threshold_weight", 1.0),),
                            targeted=True, detector="threshold"))
    for c in (1.0, 10.0, 100.0, 1000.0):
        specs.append(AttackSpec(f"cw_l2_untargeted_c{c:g}", "cw_l2",
                                (("c", c), ("kappa", 0.0), ("max_steps", cw_steps), ("targeted", False))))
    # a start accepted in the clean scores may be rejected under the oracle's noise draw
    walk = (("steps", boundary_steps), ("check_starts", False))
    specs += [AttackSpec("boundary", "boundary", walk, targeted=True, detector="threshold", black_box=True),
              # paper 000 Tab. 5: untargeted and rejection-unaware (success = misclassified)
              AttackSpec("boundary_untargeted", "boundary", walk + (("targeted", False),), black_box=True),
              AttackSpec("local_search", "local_search", (("rounds", ls_rounds),), black_box=True)]
    return specs


def threat(spec: AttackSpec):
    """(norm, eps) of a bounded attack (L∞ eps < 1, any L2 eps), else None."""
    kw = dict(spec.params)
    if "eps" not in kw:  # unbounded or minimum-norm (CW, boundary, LocalSearch)
        return None
    norm = kw.get("norm", "linf")
    return None if norm == "linf" and kw["eps"] >= 1.0 else (norm, float(kw["eps"]))


def threat_name(norm: str, eps: float) -> str:
    return f"linf {eps * 255:g}/255" if norm == "linf" else f"l2 {eps:g}"

def chosen_attacks(options) -> list[AttackSpec]:
    """The attacks the suite's options name (``attacks``: names or ensembles, default all), with
    the budgets they set, in ``default_attacks``' order."""
    specs = default_attacks(cw_steps=options.cw_steps, boundary_steps=options.boundary_steps,
                            ls_rounds=options.ls_rounds, cw_steps_kappa_inf=options.cw_steps_kappa_inf,
                            apgd_steps=options.apgd_steps, square_queries=options.square_queries)
    if not options.attacks:
        return specs
    only = expand(options.attacks)
    unknown = set(only) - {s.name for s in specs}
    if unknown:
        raise UserError(f"unknown attacks {sorted(unknown)}; known: {', '.join(s.name for s in specs)} and "
                        f"the ensembles {', '.join(ENSEMBLES)}")
    return [s for s in specs if s.name in only]


def _attack(spec: AttackSpec, clf, x, labels, key, threshold, eot: int, starts, detector: dict,
            eot_parallel: bool = False):
    """``spec``'s attack on one batch: the registered function with the spec's parameters and what
    the suite supplies (``labels``: the targets of a targeted spec)."""
    attack = attacks.get(spec.attack)
    kw = dict(spec.params)
    if attack.eot:
        kw.update(eot=eot, eot_parallel=eot_parallel)
    if attack.needs_starts:
        kw["starts"] = starts
    if spec.detector == "median":
        kw.update(detector)
    return attack.fn(clf, x, labels, key, thresholds=threshold if spec.detector == "threshold" else None, **kw)


def attack_batches(run_batch, x: np.ndarray, batch_size: int, resume: str | None = None, mark: str = ""):
    """An attack on ``x`` batch by batch: ``run_batch(i)`` attacks the batch starting at ``i``
    (its own key: ``fold_in(key, i)``). Several processes each attack every P-th batch and share
    the results, so each batch is the same computation as on one process. ``resume``: a ``.npz``
    path where the finished batches are kept for ``mark`` (what fixes them; process p > 0 keeps
    its own in ``<path>.p<p>.npz``), so a stopped attack run again resumes at its next batch.
    Returns ``(x_adv, success, stopped or None, seconds)`` of all of ``x``; ``seconds``: the
    attack's time, its kept batches' included."""
    begins = list(range(0, len(x), batch_size))
    # each process fills its batches' rows, the others stay at the lowest value; with several
    # processes the maximum over them is then every row's one value
    x_adv = np.full(x.shape, -np.inf, np.float32)
    success, stopped = np.zeros(len(x), np.int8), np.full(len(x), -1, np.int8)  # stopped -1: none
    done, seconds = np.zeros(len(begins), bool), 0.0
    if resume is not None and jax.process_index() > 0:
        resume = f"{os.path.splitext(resume)[0]}.p{jax.process_index()}.npz"
    kept = classifier.load_kept(resume, mark)
    if kept is not None and kept["x_adv"].shape == x.shape:
        x_adv, success, stopped, done = kept["x_adv"], kept["success"], kept["stopped"], kept["done"]
        seconds = float(kept["seconds"])
    for b, i in list(enumerate(begins))[jax.process_index()::jax.process_count()]:
        if done[b]:
            continue
        t0 = time.time()
        a = run_batch(i)
        x_adv[i:i + batch_size], success[i:i + batch_size] = np.asarray(a.x), np.asarray(a.success)
        if a.stopped is not None:
            stopped[i:i + batch_size] = np.asarray(a.stopped)
        done[b], seconds = True, seconds + time.time() - t0
        if resume is not None:
            classifier.save_kept(resume, mark, x_adv=x_adv, success=success, stopped=stopped, done=done,
                                 seconds=seconds)
    if jax.process_count() > 1:
        x_adv, success, stopped = (np.asarray(multihost_utils.process_allgather(v)).max(0)
                                   for v in (x_adv, success, stopped))
        seconds = float(np.asarray(multihost_utils.process_allgather(np.float64(seconds))).max())
    return x_adv, success.astype(bool), None if np.all(stopped < 0) else stopped.astype(bool), seconds


def attack_metrics(ll_adv, ll_clean, x_adv, x, labels, targets, thresholds: dict,
                   max_l2: float = 0.0, train_log_marginal=None, stopped=None) -> dict:
    """The metrics of one attack on images that were classified correctly before it.

    success: untargeted, the prediction changed; targeted, it is the target; with ``max_l2`` > 0
    only within that L2 distance of the clean image (paper 001 Tab. 2's budget). Undetected success
    (paper 001 Tab. 2): success AND accepted at the threshold; detection rate: rejected among the
    successes; rejection rate: rejected among all attacked inputs. Perturbations and the wrong
    class's confidence are averaged over successes; the OOD ROC-AUC scores adversarial inputs
    against the clean ones (max_y log p(x|y)), and with ``train_log_marginal`` (log p(x) of
    training images) paper 002's three tests on log p(x) as Tabs. 7–9 define them: attacked images
    against the training images (``tests_auroc``), beside them against the clean versions of the
    attacked images (``tests_auroc_vs_clean``) and how far log p(x) moved (``log_q_shift``);
    ``corruption`` is Tabs. 7-9's per-pixel L2 (the mean over pixels of the
    perturbation's norm over channels, successes), ``entropy`` the posterior's over all attacked
    inputs; ``stopped`` ([N] bool, CW) gives ``hit_step_cap``, the fraction its step cap stopped.
    """
    pred = ll_adv.argmax(1)
    success = pred == targets if targets is not None else pred != labels
    probs = np.exp(np.asarray(ops.log_posterior(jnp.asarray(ll_adv))))
    delta = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(labels), -1)
    l2, linf = np.sqrt((delta ** 2).sum(1)), np.abs(delta).max(1)
    unbounded = success
    if max_l2 > 0:
        success = success & (l2 <= max_l2)
    mean = lambda v: float(v.mean()) if v.size else float("nan")
    out = dict(num=int(len(labels)), success_rate=mean(success),
               accuracy=mean(pred == labels),
               mean_l2=mean(l2[success]), median_l2=float(np.median(l2[success])) if success.any() else float("nan"),
               mean_linf=mean(linf[success]),
               wrong_class_confidence=mean(probs.max(1)[success]),
               auroc=metrics.auroc(ll_clean.max(1), ll_adv.max(1)),
               auroc_log_marginal=metrics.auroc(np.asarray(ops.log_marginal(jnp.asarray(ll_clean))),
                                                np.asarray(ops.log_marginal(jnp.asarray(ll_adv)))))
    d = np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)
    out["corruption"] = mean(np.sqrt((d ** 2).sum(-1)).reshape(len(labels), -1).mean(1)[success])
    out["entropy"] = metrics.mean_posterior_entropy(ll_adv)
    if train_log_marginal is not None:
        clean_q = np.asarray(ops.log_marginal(jnp.asarray(ll_clean)))
        adv_q = np.asarray(ops.log_marginal(jnp.asarray(ll_adv)))
        out["tests_auroc"] = metrics.tests_auroc(train_log_marginal, adv_q)
        out["tests_auroc_vs_clean"] = metrics.tests_auroc(train_log_marginal, adv_q, clean_q)
        out["log_q_shift"] = metrics.log_q_shift(train_log_marginal, clean_q, adv_q)
    if stopped is not None:
        out["hit_step_cap"] = mean(~np.asarray(stopped))
    if max_l2 > 0:  # (the budget's effect: successes at any distance)
        out["success_rate_any_l2"] = mean(unbounded)
    out["undetected_success_rate"], out["detection_rate"], out["rejection_rate"] = {}, {}, {}
    for k, t in thresholds.items():
        rej = rejection.reject(ll_adv, t)
        out["undetected_success_rate"][k] = mean(success & ~rej)
        out["detection_rate"][k] = mean(rej[success])
        out["rejection_rate"][k] = mean(rej)
    return out


def _broken(outcome: dict, norm: str, eps: float, tol: float = 1e-5):
    """``[n]`` bool: the attack's image is misclassified and within eps (+ ``tol``) in ``norm``."""
    return outcome["misclassified"] & (np.asarray(outcome[norm]) <= eps + tol)


def worst_case(outcomes: dict, threats, thresholds, num_images: int, clean_accuracy: float = 1.0,
               tol: float = 1e-5) -> dict:
    """The per-image worst case over attacks, per threat model (norm, eps).

    ``outcomes``: attack name -> ``misclassified`` [n] bool (n <= ``num_images``: an attack run on
    the first n images, e.g. a black-box one), ``rejected`` {threshold: [n] bool}, ``l2`` and
    ``linf`` [n] (the returned image's distance to the clean one). At a threat model an attack's
    image counts if it lies within eps (+ ``tol``) in its norm — so unbounded and minimum-norm
    attacks (CW, boundary) count where they stayed inside. Per threat: ``robust_accuracy``, the
    fraction of the attacked (correctly classified) images that every attack left correct;
    ``robust_or_rejected`` {threshold: fraction for which no attack produced an image both
    misclassified AND accepted}; ``test_robust_accuracy`` = ``clean_accuracy`` × robust_accuracy
    (AutoAttack's figure, on the test set); ``only_by`` {attack: images that it alone broke}.
    """
    out = {}
    for norm, eps in threats:
        broken = np.zeros(num_images, bool)
        sneaked = {t: np.zeros(num_images, bool) for t in thresholds}
        per = {}
        for name, o in outcomes.items():
            n = len(o["misclassified"])
            hit = _broken(o, norm, eps, tol)
            per[name] = np.pad(hit, (0, num_images - n))
            broken[:n] |= hit
            for t in thresholds:
                sneaked[t][:n] |= hit & ~o["rejected"][t]
        others = {name: np.any([v for k, v in per.items() if k != name], axis=0) if len(per) > 1
                  else np.zeros(num_images, bool) for name in per}
        robust = float(1 - broken.mean())
        out[threat_name(norm, eps)] = dict(
            norm=norm, eps=eps, attacks=sorted(outcomes), robust_accuracy=robust,
            test_robust_accuracy=clean_accuracy * robust,
            robust_or_rejected={t: float(1 - v.mean()) for t, v in sneaked.items()},
            only_by={name: int((v & ~others[name]).sum()) for name, v in per.items() if (v & ~others[name]).any()})
    return out


def sanity_checks(results: dict, threshold: str = "p1", outcomes: dict | None = None) -> list[str]:
    """Gradient-masking checks (Athalye et al.; Carlini et al.): a list of 'ok: ...' / 'WARNING: ...'
    (``threshold``: the one the rejection-aware attacks were judged at; ``outcomes``: the per-image
    ones of ``adversarial_suite``, for Square against the gradient attacks)."""
    lines = []
    for loss in ("ce", "margin"):
        accs = [results[f"pgd_linf_{e}_{loss}"]["accuracy"] for e in LINF_EPS if f"pgd_linf_{e}_{loss}" in results]
        if len(accs) > 1:
            ok = all(a >= b - 1e-9 for a, b in zip(accs, accs[1:]))
            shown = (" >= " if ok else ", ").join(f"{100 * a:.1f}%" for a in accs)
            lines.append(f"ok: PGD L∞ ({loss}) accuracy falls monotonically with eps: {shown}" if ok else
                         f"WARNING: PGD L∞ ({loss}) accuracy does not fall monotonically with eps: {shown} "
                         "(a rise with eps: gradient masking?)")
    if "pgd_linf_unbounded" in results:
        s = results["pgd_linf_unbounded"]["success_rate"]
        lines.append(f"{'ok' if s >= 0.99 else 'WARNING'}: unbounded PGD success {100 * s:.1f}% (expect ~100%)")
    white = max((r["success_rate"] for n, r in results.items() if n.startswith("pgd_linf_unbounded")
                 and "rejection" not in n), default=None)
    for n in ("local_search",):
        if n in results and white is not None:
            s = results[n]["success_rate"]
            ok = s <= white + 1e-9
            lines.append(f"{'ok' if ok else 'WARNING'}: black-box {n} success {100 * s:.1f}% "
                         f"{'<=' if ok else '>'} white-box unbounded PGD {100 * white:.1f}%")
    if "boundary" in results and "pgd_linf_unbounded_rejection" in results:
        b = results["boundary"]["undetected_success_rate"].get(threshold, float("nan"))
        w = results["pgd_linf_unbounded_rejection"]["undetected_success_rate"].get(threshold, float("nan"))
        ok = not b > w + 1e-9
        lines.append(f"{'ok' if ok else 'WARNING'}: black-box boundary undetected success "
                     f"{100 * b:.1f}% {'<=' if ok else '>'} rejection-aware PGD {100 * w:.1f}% ({threshold})")
    for name, o in (outcomes or {}).items():  # Square (gradient-free) against the gradient attacks
        if not name.startswith("square_"):
            continue
        norm, eps = o["threat"]
        n = len(o["misclassified"])
        white = np.zeros(n, bool)
        for k, v in outcomes.items():
            if v.get("gradient"):
                m = min(n, len(v["misclassified"]))
                white[:m] |= _broken(v, norm, eps)[:m]
        square = _broken(o, norm, eps)
        only = int((square & ~white).sum())
        lines.append(f"{'ok' if only == 0 else 'WARNING'}: {name} (no gradients) broke {only} image(s) that no "
                     f"gradient attack within {threat_name(norm, eps)} did"
                     f"{'' if only == 0 else ': gradient masking?'} (Square {100 * square.mean():.1f}%, "
                     f"gradient attacks {100 * white.mean():.1f}%)")
    return lines


def check(request) -> None:
    chosen_attacks(request.options)


def suite_thresholds(ctx: Context) -> dict:
    """The thresholds the suite reports, name -> thresholds: the config's percentile ones (per
    class ``[C]``), then paper 001's, one threshold ``[]`` on log p(x) each (a density family's):
    ``bpd<b>`` per ``bpd_thresholds`` value (accepted iff log p(x) is at most b bits/dim) and, with
    ``max_test_bpd_threshold``, ``bpd_test_max`` at the highest test bits/dim (every test image
    accepted: paper 001 Tab. 2, "100% of test data are below"); ``attack_threshold`` first (the one
    the rejection-aware attacks aim under)."""
    o = ctx.request.options
    out = dict(ctx.percentile_thresholds)
    if (o.bpd_thresholds or o.max_test_bpd_threshold) and not ctx.clf.family.density:
        raise UserError(f"bits/dim thresholds need a pixel density; {ctx.clf.family.name!r}'s "
                        "log p(x|y) is not one (use the percentile thresholds)")
    dim = ctx.clf.density_dims if o.bpd_thresholds else 0
    for b in o.bpd_thresholds:
        out[f"bpd{b:g}"] = np.float32(ops.log_p_at_bits_per_dim(float(b), dim))
    if o.max_test_bpd_threshold:
        out["bpd_test_max"] = np.float32(np.min(np.asarray(ops.log_marginal(jnp.asarray(ctx.ll_test)))))
    if o.attack_threshold:
        if o.attack_threshold not in out:
            raise UserError(f"attack_threshold {o.attack_threshold!r} is none of {', '.join(out)}")
        out = {o.attack_threshold: out[o.attack_threshold], **out}
    return out


def run(ctx: Context) -> dict:
    """Runs the chosen attacks on ``attack_images`` seeded-random test images classified correctly
    (``black_box_images`` of them for the decision- and score-based attacks); ``max_l2`` > 0 counts a
    success only within that L2 distance; the training images' log q fit paper 002's OOD tests
    (``attack_metrics``); ``detector_per_dim``: eq. 25's deviation of log q per dimension (else in
    nats). ``eot``: likelihood draws per gradient for a stochastic log p(x|y) (0: 20, AutoAttack's
    'rand' version; always 1 for a deterministic one); for a stochastic one every attack also
    reports ``adversarial_under_draws``, the mean fraction of ``eot_check_draws`` fresh draws under
    which its images are adversarial. ``success_rate_attack_draw``: the attack's own verdict on its
    images, under its own likelihood draw (the boundary attack's fixed oracle: as paper 001 Tab. 2
    judges), fooled and, where it aimed under a threshold, accepted; ``success_rate`` and the
    metrics beside it judge a fresh draw. ``worst_case``: per threat model (``worst_case``).

    Targets (targeted attacks) are uniform among the other classes; the boundary attack starts
    from a test image of the target class that is classified as it and accepted at the first of
    the thresholds (every one is reported; the first is the one the rejection-aware attacks aim
    under)."""
    ctx.log("adversarial suite:")
    o, clf = ctx.request.options, ctx.clf
    # what the attacks ascend: the model, or its family's cheaper surrogate (judged by the model)
    attacker = classifier.surrogate(clf, o.attack_surrogate) if o.attack_surrogate else clf
    key = keys.named(ctx.key, "adversarial")
    train_q = np.asarray(ops.log_marginal(ctx.ll_train))
    median_log_q = float(np.median(train_q))
    detector = dict(detector_median=median_log_q,
                    detector_dims=int(np.prod(clf.image_shape)) if o.detector_per_dim else 1)
    specs = chosen_attacks(o)
    order = np.asarray(jax.random.permutation(keys.named(key, "images"), len(ctx.test.labels)))
    correct = ctx.ll_test.argmax(1) == ctx.test.labels
    idx = order[correct[order]][:o.attack_images]
    x = data.to_float(ctx.test.images[idx])
    labels = ctx.test.labels[idx]
    c = clf.num_classes
    targets = (labels + np.asarray(jax.random.randint(keys.named(key, "targets"), labels.shape, 1, c))) % c
    thr = {k: np.asarray(v) for k, v in suite_thresholds(ctx).items()}
    primary = next(iter(thr), None)  # the threshold the rejection-aware attacks aim under
    starts = None
    if any(attacks.get(s.attack).needs_starts for s in specs):
        # per target class, the test image of it that is classified as it and accepted with
        # the largest margin above its threshold: the boundary attack's start
        p1 = thr[primary] if primary else np.full(c, -np.inf)
        margin = np.where(correct, ops.acceptance_margin(ctx.ll_test, p1, ctx.test.labels), -np.inf)
        margin = np.where(margin >= 0, margin, -np.inf)  # accepted
        best = np.array([np.argmax(np.where(ctx.test.labels == t, margin, -np.inf)) for t in range(c)])
        if not np.all(np.isfinite(margin[best])):
            raise UserError("the boundary attack needs an accepted, correctly classified test image of "
                            "every class")
        starts = data.to_float(ctx.test.images[best[targets]])
    stochastic = attacks.is_stochastic(clf, x[:2], keys.named(key, "stochastic"))
    # draws per gradient: a deterministic function's draws are all the same
    eot = (o.eot or 20) if (stochastic if attacker is clf else
                            attacks.is_stochastic(attacker, x[:2], keys.named(key, "stochastic"))) else 1
    # each attack batch split over this process's devices (several processes: each its own batches)
    local, put = classifier.local_data_parallel(attacker)
    results, outcomes = {}, {}
    for spec in classifier.progress(specs, "attacks"):
        n = o.black_box_images if spec.black_box else o.attack_images
        xs, ys, ts = x[:n], labels[:n], targets[:n]
        st = None if starts is None else starts[:n]
        k = keys.named(key, "attack", spec.name)
        b = ctx.batch_size
        # what fixes the attack's images and their judgement (a resumable evaluation keeps both)
        mark = classifier.fingerprint(clf, xs, ys, ts, k, np.float32(thr.get(primary, np.nan)),
                                      np.float32(np.nan) if st is None else st,
                                      text=f"{spec!r} {eot} {o.eot_parallel} {b} {o.attack_surrogate!r} {detector} "
                                           f"{o.eot_check_draws}")
        keep = classifier.resume_path(ctx.scores_dir, f"adversarial_{spec.name}")
        kept = classifier.load_kept(keep, mark)
        if kept is None:
            x_adv, verdict, stopped, seconds = attack_batches(
                lambda i, spec=spec, xs=xs, ys=ys, ts=ts, st=st, k=k: _attack(
                    spec, local, put(xs[i:i + b]), put((ts if spec.targeted else ys)[i:i + b]),
                    jax.random.fold_in(k, i), thr.get(primary), eot, None if st is None else put(st[i:i + b]),
                    detector, o.eot_parallel),
                np.asarray(xs), b, classifier.resume_path(ctx.scores_dir, f"adversarial_{spec.name}_batches"), mark)
            t0 = time.time()  # judged by the model
            kept = dict(x_adv=x_adv, verdict=verdict, ll_adv=classifier.batched_log_likelihoods(
                clf, x_adv, ctx.batch_size, keys.named(k, "likelihood")))
            if stopped is not None:
                kept["stopped"] = stopped
            if stochastic:
                kept["draws"] = np.asarray(attacks.success_under_draws(
                    clf, x_adv, ts if spec.targeted else ys, keys.named(k, "draws"), draws=o.eot_check_draws,
                    targeted=spec.targeted))
            kept["seconds"] = np.float64(seconds + time.time() - t0)
            if keep and jax.process_index() == 0:
                classifier.save_kept(keep, mark, **kept)
        x_adv, verdict, ll_adv, stopped = kept["x_adv"], kept["verdict"], kept["ll_adv"], kept.get("stopped")
        ll_clean = ctx.ll_test[idx[:n]]
        r = attack_metrics(ll_adv, ll_clean, x_adv, np.asarray(xs), ys, ts if spec.targeted else None, thr,
                           o.max_l2, train_q, stopped)
        # the attack's own verdict (``verdict``), under its own likelihood draw (paper 001 Tab. 2 judges so)
        if o.max_l2 > 0:
            verdict = verdict & (np.sqrt(((x_adv - np.asarray(xs)) ** 2).reshape(len(ys), -1).sum(1)) <= o.max_l2)
        r["success_rate_attack_draw"] = float(verdict.mean())
        if stochastic:
            r["adversarial_under_draws"] = float(np.mean(kept["draws"]))
        r["seconds"] = float(kept["seconds"])  # (over the runs a resumed attack took)
        results[spec.name] = r
        d = (x_adv.astype(np.float64) - np.asarray(xs, np.float64)).reshape(len(ys), -1)
        outcomes[spec.name] = dict(misclassified=ll_adv.argmax(1) != ys, l2=np.sqrt((d ** 2).sum(1)),
                                   linf=np.abs(d).max(1), threat=threat(spec),
                                   gradient=attacks.get(spec.attack).gradient,
                                   rejected={t: rejection.reject(ll_adv, v) for t, v in thr.items()})
        ctx.log(f"  {spec.name:<32} success {100 * r['success_rate']:6.2f}%  undetected({primary}) "
                f"{100 * r['undetected_success_rate'].get(primary, float('nan')):6.2f}%  L2 {r['mean_l2']:.3f}  "
                f"({r['seconds']:.0f} s)")
    threats = sorted({t for t in map(threat, specs) if t is not None})
    return dict(num_images=int(len(labels)), num_black_box=int(min(o.black_box_images, len(labels))),
                attacks=results, sanity=sanity_checks(results, primary, outcomes), threshold=primary,
                max_l2=o.max_l2, clean_entropy=metrics.mean_posterior_entropy(ctx.ll_test[idx]), eot=eot,
                stochastic=stochastic, **({"attack_surrogate": o.attack_surrogate} if o.attack_surrogate else {}),
                worst_case=worst_case(outcomes, threats, list(thr), len(labels), float(correct.mean())),
                median_train_log_marginal=median_log_q)


def table(a: dict, report: dict) -> list:
    t = a.get("threshold") or "p1"  # (reports before 0.2.0 have no 'threshold': theirs was p1)
    budget = f"; success within L2 {a['max_l2']:g}" if a.get("max_l2") else ""
    through = f"; attacked through the '{a['attack_surrogate']}' surrogate" if a.get("attack_surrogate") else ""
    lines = [f"adversarial ({a['num_images']} correctly classified test images; black-box "
             f"{a['num_black_box']}{budget}{through})",
             f"  {'attack':<30} {'success':>8} {'undet ' + t:>8} {'det ' + t:>8} {'acc':>7} "
             f"{'L2':>6} {'Linf':>6} {'conf':>6} {'AUROC':>7}"]
    for name, r in a["attacks"].items():
        lines.append(f"  {name:<30} {pct(r['success_rate'])} {pct(r['undetected_success_rate'].get(t, np.nan))}"
                     f" {pct(r['detection_rate'].get(t, np.nan))} {pct(r['accuracy'])}"
                     f" {r['mean_l2']:6.3f} {r['mean_linf']:6.3f} {r['wrong_class_confidence']:6.3f}"
                     f" {pct(r['auroc'])}")
    draws = {n: r["adversarial_under_draws"] for n, r in a["attacks"].items() if "adversarial_under_draws" in r}
    if draws:
        lines.append(f"  stochastic log p(x|y): {a['eot']} draws per gradient (EoT); adversarial under fresh draws: "
                     + ", ".join(f"{n} {pct(v).strip()}" for n, v in draws.items()))
    if a.get("worst_case"):
        lines.append(f"  worst case per image over the {len(a['attacks'])} attacks (an attack counts where its "
                     f"image lies within the budget); test robust acc = clean acc x robust acc")
        lines.append(f"    {'threat':<12} {'robust acc':>10} {'robust-or-rejected ' + t:>22} {'test robust':>11}  only broken by")
        for name, w in a["worst_case"].items():
            only = ", ".join(f"{k} {v}" for k, v in w["only_by"].items()) or "-"
            lines.append(f"    {name:<12} {pct(w['robust_accuracy']):>10} {pct(w['robust_or_rejected'].get(t, np.nan)):>22}"
                         f" {pct(w['test_robust_accuracy']):>11}  {only}")
    capped = {n: r["hit_step_cap"] for n, r in a["attacks"].items() if r.get("hit_step_cap")}
    if capped:
        lines.append("  stopped by the step cap (--cw_steps / --cw_steps_kappa_inf), not the paper's rule: " + ", ".join(
            f"{n} {pct(v).strip()}" for n, v in capped.items()))
    return lines + [f"  sanity {line}" for line in a["sanity"]]


def plot(a: dict, ctx: Context, directory: str) -> None:
    results = a["attacks"]
    with figure(f"{directory}/adversarial_accuracy_vs_eps.png", figsize=(4.5, 3.5)) as ax:
        for loss in ("ce", "margin"):
            eps = [e for e in LINF_EPS if f"pgd_linf_{e}_{loss}" in results]
            if eps:
                acc = [100 * results[f"pgd_linf_{e}_{loss}"]["accuracy"] for e in eps]
                # attacked images were correct: accuracy at eps 0 is 100% of them
                ax.plot([0] + eps, [100] + acc, "o-", label=f"PGD L∞ ({loss})")
        ax.set_xlabel("eps [/255]")
        ax.set_ylabel("accuracy on attacked images [%]")
        if ax.lines:
            ax.legend()


OPTIONS = (
    Option("attack_images", 200, "correctly classified test images attacked."),
    Option("black_box_images", 20, "of them, the images for the boundary attack and LocalSearch."),
    Option("attacks", (), "attack names to run, or ensembles: autoattack = APGD-CE, APGD-T (DLR), the "
           "rejection-aware APGD at L-inf 8/255 and L2 0.5, Square and the rejection-aware PGD at L-inf 8/255, "
           "untargeted CW L2 (default all; see gcj.suites.adversarial.default_attacks and ENSEMBLES)."),
    Option("eot", 0, "likelihood draws per gradient of PGD / APGD (Expectation over Transformation) for a "
           "stochastic log p(x|y) (dequantization, Hutchinson probes); 0: 20. A deterministic one: always 1."),
    Option("eot_parallel", False, "run a gradient's EoT draws at once (vmapped: eot times the memory; on an "
           "accelerator a solver-bound likelihood, the score family's, takes about one draw's time) instead of "
           "one after another; the same draws (equal results up to float rounding, which an adaptive ODE "
           "solver can amplify)."),
    Option("eot_check_draws", 20, "fresh likelihood draws on which a stochastic model's adversarials are "
           "re-judged (adversarial_under_draws)."),
    Option("apgd_steps", 100, "APGD steps per run (APGD-T: per target, 9 targets)."),
    Option("square_queries", 5000, "Square attack queries per image."),
    Option("cw_steps", 300, "CW L2 Adam steps at most (each image stops after 20 without gain)."),
    Option("detector_per_dim", True, "paper 002 eq. 25's deviation of log q(x) from the training median "
           "per dimension (/ D; reproduces its Tabs. 7-9), or in nats (--nodetector_per_dim)."),
    Option("cw_steps_kappa_inf", 3000, "the same for the kappa = inf CW attacks (paper 002's rule ends "
           "them after 1000-3000 steps)."),
    Option("boundary_steps", 1000, "boundary attack steps."),
    Option("ls_rounds", 150, "LocalSearch rounds."),
    Option("max_l2", 0.0, "count a success only within this L2 distance of the clean image (0: at "
           "any; paper 001 Tab. 2: 1.5 on MNIST-size images)."),
    Option("bpd_thresholds", (), "thresholds on log p(x) in bits/dim reported beside the percentile ones "
           "(density families; paper 001: 1.4 on MNIST, 4.0 on CIFAR-10).", item=float),
    Option("max_test_bpd_threshold", False, "also a threshold on log p(x) at the highest test bits/dim, "
           "'bpd_test_max' (density families; paper 001 Tab. 2's: every test image accepted)."),
    Option("attack_surrogate", "", "attack through the family's cheaper surrogate of log p(x|y) (the score "
           "family's 'elbo': its variational bound, model.score.elbo_draws draws) instead of the model "
           "itself; every attacked image is still judged by the model."),
    Option("attack_threshold", "", "the threshold the rejection-aware attacks aim under and the "
           "table shows (default: the first percentile one), e.g. p2, bpd1.4 or bpd_test_max."),
)
SUITE = Suite("adversarial", run, table, plot, options=OPTIONS,
              needs_train=True, needs_thresholds=True, check=check)
