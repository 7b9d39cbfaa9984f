"""Robustness suites — adversarial, corruptions, interpolation, nll_gap — written once against the
contract: every family is attacked, corrupted and measured the same way, from ``log p(x|y)``.

Each ``*_suite`` takes a ``Classifier``, the test split and what ``gcj.evaluate`` already computed,
and returns a JSON-able dict; ``evaluate.py --suites ...`` calls them.
"""

from __future__ import annotations

import dataclasses
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from gcj import attacks, classifier, corruptions, data, metrics, ops, rejection



# ------------------------------------------------------------------------------ adversarial

@dataclasses.dataclass(frozen=True)
class AttackSpec:
    name: str
    kind: str            # pgd | fgsm | apgd | apgd_t | square | cw | boundary | local_search
    params: tuple = ()   # keyword arguments of the attack, as (key, value) pairs
    targeted: bool = False
    detector: str = ""   # "" | "median" (paper 002 eq. 25) | "threshold" (paper 001; rejection-aware)
    black_box: bool = False


LINF_EPS = (4, 6, 8)  # / 255, paper 000 Fig. 2 and paper 003 Fig. 2
GRADIENT_KINDS = ("pgd", "fgsm", "apgd", "apgd_t")  # the attacks that take EoT draws

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
        specs.append(AttackSpec(f"cw_l2_kappa{kappa:g}", "cw", cw(kappa), targeted=True))
    for kappa in (0.01, 1.0, float("inf")):  # paper 002 eq. 25, Tabs. 7-9
        for d in (66.0, 1000.0):
            specs.append(AttackSpec(f"cw_l2_kappa{kappa:g}_d{d:g}", "cw", cw(kappa) + (("detector_weight", d),),
                                    targeted=True, detector="median"))
    specs.append(AttackSpec("cw_l2_kappa1_threshold", "cw", cw(1.0) + (("threshold_weight", 1.0),),
                            targeted=True, detector="threshold"))
    for c in (1.0, 10.0, 100.0, 1000.0):
        specs.append(AttackSpec(f"cw_l2_untargeted_c{c:g}", "cw",
                                (("c", c), ("kappa", 0.0), ("max_steps", cw_steps), ("targeted", False))))
    specs += [AttackSpec("boundary", "boundary", (("steps", boundary_steps),), targeted=True,
                         detector="threshold", black_box=True),
              # paper 000 Tab. 5: untargeted and rejection-unaware (success = misclassified)
              AttackSpec("boundary_untargeted", "boundary", (("steps", boundary_steps), ("targeted", False)),
                         black_box=True),
              AttackSpec("local_search", "local_search", (("rounds", ls_rounds),), black_box=True)]
    return specs


def threat(spec: AttackSpec):
    """(norm, eps) of a bounded attack (L∞ eps < 1, any L2 eps), else None."""
    kw = dict(spec.params)
    if spec.kind not in GRADIENT_KINDS + ("square",):
        return None
    norm = kw.get("norm", "linf")
    return None if norm == "linf" and kw["eps"] >= 1.0 else (norm, float(kw["eps"]))


def threat_name(norm: str, eps: float) -> str:
    return f"linf {eps * 255:g}/255" if norm == "linf" else f"l2 {eps:g}"


def _run_attack(spec: AttackSpec, clf, x, labels, targets, key, thresholds, median_log_q, starts,
                detector_dims: int = 1, eot: int = 1):
    kw = dict(spec.params)
    if spec.kind in GRADIENT_KINDS:
        kw["eot"] = eot
    t = thresholds if spec.detector == "threshold" else None
    if spec.kind in ("pgd", "fgsm"):
        run = attacks.pgd if spec.kind == "pgd" else attacks.fgsm
        return run(clf, x, targets if spec.targeted else labels, key, thresholds=t, **kw)
    if spec.kind == "apgd":
        return attacks.apgd(clf, x, labels, key, thresholds=t, **kw)
    if spec.kind == "apgd_t":
        return attacks.apgd_targeted(clf, x, labels, key, thresholds=t, **kw)
    if spec.kind == "square":
        return attacks.square(clf, x, labels, key, thresholds=t, **kw)
    if spec.kind == "cw":
        targeted = kw.pop("targeted", True)
        if spec.detector == "median":
            kw["detector_median"], kw["detector_dims"] = median_log_q, detector_dims
        t = thresholds if spec.detector == "threshold" else None
        return attacks.cw_l2(clf, x, targets if targeted else labels, key, targeted=targeted,
                             thresholds=t, **kw)
    if spec.kind == "boundary":
        # a start accepted in the clean scores may be rejected under the oracle's noise draw
        targeted = kw.pop("targeted", True)
        t = thresholds if spec.detector == "threshold" else None
        return attacks.boundary(clf, x, targets if targeted else labels, starts, key, thresholds=t,
                                targeted=targeted, check_starts=False, **kw)
    if spec.kind == "local_search":
        return attacks.local_search(clf, x, labels, key, **kw)
    raise ValueError(f"unknown attack kind {spec.kind!r}")


