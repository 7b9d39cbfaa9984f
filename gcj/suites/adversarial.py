"""Adversarial attacks on the class log-likelihoods (``gcj.robustness.default_attacks``): success,
undetected success and detection at the thresholds, perturbation sizes, sanity checks."""
import jax
import numpy as np

from gcj import classifier, robustness
from gcj.suites.base import Context, Option, Suite, figure, pct


def check(request) -> None:
    names = {s.name for s in robustness.default_attacks()}
    unknown = set(request.options.attacks) - names
    if unknown:
        raise ValueError(f"unknown attacks {sorted(unknown)}; known: {', '.join(sorted(names))}")


def run(ctx: Context) -> dict:
    ctx.log("adversarial suite:")
    o = ctx.request.options
    median_log_q = float(np.median(np.asarray(classifier.log_marginal(ctx.ll_train))))
    out = robustness.adversarial_suite(
        ctx.clf, ctx.test, ctx.ll_test, jax.random.fold_in(ctx.key, 5), ctx.percentile_thresholds, median_log_q,
        o.attack_images, o.black_box_images, o.attacks, o.cw_steps, o.boundary_steps, o.ls_rounds,
        ctx.batch_size, ctx.log)
    out["median_train_log_marginal"] = median_log_q
    return out


def table(a: dict, report: dict) -> list:
    t = a.get("threshold") or "p1"  # (reports before 0.2.0 have no 'threshold': theirs was p1)
    lines = [f"adversarial ({a['num_images']} correctly classified test images; black-box "
             f"{a['num_black_box']})",
             f"  {'attack':<30} {'success':>8} {'undet ' + t:>8} {'det ' + t:>8} {'acc':>7} "
             f"{'L2':>6} {'Linf':>6} {'conf':>6} {'AUROC':>7}"]
    for name, r in a["attacks"].items():
        lines.append(f"  {name:<30} {pct(r['success_rate'])} {pct(r['undetected_success_rate'].get(t, np.nan))}"
                     f" {pct(r['detection_rate'].get(t, np.nan))} {pct(r['accuracy'])}"
                     f" {r['mean_l2']:6.3f} {r['mean_linf']:6.3f} {r['wrong_class_confidence']:6.3f}"
                     f" {pct(r['auroc'])}")
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
    Option("attacks", (), "attack names to run (default all; see gcj.robustness.default_attacks)."),
    Option("cw_steps", 300, "CW L2 Adam steps at most (each image stops after 20 without gain)."),
    Option("boundary_steps", 1000, "boundary attack steps."),
    Option("ls_rounds", 150, "LocalSearch rounds."),
)
SUITE = Suite("adversarial", run, table, plot, options=OPTIONS,
              needs_train=True, needs_thresholds=True, check=check)
