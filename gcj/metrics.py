"""OOD and calibration metrics on numpy arrays (scores, probabilities), written once for all families.

OOD convention: in-distribution is the positive class and a higher score means "more
in-distribution"; thresholds come from in-distribution data only.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from gcj import ops
from gcj.errors import UserError


def _binary(scores_in: np.ndarray, scores_out: np.ndarray):
    scores = np.concatenate([np.asarray(scores_in, np.float64), np.asarray(scores_out, np.float64)])
    if not np.all(np.isfinite(scores)):
        raise UserError("OOD scores contain NaN or infinite values")
    labels = np.concatenate([np.ones(len(scores_in)), np.zeros(len(scores_out))])
    return scores, labels


def roc_curve(scores_in, scores_out):
    """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1); ties handled as sklearn."""
    scores, labels = _binary(scores_in, scores_out)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    tpr = np.r_[0.0, tps / max(tps[-1], 1)]
    fpr = np.r_[0.0, fps / max(fps[-1], 1)]
    return fpr, tpr, tps, fps


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve (trapezoidal, exact with ties)."""
    fpr, tpr, _, _ = roc_curve(scores_in, scores_out)
    return float(np.trapezoid(tpr, fpr))


def aupr(scores_in, scores_out) -> float:
    """Average precision with in-distribution positive (sklearn's average_precision_score)."""
    _, tpr, tps, fps = roc_curve(scores_in, scores_out)
    precision = tps / (tps + fps)
    return float(np.sum(np.diff(tpr) * precision))


def fpr_at_tpr(scores_in, scores_out, tpr_level: float = 0.95) -> float:
    """False-positive rate (OOD accepted) at the first threshold reaching ``tpr_level``."""
    fpr, tpr, _, _ = roc_curve(scores_in, scores_out)
    return float(fpr[np.searchsorted(tpr, tpr_level - 1e-12)])


def ood_metrics(scores_in, scores_out) -> dict:
    """AUROC, AUPR (in positive) and FPR at 95% TPR."""
    return dict(auroc=auroc(scores_in, scores_out), aupr=aupr(scores_in, scores_out),
                fpr95=fpr_at_tpr(scores_in, scores_out, 0.95))


# ---- paper 002's three tests, as scores (higher = more typical) fitted on training scores.

def one_tailed_score(train_scores, scores) -> np.ndarray:
    """One-tailed test: low likelihood is OOD; the score is the likelihood itself."""
    del train_scores
    return np.asarray(scores, np.float64)


def typicality_score(train_scores, scores) -> np.ndarray:
    """Typicality test: distance from the training mean in either direction is OOD."""
    return -np.abs(np.asarray(scores, np.float64) - np.mean(train_scores))


def two_tailed_quantile_score(train_scores, scores) -> np.ndarray:
    """Two-tailed quantile test: min(F, 1 - F) of the training CDF F; rejecting below q/2 puts
    equal training mass q/2 outside each threshold."""
    train = np.sort(np.asarray(train_scores, np.float64))
    scores = np.asarray(scores, np.float64)
    below = np.searchsorted(train, scores, side="left") / len(train)
    above = 1.0 - np.searchsorted(train, scores, side="right") / len(train)
    return np.minimum(below, above)


TESTS = dict(one_tailed=one_tailed_score, typicality=typicality_score,
             two_tailed=two_tailed_quantile_score)


def tests_auroc(train_scores, scores_out, scores_in=None) -> dict:
    """AUROC of each of ``TESTS`` (fitted on ``train_scores``, e.g. log p(x) of training images)
    separating ``scores_out`` from the in-distribution reference: the training scores themselves
    by default — paper 002 Tabs. 7–9, where a threshold's false-positive rate is the fraction of
    training samples it flags — or ``scores_in`` (e.g. held-out test images, or the clean versions
    of attacked ones)."""
    ref = train_scores if scores_in is None else scores_in
    return {n: auroc(test(train_scores, ref), test(train_scores, scores_out)) for n, test in TESTS.items()}