def attack_metrics(ll_adv, ll_clean, x_adv, x, labels, targets, thresholds: dict,
                   max_l2: float = 0.0, train_log_marginal=None, stopped=None) -> dict:
    """The metrics of one attack on images that were classified correctly before it.

    success: untargeted, the prediction changed; targeted, it is the target; with ``max_l2`` > 0
    only within that L2 distance of the clean image (paper 001 Tab. 2's budget). Undetected success
    (paper 001 Tab. 2): success AND accepted at the threshold; detection rate: rejected among the
    successes; rejection rate: rejected among all attacked inputs. Perturbations and the wrong
    class's confidence are averaged over successes; the OOD ROC-AUC scores adversarial inputs
    against the clean ones (max_y log p(x|y)), as paper 002 Tab. 7–9, and with
    ``train_log_marginal`` (log p(x) of training images) paper 002's three tests on log p(x)
    (``tests_auroc``); ``corruption`` is Tabs. 7-9's per-pixel L2 (the mean over pixels of the
    perturbation's norm over channels, successes), ``entropy`` the posterior's over all attacked
    inputs; ``stopped`` ([N] bool, CW) gives ``hit_step_cap``, the fraction its step cap stopped.
    """
    pred = ll_adv.argmax(1)
    success = pred == targets if targets is not None else pred != labels
    probs = np.exp(np.asarray(classifier.log_posterior(jnp.asarray(ll_adv))))
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
               auroc_log_marginal=metrics.auroc(np.asarray(classifier.log_marginal(jnp.asarray(ll_clean))),
                                                np.asarray(classifier.log_marginal(jnp.asarray(ll_adv)))))
    d = np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)
    out["corruption"] = mean(np.sqrt((d ** 2).sum(-1)).reshape(len(labels), -1).mean(1)[success])
    out["entropy"] = _entropy(ll_adv)
    if train_log_marginal is not None:
        clean_q = np.asarray(classifier.log_marginal(jnp.asarray(ll_clean)))
        adv_q = np.asarray(classifier.log_marginal(jnp.asarray(ll_adv)))
        out["tests_auroc"] = {n: metrics.auroc(test(train_log_marginal, clean_q), test(train_log_marginal, adv_q))
                              for n, test in metrics.TESTS.items()}
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
            lines.append(f"{'ok' if ok else 'WARNING'}: PGD L∞ ({loss}) accuracy falls monotonically with eps: "
                         + " >= ".join(f"{100 * a:.1f}%" for a in accs))
    if "pgd_linf_unbounded" in results:
        s = results["pgd_linf_unbounded"]["success_rate"]
        lines.append(f"{'ok' if s >= 0.99 else 'WARNING'}: unbounded PGD success {100 * s:.1f}% (expect ~100%)")
    white = max((r["success_rate"] for n, r in results.items() if n.startswith("pgd_linf_unbounded")
                 and "rejection" not in n), default=None)
    for n in ("local_search",):
        if n in results and white is not None:
            s = results[n]["success_rate"]
            lines.append(f"{'ok' if s <= white + 1e-9 else 'WARNING'}: black-box {n} success {100 * s:.1f}% "
                         f"<= white-box unbounded PGD {100 * white:.1f}%")
    if "boundary" in results and "pgd_linf_unbounded_rejection" in results:
        b = results["boundary"]["undetected_success_rate"].get(threshold, float("nan"))
        w = results["pgd_linf_unbounded_rejection"]["undetected_success_rate"].get(threshold, float("nan"))
        lines.append(f"{'ok' if not b > w + 1e-9 else 'WARNING'}: black-box boundary undetected success "
                     f"{100 * b:.1f}% <= rejection-aware PGD {100 * w:.1f}% ({threshold})")
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


