"""MI bounds, Gaussian class conditionals and the margin loss on hand-made cases."""
import math

import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from gcj import losses


def _scores(pos, neg, b=6, m=3):
    eye = jnp.eye(b)[:, :, None]
    return jnp.broadcast_to(eye * pos + (1 - eye) * neg, (b, b, m))


@pytest.mark.parametrize("bound", ["dv", "infonce"])
def test_uninformative_critic_gives_zero(bound):
    np.testing.assert_allclose(losses.mi_lower_bound(_scores(0.7, 0.7), bound), 0.0, atol=1e-6)


def test_jsd_of_constant_critic_is_at_most_zero():
    np.testing.assert_allclose(losses.mi_lower_bound(_scores(0.0, 0.0), "jsd"), 0.0, atol=1e-6)
    # 2 log 2 - softplus(-u) - softplus(u) < 0 for u != 0: a constant critic never shows MI.
    assert np.all(np.asarray(losses.mi_lower_bound(_scores(0.7, 0.7), "jsd")) < -0.05)


def test_jsd_saturates_at_two_log_two():
    np.testing.assert_allclose(losses.mi_lower_bound(_scores(30.0, -30.0), "jsd"), 2 * math.log(2),
                               rtol=1e-6, atol=1e-5)


def test_infonce_is_bounded_by_log_batch():
    b = 6
    np.testing.assert_allclose(losses.mi_lower_bound(_scores(40.0, -40.0, b), "infonce"), math.log(b),
                               rtol=1e-6, atol=1e-5)


def test_dv_hand_computed():
    # pos = 2 everywhere; negatives alternate 0 and log 3 -> E_neg[e^u] = 2 -> DV = 2 - log 2.
    b, m = 4, 2
    neg = jnp.where((jnp.arange(b)[:, None] + jnp.arange(b)[None]) % 2 == 0, 0.0, math.log(3.0))
    s = jnp.broadcast_to(jnp.where(jnp.eye(b, dtype=bool), 2.0, neg)[:, :, None], (b, b, m))
    # 12 negatives: those with i+j odd are 8 (log 3), even off-diagonal 4 (0): mean e^u = (8*3+4)/12.
    expected = 2.0 - math.log((8 * 3 + 4) / 12)
    np.testing.assert_allclose(losses.mi_lower_bound(s, "dv"), expected, rtol=1e-6, atol=1e-5)


def test_jsd_uses_only_off_diagonal_negatives():
    s = np.zeros((3, 3, 1), np.float32)
    s[0, 0, 0] = 5.0  # a positive: must not enter the negative term
    val = float(losses.mi_lower_bound(jnp.asarray(s), "jsd")[0])
    expected = (math.log(2) - math.log1p(math.exp(-5.0))) / 3  # pos term; negatives all u=0 -> 0
    assert val == pytest.approx(expected, rel=1e-5)


def test_mi_bound_rejects_bad_shapes_and_names():
    with pytest.raises(ValueError, match=r"\[B, B, M\]"):
        losses.mi_lower_bound(jnp.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match="unknown MI bound"):
        losses.mi_lower_bound(jnp.zeros((3, 3, 2)), "kl")


def test_gaussian_matches_closed_form():
    rng = np.random.default_rng(0)
    z, mean, log_std = rng.normal(size=(5, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4)) * 0.3
    got = losses.diag_gaussian_log_prob(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_std))
    for c in range(3):
        cov = np.diag(np.exp(2 * log_std[c]))
        diff = z - mean[c]
        ref = -0.5 * (np.einsum("bi,ij,bj->b", diff, np.linalg.inv(cov), diff)
                      + np.log(np.linalg.det(2 * np.pi * cov)))
        np.testing.assert_allclose(got[:, c], ref, rtol=1e-5)


def test_gaussian_gradients():
    rng = np.random.default_rng(1)
    args = [jnp.asarray(rng.normal(size=s)) for s in [(2, 3), (4, 3), (4, 3)]]
    check_grads(losses.diag_gaussian_log_prob, args, order=2, modes=["rev"], rtol=2e-2)


def test_margin_loss_hand_case():
    ll = jnp.array([[0.0, -2.0, -10.0], [1.0, 3.0, 0.0]])
    labels = jnp.array([0, 1])
    # ex 0 (y=0, K=5): gaps max(-2+5-0,0)^2=9, max(-10+5,0)^2=0 -> 4.5; ex 1 (y=1): (1+5-3)^2=9, (0+5-3)^2=4 -> 6.5
    np.testing.assert_allclose(losses.margin_loss(ll, labels, 5.0), [4.5, 6.5])
    np.testing.assert_allclose(losses.nll_loss(ll, labels), [0.0, -3.0])
