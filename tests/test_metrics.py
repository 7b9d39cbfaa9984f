"""Rejection thresholds, OOD metrics and calibration against numpy / scikit-learn / hand cases."""
import numpy as np
import pytest
from sklearn import metrics as skm

from gcj import metrics, rejection


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    s_in = np.round(rng.normal(1.0, 1.0, 300), 1)  # rounding makes ties
    s_out = np.round(rng.normal(0.0, 1.0, 200), 1)
    y = np.r_[np.ones(300), np.zeros(200)]
    return s_in, s_out, y, np.r_[s_in, s_out]


def test_auroc_aupr_match_sklearn(scores):
    s_in, s_out, y, s = scores
    assert metrics.auroc(s_in, s_out) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert metrics.aupr(s_in, s_out) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_fpr95_matches_sklearn_roc_curve(scores):
    s_in, s_out, y, s = scores
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    assert metrics.fpr_at_tpr(s_in, s_out, 0.95) == pytest.approx(fpr[np.argmax(tpr >= 0.95)])


def test_perfect_and_reversed_separation():
    assert metrics.auroc([2, 3], [0, 1]) == 1.0
    assert metrics.auroc([0, 1], [2, 3]) == 0.0
    assert metrics.fpr_at_tpr([2, 3], [0, 1]) == 0.0


def test_ood_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        metrics.auroc([1.0, np.nan], [0.0])


def test_ece_constructed_case():
    # 4 predictions at confidence 0.9 (bin 14), 3 right -> |0.75-0.9|; 2 at 0.6 (bin 9), 2 right -> 0.4.
    probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    labels = np.array([0, 0, 0, 1, 0, 0])
    m = metrics.calibration_metrics(probs, labels)
    assert m["ece"] == pytest.approx((4 * 0.15 + 2 * 0.4) / 6)
    assert m["mce"] == pytest.approx(0.4)
    ent = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1)) * 4 - (0.6 * np.log(0.6) + 0.4 * np.log(0.4)) * 2
    assert m["entropy"] == pytest.approx(ent / 6)


def test_oce_counts_confident_errors():
    probs = np.array([[0.999, 0.001]] * 9 + [[0.001, 0.999]] + [[0.6, 0.4]] * 5)
    labels = np.array([0] * 9 + [0] + [1] * 5)
    m = metrics.calibration_metrics(probs, labels)
    assert m["oce"] == pytest.approx((1 / 10) / 0.003)  # 1 wrong of the 10 confident ones
    assert m["oce_fraction"] == pytest.approx(10 / 15)


def test_two_tailed_quantile_and_typicality_scores():
    train = np.arange(100.0)
    s = metrics.two_tailed_quantile_score(train, np.array([-5.0, 0.0, 49.5, 99.0, 200.0]))
    np.testing.assert_allclose(s, [0.0, 0.0, 0.5, 0.0, 0.0])
    t = metrics.typicality_score(train, np.array([49.5, 60.0, 39.0]))
    np.testing.assert_allclose(t, [0.0, -10.5, -10.5])


def test_tests_auroc_against_the_training_images_or_a_given_reference():
    """Paper 002 Tabs. 7-9 score altered images against the training images: a shift of 3
    standard deviations down gives the one-tailed AUROC Phi(3 / sqrt 2) = 0.983; against a
    reference drawn like the training images it is the same up to sampling; against the altered
    images themselves it is 0.5 (ties)."""
    rng = np.random.default_rng(0)
    train, ref, out = rng.normal(0, 1, 4000), rng.normal(0, 1, 4000), rng.normal(-3, 1, 4000)
    a = metrics.tests_auroc(train, out)
    assert set(a) == set(metrics.TESTS) and a["one_tailed"] == pytest.approx(0.983, abs=0.005)
    assert metrics.tests_auroc(train, out, ref)["one_tailed"] == pytest.approx(0.983, abs=0.005)
    assert metrics.tests_auroc(train, out, out)["one_tailed"] == pytest.approx(0.5)
    assert a["typicality"] > 0.9 and a["two_tailed"] > 0.9  # a shift either way is atypical
    shift = metrics.log_q_shift(np.array([0.0, 2.0]), np.array([0.0, 1.0, 2.0]), np.array([-1.0, 1.0, 1.0]))
    assert shift == pytest.approx(dict(mean_shift_train_sd=-2 / 3, fraction_fell=2 / 3))


