"""APGD (Croce & Hein 2020) against its paper's definition, the DLR loss, Expectation over
Transformation, the Square attack's budget and the per-image worst case over attacks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcj import attacks
from gcj.suites import adversarial
from test_attacks import MU, C, boundary_distances, gauss, l2


@pytest.fixture(scope="module")
def data():
    noise = 0.03 * jax.random.normal(jax.random.key(1), (C, 4, 16))
    x = jnp.clip(jnp.asarray(MU)[:, None] + noise, 0, 1).reshape(-1, 4, 4, 1)
    return x, jnp.repeat(jnp.arange(C), 4)


def paper_checkpoints(n):
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({int(np.ceil(round(q * n, 6))) for q in p[1:]})


def test_apgd_checkpoints_are_the_papers():
    assert attacks.apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]  # the paper's list
    for n in (10, 37, 250):
        assert attacks.apgd_checkpoints(n) == paper_checkpoints(n)


def reference_apgd(x, c, eps, steps, alpha=0.75, rho=0.75):
    """Alg. 1 of Croce & Hein (2020) for f(v) = -||v - c||^2 in float64, L∞, from x (no random start);
    the checks after w_j steps as gcj documents. Returns the step size after every step and f_max."""
    f = lambda v: -np.sum((v - c) ** 2)  # noqa: E731
    proj = lambda v: np.clip(x + np.clip(v - x, -eps, eps), 0, 1)  # noqa: E731
    ckpts = set(paper_checkpoints(steps))
    eta, xk, xprev, fk = 2 * eps, x, x, f(x)
    xmax, fmax, count, fmax_last, reduced_last, last, etas = x, fk, 0, fk, False, 0, []
    for k in range(steps):
        z = proj(xk + eta * np.sign(-2 * (xk - c)))
        a = 1.0 if k == 0 else alpha
        xn = proj(xk + a * (z - xk) + (1 - a) * (xk - xprev))
        fn = f(xn)
        count += fn > fk
        xprev, xk, fk = xk, xn, fn
        if fn > fmax:
            xmax, fmax = xn, fn
        if k + 1 in ckpts:
            reduce = count < rho * (k + 1 - last) or (not reduced_last and fmax <= fmax_last)
            if reduce:
                eta, xk, xprev, fk = eta / 2, xmax, xmax, fmax
            count, fmax_last, reduced_last, last = 0, fmax, reduce, k + 1
        etas.append(eta)
    return np.asarray(etas), fmax


def test_apgd_step_size_schedule_is_the_papers_on_a_quadratic():
    # class 1's log-likelihood -||x - c||^2 against class 0's 0: the margin loss is the quadratic
    c = np.asarray([[0.537, 0.4411, 0.362, 0.5613], [0.3, 0.3, 0.7, 0.7], [0.52, 0.49, 0.5, 0.51],
                    [0.5871, 0.4123, 0.6, 0.45]]).reshape(4, 2, 2, 1)

    def fn(v, key):
        q = -jnp.sum((v - c) ** 2, axis=(1, 2, 3))
        return jnp.stack([jnp.zeros_like(q), q], 1)

    x = jnp.full((4, 2, 2, 1), 0.5)
    y = jnp.zeros(4, jnp.int32)
    eps, steps = 0.1, 100
    r, etas = attacks._apgd_call(fn, x, y, None, jax.random.key(0), eps, "linf", steps, "margin", 1, 1, False,
                                 None, 0.75, 0.75, hit_target=False)
    reduced = 0
    for b in range(4):
        ref_etas, ref_fmax = reference_apgd(np.full((2, 2, 1), 0.5), c[b], eps, steps)
        np.testing.assert_allclose(etas[0, :, b], ref_etas, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(-np.sum((np.asarray(r.x[b]) - c[b]) ** 2), ref_fmax, atol=1e-6)
        reduced += len(set(ref_etas))
    assert reduced > 8  # the schedule halved the step at some checkpoints and not at others
    assert not np.any(np.asarray(r.success))


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_stays_in_the_ball_and_succeeds_exactly_beyond_the_boundary(data, norm, loss):
    x, y = data
    d = boundary_distances(x, y)
    d_next = d[np.arange(len(d)), np.asarray(gauss(x)).argsort(1)[:, -2]]
    for scale, expect in [(0.9, False), (1.15, True)]:
        eps = (float(scale * d_next.max()) if expect else float(scale * d.min())) if norm == "l2" else 0.2 * scale
        r = attacks.apgd(gauss, x, y, jax.random.key(2), eps=eps, norm=norm, steps=50, loss=loss,
                         random_start=norm == "linf")
        dist = l2(r.x, x) if norm == "l2" else np.abs(np.asarray(r.x - x)).max(axis=(1, 2, 3))
        assert np.all(dist <= eps + 1e-4) and float(r.x.min()) >= 0 and float(r.x.max()) <= 1
        np.testing.assert_array_equal(r.success, np.asarray(gauss(r.x).argmax(1)) != np.asarray(y))
        if norm == "l2":
            assert bool(np.all(np.asarray(r.success))) == expect


def test_apgd_targeted_reaches_every_class_it_can(data):
    x, y = data
    r = attacks.apgd_targeted(gauss, x, y, jax.random.key(3), eps=1.0, norm="l2", steps=30, num_targets=2,
                              loss="margin")  # (targeted DLR needs 4 classes)
    assert np.all(np.asarray(r.success)) and np.all(np.asarray(gauss(r.x).argmax(1)) != np.asarray(y))
    t = (y + 1) % C
    r = attacks.apgd(gauss, x, y, jax.random.key(3), eps=1.0, norm="l2", steps=30, loss="margin", targets=t)
    np.testing.assert_array_equal(np.asarray(gauss(r.x).argmax(1)), np.asarray(t))
    with pytest.raises(ValueError, match="4 classes"):  # targeted DLR: z_pi3 and z_pi4
        attacks.apgd(gauss, x, y, jax.random.key(3), eps=1.0, loss="dlr", targets=t)
    with pytest.raises(ValueError, match="num_targets"):
        attacks.apgd_targeted(gauss, x, y, jax.random.key(3), eps=1.0, num_targets=C)


def test_dlr_on_hand_made_logits():
    z = jnp.asarray([[3.0, 1.0, 2.0, 0.0], [0.0, 5.0, 1.0, 2.0]])
    y = jnp.asarray([0, 2])
    # untargeted -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3)
    np.testing.assert_allclose(attacks.dlr(z, y), [-(3 - 2) / (3 - 1), -(1 - 5) / (5 - 1)], rtol=1e-6, atol=1e-6)
    # targeted to t: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    t = jnp.asarray([2, 1])
    np.testing.assert_allclose(attacks.dlr(z, y, t), [-(3 - 2) / (3 - 0.5), -(1 - 5) / (5 - 0.5)], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(attacks.dlr(1e3 * z - 7e4, y), attacks.dlr(z, y), rtol=1e-5)  # shift, scale
    np.testing.assert_allclose(attacks.attack_loss(z, t, "dlr", True, source=y), attacks.dlr(z, y, t), rtol=1e-6, atol=1e-6)


def noisy(x, key):
    """A stochastic log-likelihood: the Gaussians' of a randomly shifted image."""
    return gauss(x + 0.05 * jax.random.normal(key, x.shape))


