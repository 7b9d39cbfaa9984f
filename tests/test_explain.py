"""Paper 002 §4.3's explanations: App. B's closed form against Monte Carlo and against eq. 31 as
printed, the heatmap decomposition identity, the decision-space coordinates."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import gcj
from conftest import ROOT
from gcj import data, explain
from gcj.evaluate import evaluate, format_tables


@pytest.mark.parametrize("delta_mu", [0.5, 1.0, 2.0, 4.0])
def test_expected_confidence_matches_monte_carlo_and_eq_31(delta_mu):
    """z from ½N(μ1, I) + ½N(μ2, I) in 3 dimensions: the mean top-class posterior of 400,000 draws
    (standard error < 0.0005) and eq. 33 integrated as printed (eq. 31's ρ(c) over c in (½, 1))."""
    rng = np.random.default_rng(0)
    n, mu = 400_000, np.array([[0.0, 0.0, 0.0], [delta_mu, 0.0, 0.0]])
    z = mu[rng.integers(0, 2, n)] + rng.normal(size=(n, 3))
    log_odds = -0.5 * np.sum((z - mu[0]) ** 2, 1) + 0.5 * np.sum((z - mu[1]) ** 2, 1)
    monte_carlo = np.mean(1.0 / (1.0 + np.exp(-np.abs(log_odds))))
    closed = float(explain.expected_confidence(delta_mu))
    assert closed == pytest.approx(monte_carlo, abs=0.002)

    def rho(c):
        return (c - c * c) ** -1.5 * np.exp(-np.log(1.0 / c - 1.0) ** 2 / (2 * delta_mu ** 2))
    num = integrate.quad(lambda c: c * rho(c), 0.5, 1.0, limit=200)[0]
    den = integrate.quad(rho, 0.5, 1.0, limit=200)[0]
    assert closed == pytest.approx(num / den, abs=1e-4)


def test_expected_confidence_limits_and_transformations():
    c = explain.expected_confidence(jnp.array([0.0, 1.0, 3.0, 30.0]))
    assert float(c[0]) == pytest.approx(0.5, abs=1e-7) and float(c[-1]) == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(np.asarray(c)) > 0)
    g = jax.grad(lambda d: explain.expected_confidence(d))(2.0)  # d C̄ / dΔμ > 0
    assert np.isfinite(g) and g > 0
    v = jax.vmap(explain.expected_confidence)(jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(v, jax.jit(explain.expected_confidence)(jnp.array([1.0, 3.0])), atol=1e-6)


def test_expected_pairwise_posterior_is_the_bayes_error_without_cancellation():
    """1 - C̄ = Φ(-Δμ/2): at Δμ = 10 it is 2.87e-7 to float32 precision (1 - C̄ computed as a
    difference would be 0 or 1.2e-7 there)."""
    means = jnp.array([[0.0, 0.0], [10.0, 0.0], [0.0, 2.0]])
    p = np.asarray(explain.expected_pairwise_posterior(means))
    assert p[0, 1] == pytest.approx(2.866515718791939e-07, rel=1e-4)
    assert p[0, 2] == pytest.approx(0.15865525393145707, rel=1e-5) and np.all(np.diag(p) == 0.5)
    np.testing.assert_allclose(p, p.T)


def test_along_line_offset_and_spread():
    """Latents drawn from N(μ_y, I): offset 1 and spread 1 for every pair; class 0 drawn at
    μ_0 + 0.5 (μ_0 - μ_1) along the line and with sd 2 there: offset 2 (twice as far from the midpoint), spread 2 for (0, 1)."""
    rng = np.random.default_rng(2)
    means = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    labels = np.repeat(np.arange(3), 40_000)
    z = means[labels] + rng.normal(size=(len(labels), 3))
    r = explain.along_line(z, labels, means, 3)
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(r["offset"][off], 1.0, atol=0.02)
    np.testing.assert_allclose(r["spread"][off], 1.0, atol=0.02)
    assert np.all(np.isnan(r["offset"][np.eye(3, dtype=bool)]))
    z0 = z[labels == 0]
    z[labels == 0] = np.c_[-1.0 + 2.0 * z0[:, :1], z0[:, 1:]]
    r = explain.along_line(z, labels, means, 3)
    assert r["offset"][0, 1] == pytest.approx(2.0, abs=0.03) and r["spread"][0, 1] == pytest.approx(2.0, abs=0.03)
    assert r["offset"][1, 0] == pytest.approx(1.0, abs=0.02)


def test_empirical_pairwise_posterior_of_mixture_samples_matches_the_expected_one():
    rng = np.random.default_rng(1)
    means = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0], [0.0, 3.0, 1.0, 0.0]])
    labels = np.repeat(np.arange(3), 50_000)
    z = means[labels] + rng.normal(size=(len(labels), 4))
    ll = -0.5 * np.sum((z[:, None] - means[None]) ** 2, -1)
    empirical = explain.empirical_pairwise_posterior(ll, labels, 3)
    np.testing.assert_allclose(empirical, explain.expected_pairwise_posterior(means), atol=0.003)
    assert np.all(np.isnan(explain.empirical_pairwise_posterior(ll[:10], labels[:10], 3)[0, 1:]))