def test_percentile_thresholds_match_numpy():
    rng = np.random.default_rng(1)
    ll = rng.normal(size=(500, 4)) * 3
    labels = rng.integers(0, 4, 500)
    ll[np.arange(500), labels] += 4  # mostly correct
    got = rejection.percentile_thresholds(ll, labels, 1.0)
    correct = ll.argmax(1) == labels
    for c in range(4):
        assert got[c] == pytest.approx(np.percentile(ll[correct & (labels == c), c], 1.0))


def test_reject_and_rejection_metrics():
    ll = np.array([[0.0, -1.0], [-5.0, -3.0], [-9.0, -8.0]])
    labels = np.array([0, 0, 1])
    thr = np.array([-1.0, -4.0])
    np.testing.assert_array_equal(rejection.reject(ll, thr), [False, False, True])
    m = rejection.rejection_metrics(ll, labels, thr)
    assert m == dict(accuracy=pytest.approx(2 / 3), acc_left=0.5, rejection_rate=pytest.approx(1 / 3))
    np.testing.assert_allclose(rejection.class_detection_rates(ll, thr), [2 / 3, 1 / 3])


def test_conformal_false_rejection_rate_is_at_most_alpha():
    """Split conformal: over many calibration/test draws the in-distribution rejection rate <= alpha."""
    alpha, c, rates = 0.05, 3, []
    rng = np.random.default_rng(2)
    for _ in range(300):
        ll = rng.normal(size=(160, c)) + rng.standard_t(3, size=(160, 1))
        thr = rejection.conformal_thresholds(ll[:100], alpha)
        rates.append(rejection.reject(ll[100:], thr).mean())
    assert np.mean(rates) <= alpha + 0.005  # the guarantee holds in expectation
    assert np.mean(rates) >= alpha - 0.03   # and it is not trivially conservative


def test_conformal_needs_valid_alpha():
    with pytest.raises(ValueError, match="alpha"):
        rejection.conformal_thresholds(np.zeros((10, 2)), 1.5)


def test_a_conformal_threshold_needs_its_minimum_calibration_size():
    """conformal_min_calibration(alpha) is exactly the size at which a class's threshold becomes
    finite; split_fitted reports a set with any unfitted class as not fitted, with the reason."""
    rng = np.random.default_rng(0)
    for alpha in (0.01, 0.05, 0.1):
        need = rejection.conformal_min_calibration(alpha)
        for n, finite in ((need - 1, False), (need, True)):
            ll = rng.normal(size=(n, 2)) + np.array([5.0, 0.0])  # all predicted as class 0
            assert np.isfinite(rejection.conformal_thresholds(ll, alpha)[0]) == finite
    thr = {"p1": [0.0, 1.0], "conformal0.01": [-1.0, -np.inf]}
    fitted, not_fitted = rejection.split_fitted(thr, 0.01, 120)
    assert list(fitted) == ["p1"] and list(not_fitted) == ["conformal0.01"]
    assert not_fitted["conformal0.01"] == ("too few calibration images: 120 in all, fewer than 99 "
                                           "predicted as class 1")


def test_paper_002_ece_bins_every_class_probability():
    """Two bins: the 10 probabilities 0.2 (2 of them the true class: R = 0.2, centre 0.25) and the
    10 probabilities 0.8 (8 true: R = 0.8, centre 0.75)."""
    probs = np.array([[0.8, 0.2]] * 10)
    labels = np.array([0] * 8 + [1] * 2)
    m = metrics.calibration_all_classes(probs, labels, edges=[0.0, 0.5, 1.0], min_count=1)
    assert m["ece"] == pytest.approx(0.05) and m["mce"] == pytest.approx(0.05) and m["bins"] == 2
    # four bins: 0.2 (R = 0.2, centre 0.3) and 0.8 (R = 0.8, centre 0.7) count, the bins of the one
    # 0.95 and one 0.05 probability (an 11th image) hold fewer than min_count and are left out
    probs = np.array([[0.8, 0.2]] * 10 + [[0.95, 0.05]])
    labels = np.array([0] * 8 + [1] * 3)
    m = metrics.calibration_all_classes(probs, labels, edges=[0.0, 0.1, 0.5, 0.9, 1.0], min_count=10)
    assert m["bins"] == 2 and m["ece"] == pytest.approx(0.1) and m["mce"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no calibration bin"):
        metrics.calibration_all_classes(probs, labels, min_count=100)


def test_paper_002_bins_are_finer_near_0_and_1():
    e = metrics.ALL_CLASS_EDGES
    assert len(e) == 30 and e[0] == 0.0 and e[-1] == 1.0 and np.all(np.diff(e) > 0)
    assert np.sum(e < 0.05) == 7 and np.sum(e > 0.95) == 7