def adversarial_suite(clf, test: data.Split, ll_test: np.ndarray, key, thresholds: dict,
                      median_log_q: float,
                      num_images: int = 200, black_box_images: int = 20, only=None,
                      cw_steps: int = 300, boundary_steps: int = 1000, ls_rounds: int = 150,
                      cw_steps_kappa_inf: int = 3000,
                      batch_size: int = 100, log=print, max_l2: float = 0.0,
                      train_log_marginal=None, detector_per_dim: bool = True, eot: int = 0,
                      eot_check_draws: int = 20, apgd_steps: int = 100, square_queries: int = 5000) -> dict:
    """Runs ``default_attacks`` (or the names in ``only``) on ``num_images`` seeded-random test images
    classified correctly (``black_box_images`` of them for the decision/score-based attacks);
    ``max_l2`` > 0 counts a success only within that L2 distance, ``train_log_marginal`` fits
    paper 002's OOD tests (``attack_metrics``); ``detector_per_dim``: eq. 25's deviation of log q
    per dimension (False: in nats; per dimension reproduces paper 002 Tabs. 7-9's 100% success).
    ``only`` may name ensembles (``ENSEMBLES``). ``eot``: likelihood draws per gradient of the
    gradient attacks for a stochastic log p(x|y) (0: 20, AutoAttack's 'rand' version; always 1 for
    a deterministic one); for a stochastic one every attack also reports ``adversarial_under_draws``,
    the mean fraction of ``eot_check_draws`` fresh draws under which its images are adversarial.
    ``worst_case``: the per-image worst case over the attacks run, per threat model (``worst_case``).

    Targets (targeted attacks) are uniform among the other classes; the boundary attack starts
    from a test image of the target class that is classified as it and accepted at the first of
    ``thresholds`` (every one is reported; the first is the one the rejection-aware attacks aim under).
    """
    specs = default_attacks(cw_steps, boundary_steps, ls_rounds, cw_steps_kappa_inf, apgd_steps, square_queries)
    if only:
        only = expand(only)
        unknown = set(only) - {s.name for s in specs}
        if unknown:
            raise ValueError(f"unknown attacks {sorted(unknown)}; known: {', '.join(s.name for s in specs)}")
        specs = [s for s in specs if s.name in only]
    k_sel, k_tgt, k_att = jax.random.split(key, 3)
    order = np.asarray(jax.random.permutation(k_sel, len(test.labels)))
    correct = ll_test.argmax(1) == test.labels
    idx = order[correct[order]][:num_images]
    x = data.to_float(test.images[idx])
    labels = test.labels[idx]
    c = clf.num_classes
    targets = (labels + np.asarray(jax.random.randint(k_tgt, labels.shape, 1, c))) % c
    thr = {k: np.asarray(v) for k, v in thresholds.items()}
    primary = next(iter(thr), None)  # the threshold the rejection-aware attacks aim under
    starts = None
    if any(s.kind == "boundary" for s in specs):
        # per target class, the test image of it that is classified as it and accepted with
        # the largest margin above its threshold: the boundary attack's start
        p1 = thr[primary] if primary else np.full(c, -np.inf)
        margin = np.where(correct, ops.pick(ll_test, test.labels) - p1[test.labels], -np.inf)
        margin = np.where(margin >= 0, margin, -np.inf)  # accepted
        best = np.array([np.argmax(np.where(test.labels == t, margin, -np.inf)) for t in range(c)])
        if not np.all(np.isfinite(margin[best])):
            raise ValueError("the boundary attack needs an accepted, correctly classified test image of "
                             "every class")
        starts = data.to_float(test.images[best[targets]])
    stochastic = attacks.is_stochastic(clf, x[:2], jax.random.fold_in(key, 7))
    eot = (eot or 20) if stochastic else 1  # a deterministic model's draws are all the same
    results, outcomes = {}, {}
    for spec in classifier.progress(specs, "attacks"):
        n = black_box_images if spec.black_box else num_images
        xs, ys, ts = x[:n], labels[:n], targets[:n]
        st = None if starts is None else starts[:n]
        k = jax.random.fold_in(k_att, zlib.crc32(spec.name.encode()))
        t0 = time.time()
        adv = [_run_attack(spec, clf, xs[i:i + batch_size], ys[i:i + batch_size], ts[i:i + batch_size],
                           jax.random.fold_in(k, i), thr.get(primary), median_log_q,
                           None if st is None else st[i:i + batch_size],
                           int(np.prod(x.shape[1:])) if detector_per_dim else 1, eot)
               for i in range(0, len(ys), batch_size)]
        x_adv = np.concatenate([np.asarray(a.x) for a in adv])
        ll_adv = classifier.batched_log_likelihoods(clf, x_adv, batch_size, jax.random.fold_in(k, 1))
        ll_clean = ll_test[idx[:n]]
        stopped = None if adv[0].stopped is None else np.concatenate([np.asarray(a.stopped) for a in adv])
        r = attack_metrics(ll_adv, ll_clean, x_adv, np.asarray(xs), ys, ts if spec.targeted else None, thr,
                           max_l2, train_log_marginal, stopped)
        if stochastic:
            r["adversarial_under_draws"] = float(np.mean(attacks.success_under_draws(
                clf, x_adv, ts if spec.targeted else ys, jax.random.fold_in(k, 2), draws=eot_check_draws,
                targeted=spec.targeted)))
        r["seconds"] = time.time() - t0
        results[spec.name] = r
        d = (x_adv.astype(np.float64) - np.asarray(xs, np.float64)).reshape(len(ys), -1)
        outcomes[spec.name] = dict(misclassified=ll_adv.argmax(1) != ys, l2=np.sqrt((d ** 2).sum(1)),
                                   linf=np.abs(d).max(1), threat=threat(spec),
                                   gradient=spec.kind in GRADIENT_KINDS or spec.kind == "cw",
                                   rejected={t: rejection.reject(ll_adv, v) for t, v in thr.items()})
        log(f"  {spec.name:<32} success {100 * r['success_rate']:6.2f}%  undetected({primary}) "
            f"{100 * r['undetected_success_rate'].get(primary, float('nan')):6.2f}%  L2 {r['mean_l2']:.3f}  "
            f"({r['seconds']:.0f} s)")
    threats = sorted({t for t in map(threat, specs) if t is not None})
    return dict(num_images=int(len(labels)), num_black_box=int(min(black_box_images, len(labels))),
                attacks=results, sanity=sanity_checks(results, primary, outcomes), threshold=primary,
                max_l2=max_l2, clean_entropy=_entropy(ll_test[idx]), eot=eot, stochastic=stochastic,
                worst_case=worst_case(outcomes, threats, list(thr), len(labels), float(correct.mean())))