def _log_posterior(z, means):
    return jax.nn.log_softmax(-0.5 * jnp.sum((z[:, None] - means[None]) ** 2, -1), 1)


def test_heatmaps_sum_to_the_log_posterior():
    """Eq. 21: Σ_kl Q(k, l, y) = log q(y|x), here for a 3x2 grid of 4 channels and 5 classes."""
    kz, km = jax.random.split(jax.random.key(0))
    z, means = jax.random.normal(kz, (6, 24)) * 2, jax.random.normal(km, (5, 24)) * 2
    q = jax.jit(explain.posterior_heatmaps, static_argnums=2)(z, means, (3, 2, 4))
    assert q.shape == (6, 3, 2, 5)
    np.testing.assert_allclose(q.sum((1, 2)), _log_posterior(z, means), atol=1e-4)
    # the contrast weights move mass between positions, never between classes
    q_flat = explain.posterior_heatmaps(z, means, (3, 2, 4), floor=1e6)
    np.testing.assert_allclose(q_flat.sum((1, 2)), q.sum((1, 2)), atol=1e-4)
    assert not np.allclose(q_flat, q, atol=1e-2)


def test_heatmaps_of_the_committed_ib_inn_decompose_its_posterior():
    clf = gcj.load(os.path.join(ROOT, "pretrained", "ibinn_digits_beta1"))
    x = data.load_dataset(clf.config.data, "test").images[:8] / 255.0
    z, means = clf.latent(x)
    q = explain.posterior_heatmaps(z, means, clf.latent_space.grid)
    np.testing.assert_allclose(q.sum((1, 2)), clf.log_posterior(x), atol=2e-3)
    with pytest.raises(ValueError, match="no latent space"):
        gcj.load(os.path.join(ROOT, "pretrained", "glow_digits_base")).latent(x)


def test_decision_space_coordinates():
    means = 4.0 * np.eye(6)[:5]  # five classes, pairwise distance 4 sqrt 2
    z = 0.5 * (means[2] + means[4]) + np.array([0, 0, 0.1, 0, 0, 3.0])  # nearer 2, off the span
    r = explain.decision_space(z, means, top=3)
    assert r["classes"][:2] == [2, 4]
    d = 4.0 * np.sqrt(2.0)
    np.testing.assert_allclose(r["means"][0], (-d / 2, 0.0), atol=1e-9)
    np.testing.assert_allclose(r["means"][1], (d / 2, 0.0), atol=1e-9)
    assert r["point"][0] == pytest.approx(-0.1 / np.sqrt(2.0))
    assert r["off_plane"] == pytest.approx(3.0, abs=0.05)


