"""Classification with rejection (paper 000 eq. 9), written once against ``[N, C]`` log-likelihoods.

Thresholds are per class: reject x when max_y log p(x|y) < delta_{argmax}.
"""

from __future__ import annotations

import math

import numpy as np

from gcj import ops
from gcj.errors import UserError


def percentile_thresholds(class_ll: np.ndarray, labels: np.ndarray, percentile: float) -> np.ndarray:
    """Per class c: the ``percentile`` of log p(x|c) over correctly classified images of class c.

    ``class_ll`` are un-augmented training images' log-likelihoods ``[N, C]``. A class with no
    correctly classified image gets +inf (everything predicted as it is rejected).
    """
    class_ll, labels = np.asarray(class_ll), np.asarray(labels)
    correct = class_ll.argmax(1) == labels
    out = np.full(class_ll.shape[1], np.inf)
    for c in range(class_ll.shape[1]):
        scores = class_ll[correct & (labels == c), c]
        if scores.size:
            out[c] = np.percentile(scores, percentile)
    return out


def conformal_thresholds(class_ll: np.ndarray, alpha: float) -> np.ndarray:
    """Split-conformal per-class thresholds from a held-out calibration split ``[n, C]``.

    Grouped by predicted class c (Mondrian), with s = max_y log p(x|y): delta_c is the k-th
    smallest calibration score predicted as c, k = floor(alpha (n_c + 1)). For an exchangeable
    in-distribution test point, P(reject) = P(s < delta_c) <= k / (n_c + 1) <= alpha in every class,
    hence overall. Labels are not needed. k = 0 (too few points) gives -inf: never reject.
    """
    if not 0.0 < alpha < 1.0:
        raise UserError(f"alpha must be in (0, 1), got {alpha}")
    class_ll = np.asarray(class_ll)
    pred, score = class_ll.argmax(1), class_ll.max(1)
    out = np.full(class_ll.shape[1], -np.inf)
    for c in range(class_ll.shape[1]):
        s = np.sort(score[pred == c])
        k = math.floor(alpha * (s.size + 1))
        if k >= 1:
            out[c] = s[k - 1]
    return out


def conformal_min_calibration(alpha: float) -> int:
    """The fewest calibration images a class needs for ``conformal_thresholds`` to fit its
    threshold: the smallest n with floor(alpha (n + 1)) >= 1."""
    return math.ceil(1.0 / alpha) - 1


def split_fitted(thresholds: dict, conformal_alpha: float, num_calibration: int) -> tuple[dict, dict]:
    """``(fitted, not_fitted)``: threshold sets as arrays, and for each set that could not be
    fitted (a conformal class with too few calibration images: -inf, never reject) the reason.
    A set not fitted must be reported as n/a, never as a detection or rejection rate of 0."""
    fitted, not_fitted = {}, {}
    for name, t in thresholds.items():
        t = np.asarray(t, np.float64)
        unfit = np.flatnonzero(t == -np.inf)
        if unfit.size:
            not_fitted[name] = (f"too few calibration images: {num_calibration} in all, fewer than "
                                f"{conformal_min_calibration(conformal_alpha)} predicted as class "
                                f"{', '.join(map(str, unfit))}")
        else:
            fitted[name] = t
    return fitted, not_fitted


def reject(class_ll: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean ``[N]``: True where max_y log p(x|y) < delta_{argmax_y} (the input is rejected)."""
    return np.asarray(ops.rejected(class_ll, thresholds))


def rejection_metrics(class_ll: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> dict:
    """accuracy (no rejection), acc_left (accuracy on accepted inputs), rejection_rate."""
    class_ll, labels = np.asarray(class_ll), np.asarray(labels)
    correct = class_ll.argmax(1) == labels
    rejected = reject(class_ll, thresholds)
    accepted = ~rejected
    return dict(accuracy=float(correct.mean()),
                acc_left=float(correct[accepted].mean()) if accepted.any() else float("nan"),
                rejection_rate=float(rejected.mean()))


def class_detection_rates(class_ll: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Paper 000 Tab. 6: per class c, the fraction of (OOD) inputs with log p(x|c) < delta_c."""
    return (np.asarray(class_ll) < np.asarray(thresholds)[None]).mean(0)