# ------------------------------------------------------------------------------ corruptions

def corrupted_test_set(cfg_data, name: str, severity: int, key, source: str = "auto",
                       max_images: int | None = None, indices=None) -> tuple[data.Split, str]:
    """(corrupted test split at model shape, its source) for corruption ``name`` at ``severity``.

    ``source``: ``"tfds"`` reads TFDS ``cifar10_corrupted/<name>_<severity>`` (CIFAR-10 only;
    prepared array_record data), ``"generated"`` corrupts the dataset's own test images with
    ``gcj.corruptions`` (seeded by ``key``), ``"auto"`` tries TFDS for CIFAR-10 and falls back to
    generating. ``max_images``: the first that many test images (the same for every set);
    ``indices``: instead, these positions in the test set (e.g. a random subset's).
    """
    if source not in ("auto", "tfds", "generated"):
        raise ValueError(f"corruption source must be 'auto', 'tfds' or 'generated', got {source!r}")
    if source == "tfds" and cfg_data.name != "cifar10":
        raise ValueError(f"TFDS corruptions exist here for cifar10 only, not {cfg_data.name!r}")
    split = None
    if source in ("auto", "tfds") and cfg_data.name == "cifar10":
        try:
            split, used = data.read_tfds(f"cifar10_corrupted/{name}_{severity}", "test",
                                         cfg_data.data_dir or None), "tfds"
        except Exception as e:  # noqa: BLE001 - tfds raises several types for "not prepared"
            if source == "tfds":
                raise data.DatasetNotFoundError(
                    f"TFDS cifar10_corrupted/{name}_{severity} is not prepared: {e}. Prepare it on a "
                    "machine with internet, or use --corruption_source generated") from e
    if split is None:
        clean = _take(data.load(cfg_data.name, "test", cfg_data.data_dir or None), max_images, indices)
        split, used = data.Split(corruptions.corrupt(clean.images, name, severity, key), clean.labels), "generated"
    else:
        split = _take(split, max_images, indices)
    images = data.to_shape(split.images, cfg_data.image_size, cfg_data.channels, cfg_data.resize)
    return data.Split(images, split.labels), used