def log_q_shift(train_scores, clean, changed) -> dict:
    """How far a change moved log q (paired: ``changed[i]`` is ``clean[i]`` altered): the mean
    shift in units of the training log q's standard deviation, and the fraction that fell."""
    diff = np.asarray(changed, np.float64) - np.asarray(clean, np.float64)
    return dict(mean_shift_train_sd=float(diff.mean() / np.std(np.asarray(train_scores, np.float64))),
                fraction_fell=float(np.mean(diff < 0)))


# ---- calibration

def calibration_bins(confidence, correct, num_bins: int = 15):
    """Equal-width bins of top-label confidence: (count, mean confidence, accuracy) per bin."""
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    idx = np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0, num_bins - 1)
    count = np.bincount(idx, minlength=num_bins)
    conf = np.bincount(idx, confidence, num_bins) / np.maximum(count, 1)
    acc = np.bincount(idx, correct, num_bins) / np.maximum(count, 1)
    return count, conf, acc


# Paper 002's bins (Ardizzone et al.'s IB-INN code): every class probability is binned, most of
# them near 0, so the bins are finer there and near 1: 7 below 0.05, 15 between, 7 above 0.95.
ALL_CLASS_EDGES = np.concatenate([np.linspace(0.0, 0.05, 8), np.linspace(0.05, 0.95, 16)[1:-1],
                                  1.0 - np.linspace(0.05, 0.0, 8)])


def calibration_all_classes(probs, labels, edges=ALL_CLASS_EDGES, min_count: int = 21) -> dict:
    """ECE and MCE as paper 002 defines them (eqs. 11-12): all N x C probabilities p(y|x) binned by
    ``edges``, R(C) the fraction of a bin's probabilities that belong to the true class, C the bin's
    centre; bins holding fewer than ``min_count`` probabilities are left out (too noisy), and the
    ECE weights the others by their counts. ``bins``: how many were used."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    edges = np.asarray(edges, np.float64)
    true_class = labels[:, None] == np.arange(probs.shape[1])[None]
    count, _ = np.histogram(probs.ravel(), edges)
    hits, _ = np.histogram(probs[true_class], edges)
    used = count >= min_count
    if not used.any():
        raise UserError(f"no calibration bin holds {min_count} probabilities ({probs.size} in all)")
    centre = 0.5 * (edges[1:] + edges[:-1])
    gap = np.abs(hits[used] / count[used] - centre[used])
    return dict(ece=float(np.sum(count[used] * gap) / np.sum(count[used])), mce=float(gap.max()),
                bins=int(used.sum()))


def calibration_metrics(probs, labels, num_bins: int = 15, oce_level: float = 0.997) -> dict:
    """ECE, MCE (top label, equal-width bins), OCE and mean predictive entropy (nats).

    OCE (paper 002): error rate among predictions with confidence >= ``oce_level``, divided by
    1 - oce_level (1.0 = exactly as confident as warranted); NaN when no prediction qualifies.
    """
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    confidence, pred = probs.max(1), probs.argmax(1)
    correct = pred == labels
    count, conf, acc = calibration_bins(confidence, correct, num_bins)
    gap = np.abs(acc - conf)
    confident = confidence >= oce_level
    with np.errstate(divide="ignore"):  # log 0 = -inf: 0 log 0 = 0 in ops.entropy
        entropy = ops.entropy(np.log(probs))
    return dict(ece=float(np.sum(count * gap) / len(labels)),
                mce=float(gap[count > 0].max()),
                oce=float((1 - correct[confident].mean()) / (1 - oce_level)) if confident.any()
                else float("nan"),
                oce_fraction=float(confident.mean()),
                entropy=float(entropy.mean()))


def mean_posterior_entropy(class_ll) -> float:
    """The mean over images of the posterior p(y|x)'s entropy (nats), from class log-likelihoods
    ``[N, C]``."""
    return float(ops.entropy(np.asarray(ops.log_posterior(jnp.asarray(class_ll)), np.float64)).mean())
