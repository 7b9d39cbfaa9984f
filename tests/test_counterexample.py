"""Paper 001's analytic counter-example: exact densities and samplers, the KL divergences of App. D,
and the attack that moves half of the points by at most Δ into a confident, more likely mistake."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_module
from gcj import counterexample as ce


@pytest.mark.parametrize("d", [2, 3])
def test_densities_integrate_to_one(d):
    """Monte Carlo over the cube [-3, 3]^d: each U(a, b) and each class-conditional integrates to 1."""
    x = jax.random.uniform(jax.random.key(d), (400_000, d), minval=-3.0, maxval=3.0)
    volume = 6.0 ** d
    r = jnp.linalg.norm(x, axis=1)
    for a, b in ((0.0, 1.0), (1.0, 1.5), (2.0, 2.9)):
        mass = volume * float(jnp.mean(jnp.exp(ce.annulus_log_density(r, a, b, d))))
        assert mass == pytest.approx(1.0, abs=0.03)
    model = ce.CounterExample(d, 0.5, 0.3, 0.2)
    for ll in (model.log_p(x), model.log_q(x)):  # class 0 (class 1 reaches radius 3, past the cube)
        assert volume * float(jnp.mean(jnp.exp(ll[:, 0]))) == pytest.approx(1.0, abs=0.03)
    assert ce.log_ball_volume(2) == pytest.approx(math.log(math.pi))
    assert ce.log_ball_volume(3) == pytest.approx(math.log(4 / 3 * math.pi))


def test_sampler_has_the_annulus_radial_law():
    """r^d is uniform on [a^d, b^d]: its empirical quantiles match, and every draw is inside."""
    d, a, b = 10, 1.0, 1.2
    x = ce.sample_annulus(jax.random.key(0), 20_000, a, b, d)
    r = np.asarray(jnp.linalg.norm(x, axis=1))
    assert r.min() >= a * (1 - 1e-5) and r.max() <= b * (1 + 1e-5)
    u = (r ** d - a ** d) / (b ** d - a ** d)
    np.testing.assert_allclose(np.quantile(u, [0.1, 0.5, 0.9]), [0.1, 0.5, 0.9], atol=0.02)
    directions = x / r[:, None]
    np.testing.assert_allclose(np.asarray(directions.mean(0)), 0.0, atol=0.03)


def test_kl_closed_form_matches_monte_carlo_and_is_small():
    model = ce.CounterExample.from_proposition(100, delta=0.1, eps=0.1, conf=0.1)
    kl = model.kl()
    assert 0 < kl["kl_pq"] < 0.1 and 0 < kl["kl_qp"] < 0.1
    mc = ce.monte_carlo_kl(model, jax.random.key(1), 200_000)
    assert mc["kl_pq"] == pytest.approx(kl["kl_pq"], rel=0.2)
    for d in (400, 800):  # no cancellation however small λ1 and (1 + Δ)^-d get
        far = ce.CounterExample.from_proposition(d, delta=0.1, eps=0.1, conf=0.1).kl()
        assert 0 < far["kl_qp"] < far["kl_pq"] < kl["kl_pq"]
    with pytest.raises(ValueError, match="take d larger"):
        ce.CounterExample.from_proposition(10, delta=0.1, eps=0.1, conf=0.1)


def test_half_of_the_points_are_attacked_within_delta_undetected():
    model = ce.CounterExample.from_proposition(200, delta=0.1, eps=0.1, conf=0.1)
    x, y = model.sample(jax.random.key(2), 20_000)
    assert model.log_q(x).shape == (20_000, 2)  # the contract: [batch, classes]
    r = ce.attack_report(model.log_q, x, y, delta=0.1)
    assert r["accuracy"] > 0.99
    assert r["fraction_attacked"] == pytest.approx(0.5, abs=0.02)  # class 0's shell: (1 - λ1)/2
    assert r["fraction_undetected"] == r["fraction_attacked"]
    assert r["max_distance"] <= 0.1 + 1e-5 and r["wrong_confidence"] > 0.9
    dist = jnp.linalg.norm(ce.radial_attack(x) - x, axis=1)
    shell0 = (y == 0) & (jnp.linalg.norm(x, axis=1) > 1)
    assert float(dist[shell0].max()) <= 0.1 + 1e-5


def test_the_learned_flows_of_the_bench_script_train_and_are_attacked_within_delta():
    """bench/counterexample.py's learned half (the README's "does a learned model share the
    weakness?"), shortened: one gcj coupling flow per class trained on draws of p in d = 100; the
    NLL falls and the flows classify (the README's 600 steps reach 99.9%); the attack report is
    computed on them as on the analytic q."""
    bench = load_module("bench/counterexample.py")
    model = ce.CounterExample.from_proposition(100, 0.1, 0.1, 0.1)
    log_q, nll = bench.train_flows(model, jax.random.key(0), steps=5, batch=128, width=32)
    assert all(last < first for first, last in nll), nll  # per class
    x, y = model.sample(jax.random.key(1), 1000)
    assert log_q(x).shape == (1000, 2)
    r = ce.attack_report(log_q, x, y, model.delta)
    assert r["accuracy"] > 0.9 and 0 <= r["fraction_undetected"] <= r["fraction_attacked"] <= 0.5