def _take(split: data.Split, max_images: int | None, indices) -> data.Split:
    """The test images at ``indices``, else the first ``max_images``, else all."""
    if indices is None:
        indices = slice(None) if max_images is None else slice(max_images)
    return data.Split(split.images[indices], split.labels[indices])


def _nanmean(values):
    """Mean over the finite values (NaN: acc-left of a set with everything rejected); NaN if none."""
    v = np.asarray(values, np.float64)
    return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")


def _entropy(ll):
    """Mean entropy of the posterior (nats)."""
    return float(ops.entropy(np.asarray(classifier.log_posterior(jnp.asarray(ll)), np.float64)).mean())


def corruption_suite(clf, ll_clean: np.ndarray, clean_labels: np.ndarray, key, thresholds: dict,
                     source: str = "auto", max_images: int | None = 1000, names=corruptions.NAMES,
                     baseline: dict | None = None, batch_size: int = 100, log=print,
                     indices=None, train_log_marginal=None) -> dict:
    """Accuracy, acc-left / rejection rate, entropy, OOD ROC-AUC and mean log p(x) (paper 004 Fig. 4)
    on every corruption × severity.

    ``ll_clean``: the clean test log-likelihoods of the same images (the first ``max_images``, or
    those at ``indices`` in the test set). ``train_log_marginal`` (log p(x) of training images)
    fits paper 002's three OOD tests on log p(x) (``tests_auroc``, clean vs corrupted).
    mCE and relative mCE (paper 002 eqs. 22–23) against ``baseline``, the ``corruptions`` block of
    another report (named in it): mCE = mean_c Σ_s E_sc / Σ_s E^base_sc, relative
    mCE = mean_c Σ_s (E_sc − E_clean) / Σ_s (E^base_sc − E^base_clean).
    """
    thr = {k: np.asarray(v) for k, v in thresholds.items()}
    clean_acc = float((ll_clean.argmax(1) == clean_labels).mean())
    h_clean = _entropy(ll_clean)
    q_clean = np.asarray(classifier.log_marginal(jnp.asarray(ll_clean)))
    sets, sources = {}, set()
    for name in classifier.progress(names, "corruptions"):
        for sev in corruptions.SEVERITIES:
            k = jax.random.fold_in(key, zlib.crc32(f"{name}_{sev}".encode()))
            split, used = corrupted_test_set(clf.config.data, name, sev, jax.random.fold_in(key, 0),
                                             source, max_images, indices)
            sources.add(used)
            ll = classifier.batched_log_likelihoods(clf, split.images, batch_size, k)
            q = np.asarray(classifier.log_marginal(jnp.asarray(ll)))
            r = dict(accuracy=float((ll.argmax(1) == split.labels).mean()),
                     entropy_change=_entropy(ll) - h_clean,
                     auroc=metrics.auroc(ll_clean.max(1), ll.max(1)), mean_log_px=float(q.mean()))
            if train_log_marginal is not None:
                r["tests_auroc"] = {n: metrics.auroc(test(train_log_marginal, q_clean), test(train_log_marginal, q))
                                    for n, test in metrics.TESTS.items()}
            r.update({k_: rejection.rejection_metrics(ll, split.labels, t) for k_, t in thr.items()})
            for k_ in thr:
                del r[k_]["accuracy"]
            sets[f"{name}_{sev}"] = r
        log(f"  {name:<18} accuracy by severity: " + " ".join(
            f"{100 * sets[f'{name}_{s}']['accuracy']:5.1f}" for s in corruptions.SEVERITIES))
    noises = ("gaussian_noise", "shot_noise", "impulse_noise")  # paper 004 Tab. 2's "w/o noises"
    quiet = [v["accuracy"] for k, v in sets.items() if k.rsplit("_", 1)[0] not in noises]
    out = dict(num_images=int(len(clean_labels)), source=sorted(sources), clean_accuracy=clean_acc,
               mean_accuracy_without_noises=float(np.mean(quiet)) if quiet else None,
               **({"frost": corruptions.frost_source()} if "frost" in names and "generated" in sources else {}),
               clean_mean_log_px=float(q_clean.mean()),
               mean_accuracy=float(np.mean([v["accuracy"] for v in sets.values()])), sets=sets)
    out["per_severity"] = {}
    for sev in corruptions.SEVERITIES:
        rows = [sets[f"{n}_{sev}"] for n in names]
        out["per_severity"][str(sev)] = dict(
            accuracy=float(np.mean([r["accuracy"] for r in rows])),
            **{k: dict(acc_left=_nanmean([r[k]["acc_left"] for r in rows]),
                       rejection_rate=float(np.mean([r[k]["rejection_rate"] for r in rows]))) for k in thr})
    def per(n, key):
        return float(np.mean([sets[f"{n}_{s}"][key] for s in corruptions.SEVERITIES]))

    out["per_corruption"] = {n: dict(accuracy=per(n, "accuracy"), auroc=per(n, "auroc"),
                                     entropy_change=per(n, "entropy_change"), mean_log_px=per(n, "mean_log_px"))
                             for n in names}
    if train_log_marginal is not None:
        for n in names:
            out["per_corruption"][n]["tests_auroc"] = {t: float(np.mean([sets[f"{n}_{s}"]["tests_auroc"][t] for s in
                                                                          corruptions.SEVERITIES])) for t in metrics.TESTS}
    if baseline is not None:
        out.update(mce(out, baseline))
    return out