def test_the_explain_suite_through_evaluate(tmp_path):
    """On the committed digits IB-INN with digits as their own out-set: the report holds Fig. 8's
    matrices (App. B's expected posterior from the class means), Fig. 6's four picked inputs in
    the rules' order, the heatmap identity's error; the three PNGs are written; a family without
    the latent is refused by name."""
    out = tmp_path / "report" / "report.json"
    r = evaluate(os.path.join(ROOT, "pretrained", "ibinn_digits_beta1"), ("explain",), out=str(out),
                 ood_datasets=("digits",), ood_split="test", max_images=40, log=lambda *_: None)
    b = r["explain"]
    s = b["similarity"]
    np.testing.assert_allclose(s["expected"], explain.expected_pairwise_posterior(
        gcj.load(os.path.join(ROOT, "pretrained", "ibinn_digits_beta1")).latent(np.zeros((1, 8, 8, 1)))[1]),
        atol=1e-3)
    assert s["pairs"] == 45 and -1 <= s["pearson"] <= 1
    assert [e["kind"] for e in b["decision_space"]] == ["confident", "ambiguous", "uncertain_distinct", "ood"]
    confident, ambiguous = b["decision_space"][:2]
    assert confident["posterior_top2"][0] >= 0.99 > ambiguous["posterior_top2"][0]
    assert confident["point"][0] < 0  # nearer its top class (the left mean)
    assert b["heatmap_sum_max_error"] < 1e-2 and b["grid"] == [2, 2, 16]
    assert "expected vs measured pairwise posterior over 45 pairs" in format_tables(r)
    assert 0.1 < b["plane"]["accuracy"] <= 1 and b["plane"]["train_images"] == 40
    for png in ("decision_space", "class_similarity", "heatmaps", "decision_plane"):
        assert (tmp_path / "report" / f"{png}.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no latent space"):
        evaluate(os.path.join(ROOT, "pretrained", "glow_digits_base"), ("explain",), log=lambda *_: None)


def test_receptive_field_of_a_known_linear_map():
    """A 3x3 convolution of ones over 2 channels into 4 features: the centre column's gradient is
    the kernel's footprint, 4 features x 2 channels = 8 at each of the 3x3 pixels round the
    centre, 0 elsewhere, whatever the images."""
    kernel = jnp.ones((3, 3, 2, 4))

    def conv(x):
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = jax.random.uniform(jax.random.key(0), (3, 7, 7, 2))
    s = explain.effective_receptive_field(conv, x)
    expected = np.zeros((7, 7))
    expected[2:5, 2:5] = 8.0
    np.testing.assert_allclose(s, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["ibinn_digits_beta1", "disc_fashion_mnist"])
def test_committed_models_expose_their_features(name):
    clf = gcj.load(os.path.join(ROOT, "pretrained", name))
    if name.startswith("disc") and not os.path.isdir(data.FASHION_MNIST_DIR):
        pytest.skip("apt-get install dataset-fashion-mnist")
    x = data.load_dataset(clf.config.data, "test").images[:2] / 255.0
    f = clf.features(x)
    assert f.ndim == 4 and f.shape[0] == 2 and np.all(np.isfinite(f))
    s = explain.effective_receptive_field(lambda v: clf.features(v), x)
    assert s.shape == x.shape[1:3] and float(s.max()) > 0


def test_fit_plane_finds_the_plane_the_classes_live_in():
    """Five unit-Gaussian classes whose means lie in a plane of a 12-dimensional latent (plus an
    offset): the fitted plane is that plane (principal angles ~0), its 2-D nearest-mean decision
    classifies held-out draws as well as the true means do, and the fit lowered its loss."""
    rng = np.random.default_rng(0)
    true_basis, _ = np.linalg.qr(rng.normal(size=(12, 2)))
    centres = 4.0 * np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], np.float64)
    means = 3.0 + centres @ true_basis.T

    def draw(n):
        labels = rng.integers(0, 5, n)
        return means[labels] + rng.normal(size=(n, 12)), labels
    z, labels = draw(3000)
    fit = jax.jit(explain.fit_plane, static_argnums=2)(z, labels, 5)
    assert float(fit["loss"]) < float(fit["first_loss"])
    cosines = np.linalg.svd(true_basis.T @ np.asarray(fit["basis"]), compute_uv=False)
    assert np.all(cosines > 0.98), cosines
    z_test, y_test = draw(2000)
    accuracy = np.mean(np.asarray(explain.plane_predict(z_test, fit)) == y_test)
    best = np.mean(np.argmin(((z_test[:, None] - means[None]) ** 2).sum(-1), 1) == y_test)
    assert accuracy > best - 0.02, (accuracy, best)
    np.testing.assert_allclose(np.asarray(fit["basis"]).T @ np.asarray(fit["basis"]), np.eye(2), atol=1e-5)