def test_eot_gradient_is_the_mean_of_per_draw_gradients(data):
    x, y = data
    key = jax.random.key(4)
    g = attacks.loss_gradient(noisy, x, y, key, loss="ce", eot=4)
    per = [attacks.loss_gradient(noisy, x, y, k, loss="ce") for k in jax.random.split(key, 4)]
    scale = float(jnp.abs(jnp.stack(per)).max())
    np.testing.assert_allclose(g, jnp.mean(jnp.stack(per), 0), atol=1e-5 * scale)
    assert float(jnp.abs(per[0] - per[1]).max()) > 1e-3 * scale  # the draws differ
    np.testing.assert_array_equal(attacks.loss_gradient(noisy, x, y, key, loss="ce", eot=1),
                                  attacks.loss_gradient(noisy, x, y, key, loss="ce"))
    with pytest.raises(ValueError, match="eot"):
        attacks.loss_gradient(noisy, x, y, key, eot=0)
    # all draws at once (vmapped): the same draws, so the same gradient and the same attack
    np.testing.assert_allclose(attacks.loss_gradient(noisy, x, y, key, loss="ce", eot=4, eot_parallel=True), g,
                               atol=1e-5 * scale)
    kw = dict(eps=0.3, steps=3, eot=3)
    np.testing.assert_allclose(attacks.pgd(noisy, x, y, key, eot_parallel=True, **kw).x,
                               attacks.pgd(noisy, x, y, key, **kw).x, atol=1e-5)
    np.testing.assert_allclose(attacks.apgd(noisy, x, y, key, eot_parallel=True, **kw).x,
                               attacks.apgd(noisy, x, y, key, **kw).x, atol=1e-5)