def mce(report: dict, baseline: dict) -> dict:
    """mCE and relative mCE of a ``corruptions`` report block against a baseline's (same sets)."""
    names = sorted({k.rsplit("_", 1)[0] for k in report["sets"]})
    missing = [f"{n}_{s}" for n in names for s in corruptions.SEVERITIES if f"{n}_{s}" not in baseline["sets"]]
    if missing:
        raise ValueError(f"the baseline report lacks corruption sets {missing[:3]}...")
    err = lambda r, n, s: 1 - r["sets"][f"{n}_{s}"]["accuracy"]
    ce, rel = [], []
    for n in names:
        base = sum(err(baseline, n, s) for s in corruptions.SEVERITIES)
        ce.append(sum(err(report, n, s) for s in corruptions.SEVERITIES) / base)
        base_rel = sum(err(baseline, n, s) - (1 - baseline["clean_accuracy"]) for s in corruptions.SEVERITIES)
        rel.append(sum(err(report, n, s) - (1 - report["clean_accuracy"]) for s in corruptions.SEVERITIES)
                   / base_rel)
    return dict(mce=float(np.mean(ce)), relative_mce=float(np.mean(rel)),
                baseline=baseline.get("name", "unnamed"))


# ---------------------------------------------------------------------- likelihood analyses

RECORDED_PAIRS = 100  # the interpolation paths whose curves a report keeps


