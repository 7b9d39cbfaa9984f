"""Adversarial attacks on the class log-likelihoods (``gcj.robustness.default_attacks``): success,
undetected success and detection at the thresholds, perturbation sizes, sanity checks."""
import jax
import numpy as np

from gcj import classifier, ops, robustness
from gcj.suites.base import Context, Option, Suite, figure, pct


def check(request) -> None:
    names = {s.name for s in robustness.default_attacks()}
    unknown = set(robustness.expand(request.options.attacks)) - names
    if unknown:
        raise ValueError(f"unknown attacks {sorted(unknown)}; known: {', '.join(sorted(names))} and the "
                         f"ensembles {', '.join(robustness.ENSEMBLES)}")


def thresholds(ctx: Context) -> dict:
    """The thresholds the suite reports, name -> [C]: the config's percentile ones, then one per
    ``bpd_thresholds`` value (``bpd<b>``: accepted iff max_y log p(x|y) is at most b bits/dim; a
    density family's); ``attack_threshold`` first (the one the rejection-aware attacks aim under)."""
    o = ctx.request.options
    out = dict(ctx.percentile_thresholds)
    if o.bpd_thresholds and not ctx.clf.family.density:
        raise ValueError(f"bits/dim thresholds need a pixel density; {ctx.clf.family.name!r}'s "
                         "log p(x|y) is not one (use the percentile thresholds)")
    dim = int(np.prod(ctx.clf.image_shape))
    for b in o.bpd_thresholds:
        out[f"bpd{b:g}"] = np.full(ctx.clf.num_classes, ops.log_p_at_bits_per_dim(float(b), dim))
    if o.attack_threshold:
        if o.attack_threshold not in out:
            raise ValueError(f"attack_threshold {o.attack_threshold!r} is none of {', '.join(out)}")
        out = {o.attack_threshold: out[o.attack_threshold], **out}
    return out


def run(ctx: Context) -> dict:
    ctx.log("adversarial suite:")
    o = ctx.request.options
    train_q = np.asarray(classifier.log_marginal(ctx.ll_train))
    median_log_q = float(np.median(train_q))
    out = robustness.adversarial_suite(
        ctx.clf, ctx.test, ctx.ll_test, jax.random.fold_in(ctx.key, 5), thresholds(ctx), median_log_q,
        o.attack_images, o.black_box_images, o.attacks, o.cw_steps, o.boundary_steps, o.ls_rounds,
        o.cw_steps_kappa_inf, ctx.batch_size, ctx.log, o.max_l2, train_q, o.detector_per_dim, o.eot,
        o.eot_check_draws, o.apgd_steps, o.square_queries)
    out["median_train_log_marginal"] = median_log_q
    return out


def table(a: dict, report: dict) -> list:
    t = a.get("threshold") or "p1"  # (reports before 0.2.0 have no 'threshold': theirs was p1)
    budget = f"; success within L2 {a['max_l2']:g}" if a.get("max_l2") else ""
    lines = [f"adversarial ({a['num_images']} correctly classified test images; black-box "
             f"{a['num_black_box']}{budget})",
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
            eps = [e for e in robustness.LINF_EPS if f"pgd_linf_{e}_{loss}" in results]
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
           "untargeted CW L2 (default all; see gcj.robustness.default_attacks and ENSEMBLES)."),
    Option("eot", 0, "likelihood draws per gradient of PGD / APGD (Expectation over Transformation) for a "
           "stochastic log p(x|y) (dequantization, Hutchinson probes); 0: 20. A deterministic one: always 1."),
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
    Option("bpd_thresholds", (), "thresholds in bits/dim reported beside the percentile ones "
           "(density families; paper 001: 1.4 on MNIST, 4.0 on CIFAR-10).", item=float),
    Option("attack_threshold", "", "the threshold the rejection-aware attacks aim under and the "
           "table shows (default: the first percentile one), e.g. p2 or bpd1.4."),
)
SUITE = Suite("adversarial", run, table, plot, options=OPTIONS,
              needs_train=True, needs_thresholds=True, check=check)