def test_success_under_draws_and_is_stochastic(data):
    x, y = data
    key = jax.random.key(5)
    assert not attacks.is_stochastic(gauss, x, key) and attacks.is_stochastic(noisy, x, key)
    x_adv = attacks.pgd(gauss, x, y, key, eps=0.3, steps=20).x
    frac = np.asarray(attacks.success_under_draws(gauss, x_adv, y, key, draws=3))
    np.testing.assert_array_equal(frac, np.asarray(attacks.is_success(gauss(x_adv), y)).astype(float))
    # an image at the boundary is adversarial under some draws of the noisy likelihood, not all
    mid = 0.5 * (x[:1] + x[4:5])
    frac = float(attacks.success_under_draws(noisy, mid, y[:1], key, draws=200)[0])
    assert 0.05 < frac < 0.95


def test_square_keeps_its_query_budget_and_its_ball(data):
    x, y = data
    d = boundary_distances(x, y)
    small = float(d.min()) / 5  # an L∞ ball of this radius holds no point beyond any boundary
    r = attacks.square(gauss, x, y, jax.random.key(6), eps=small, queries=50)
    assert not np.any(np.asarray(r.success)) and np.all(np.asarray(r.queries) == 50)
    r = attacks.square(gauss, x, y, jax.random.key(6), eps=0.3, queries=300)
    q, s = np.asarray(r.queries), np.asarray(r.success)
    assert s.mean() > 0.5 and np.all(q <= 300) and np.all(q[s] < 300) and np.all(q[~s] == 300)
    assert float(jnp.abs(r.x - x).max()) <= 0.3 + 1e-6
    np.testing.assert_array_equal(s, np.asarray(gauss(r.x).argmax(1)) != np.asarray(y))
    p = [float(attacks.square_p(0.8, i, 10000)) for i in (1, 10, 11, 50, 51, 8001)]
    np.testing.assert_allclose(p, [0.8, 0.8, 0.4, 0.4, 0.2, 0.8 / 512], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(float(attacks.square_p(0.8, 2, 1000)), 0.4, rtol=1e-6, atol=1e-9)  # scaled to the budget


def test_worst_case_of_known_outcomes():
    f, t = False, True
    outcomes = {  # 4 attacked images; "bb" ran on the first 2 only
        "a": dict(misclassified=np.array([t, t, f, f]), rejected={"p1": np.array([t, f, f, f])},
                  linf=np.array([0.01, 0.01, 0.0, 0.0]), l2=np.array([0.2, 0.2, 0.0, 0.0])),
        "b": dict(misclassified=np.array([f, t, t, f]), rejected={"p1": np.array([f, t, t, f])},
                  linf=np.array([0.0, 0.5, 0.01, 0.0]), l2=np.array([0.0, 3.0, 0.1, 0.0])),
        "bb": dict(misclassified=np.array([t, f]), rejected={"p1": np.array([f, f])},
                   linf=np.array([0.2, 0.0]), l2=np.array([0.4, 0.0])),
    }
    w = adversarial.worst_case(outcomes, [("linf", 0.03), ("l2", 0.5)], ["p1"], 4, clean_accuracy=0.9)
    linf, l2_ = w["linf 7.65/255"], w["l2 0.5"]
    # L∞ 0.03: a breaks 0 (rejected) and 1 (accepted), b breaks 2 (rejected); bb's 0.2 is outside
    assert linf["robust_accuracy"] == 0.25 and linf["robust_or_rejected"]["p1"] == 0.75
    assert linf["test_robust_accuracy"] == pytest.approx(0.225)
    assert linf["only_by"] == {"a": 2, "b": 1}
    # L2 0.5: a breaks 0, 1; b breaks 2; bb breaks 0 (accepted): image 0 sneaks through by bb
    assert l2_["robust_accuracy"] == 0.25 and l2_["robust_or_rejected"]["p1"] == 0.5
    assert l2_["only_by"] == {"a": 1, "b": 1}


def test_ensembles_name_attacks_that_exist():
    names = [s.name for s in adversarial.default_attacks()]
    members = adversarial.expand(("autoattack", "pgd_linf_8_margin", "apgd_ce_linf_8"))
    assert members[-1] == "pgd_linf_8_margin" and len(set(members)) == len(members)
    assert set(members) <= set(names) and len(names) == len(set(names))
    assert {adversarial.threat(s) for s in adversarial.default_attacks() if s.name in members} >= {
        ("linf", 8 / 255), ("l2", 0.5)}