def interpolation_suite(clf, test: data.Split, ll_test: np.ndarray, key, thresholds: dict,
                        num_pairs: int = 50, num_t: int = 24, batch_size: int = 100) -> dict:
    """log p(x) and posteriors along t·x_A + (1−t)·x_B (paper 001 Fig. 1/4, paper 004 Fig. 2).

    Pairs: seeded random correctly classified test images of different classes, accepted at the
    first of ``thresholds``.
    Reports per path whether it stays accepted at every t, and its shape against the chord
    between its end points: "convex" (below the chord everywhere inside: a likelihood valley
    between the classes), "concave" (above it everywhere), else "mixed". Curves: the means over
    all pairs (``mean_log_px``, ``mean_posterior_a`` / ``_b``, ``[t]``: paper 001 Figs. 4 and 6)
    and those of the first ``RECORDED_PAIRS`` pairs (``log_px`` ``[pairs, t]``, ``posterior_a`` /
    ``_b``; to 0.01 nats and 1e-4), so that a paper-size run stays small.
    """
    thr = np.asarray(next(iter(thresholds.values()))) if thresholds else np.full(clf.num_classes, -np.inf)
    ok = (ll_test.argmax(1) == test.labels) & ~rejection.reject(ll_test, thr)
    pool = np.flatnonzero(ok)
    k_a, k_b, k_ll = jax.random.split(key, 3)
    a = pool[np.asarray(jax.random.randint(k_a, (4 * num_pairs,), 0, len(pool)))]
    b = pool[np.asarray(jax.random.randint(k_b, (4 * num_pairs,), 0, len(pool)))]
    keep = test.labels[a] != test.labels[b]
    a, b = a[keep][:num_pairs], b[keep][:num_pairs]
    ts = np.linspace(0.0, 1.0, num_t)
    xa, xb = data.to_float(test.images[a]), data.to_float(test.images[b])
    path = np.asarray(ts[None, :, None, None, None] * xa[:, None] + (1 - ts[None, :, None, None, None]) * xb[:, None])
    ll = classifier.batched_log_likelihoods(clf, path.reshape(-1, *clf.image_shape), batch_size, k_ll)
    ll = ll.reshape(len(a), num_t, -1)
    log_px = np.asarray(classifier.log_marginal(jnp.asarray(ll.reshape(-1, ll.shape[-1])))).reshape(len(a), num_t)
    post = np.exp(np.asarray(classifier.log_posterior(jnp.asarray(ll.reshape(-1, ll.shape[-1]))))).reshape(ll.shape)
    accepted_all = ~rejection.reject(ll.reshape(-1, ll.shape[-1]), thr).reshape(len(a), num_t)
    chord = log_px[:, :1] * (1 - ts[None]) + log_px[:, -1:] * ts[None]  # t=0 is x_B, t=1 is x_A
    gap = (log_px - chord)[:, 1:-1]
    shape = np.where((gap < 0).all(1), "convex", np.where((gap > 0).all(1), "concave", "mixed"))
    post_a, post_b = (post[np.arange(len(a)), :, test.labels[i]] for i in (a, b))
    return dict(num_pairs=int(len(a)), t=ts.tolist(),
                fraction_never_rejected=float(accepted_all.all(1).mean()),
                fraction_convex=float((shape == "convex").mean()),
                fraction_concave=float((shape == "concave").mean()),
                mean_gap_to_chord=float(gap.mean()), min_gap_to_chord_median=float(np.median(gap.min(1))),
                mean_log_px=log_px.mean(0).tolist(), mean_posterior_a=post_a.mean(0).tolist(),
                mean_posterior_b=post_b.mean(0).tolist(),
                log_px=np.round(log_px[:RECORDED_PAIRS], 2).tolist(),
                posterior_a=np.round(post_a[:RECORDED_PAIRS], 4).tolist(),
                posterior_b=np.round(post_b[:RECORDED_PAIRS], 4).tolist())


def nll_gap(ll_test: np.ndarray, labels: np.ndarray) -> dict:
    """−log p(x|y_true) against the most likely wrong class's −log p(x|y') (paper 001 Fig. 3)."""
    true = ops.pick(ll_test, labels)
    wrong, _ = ops.best_other(ll_test, labels)
    gap = true - wrong  # > 0: the true class is the most likely
    return dict(num=int(len(labels)), median_gap=float(np.median(gap)), mean_gap=float(gap.mean()),
                gap_quantiles={str(q): float(np.quantile(gap, q)) for q in (0.01, 0.1, 0.5, 0.9)},
                fraction_true_more_likely=float((gap > 0).mean()),
                nll_true=(-true).tolist(), nll_wrong=(-wrong).tolist())
