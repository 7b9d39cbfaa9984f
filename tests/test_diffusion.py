"""gcj.diffusion against closed forms: SDE marginals, the importance-sampling density, and exact
log-densities of a Gaussian mixture whose VP marginals and score are analytic."""
import functools
import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcj.diffusion import (SubVPSDE, VPSDE, bits_per_dim, elbo, log_likelihood, make_adjoint, make_probes,
                           sample_importance_time)

SDES = [VPSDE(), SubVPSDE()]


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


# ------------------------------------------------------------------------------ SDEs

@pytest.mark.parametrize("sde", SDES, ids=["vp", "subvp"])
def test_marginals_match_closed_forms(sde):
    t = np.array([1e-7, 1e-5, 1e-3, 0.1, 0.5, 1.0])
    b = 0.1 * t + 0.5 * 19.9 * t ** 2                 # int_0^t beta, float64
    m = np.exp(-0.5 * b)
    std = np.sqrt(1 - np.exp(-b)) if type(sde) is VPSDE else 1 - np.exp(-b)
    np.testing.assert_allclose(sde.marginal_mean_coef(jnp.asarray(t, jnp.float32)), m, rtol=1e-6, atol=1e-5)
    # float32 with expm1 keeps full relative precision at tiny t (1 - exp would round to 0)
    np.testing.assert_allclose(sde.marginal_std(jnp.asarray(t, jnp.float32)), std, rtol=1e-5)
    x0 = jnp.ones((6, 2))
    mean, s = sde.marginal(x0, jnp.asarray(t, jnp.float32))
    np.testing.assert_allclose(mean, np.broadcast_to(m[:, None], (6, 2)), rtol=1e-6, atol=1e-5)
    # the drift is -beta/2 x for both; g^2 = beta (VP) or beta (1 - exp(-2B)) (sub-VP)
    beta = 0.1 + 19.9 * t
    np.testing.assert_allclose(sde.drift(x0, jnp.asarray(t, jnp.float32)),
                               -0.5 * beta[:, None] * np.ones((6, 2)), rtol=1e-6, atol=1e-5)
    g2 = beta if type(sde) is VPSDE else beta * (1 - np.exp(-2 * b))
    np.testing.assert_allclose(sde.diffusion_squared(jnp.asarray(t, jnp.float32)), g2, rtol=1e-5)


@pytest.mark.parametrize("sde", SDES, ids=["vp", "subvp"])
def test_variance_follows_the_sde(sde):
    """d Var/dt = -beta Var + g^2 for x_0 = 0 (the SDE's moment equation)."""
    var = lambda t: sde.marginal_std(t) ** 2  # noqa: E731
    for t in (0.05, 0.3, 0.9):
        lhs = jax.grad(var)(t)
        assert float(lhs) == pytest.approx(float(-sde.beta(t) * var(t) + sde.diffusion_squared(t)), abs=1e-5)


def test_prior_is_standard_normal():
    z = jax.random.normal(jax.random.key(0), (4, 3, 2))
    expected = np.sum(-0.5 * np.asarray(z).reshape(4, -1) ** 2 - 0.5 * math.log(2 * math.pi), 1)
    np.testing.assert_allclose(VPSDE().prior_log_prob(z), expected, rtol=1e-6, atol=1e-5)
    s = VPSDE().prior_sample(jax.random.key(1), (20000,))
    assert abs(float(s.mean())) < 0.03 and abs(float(s.std()) - 1) < 0.02


@pytest.mark.parametrize("sde", SDES, ids=["vp", "subvp"])
def test_importance_sampling_of_t(sde):
    eps = 1e-5
    # the cumulative weight's derivative is the density g^2 / std^2
    for t in (0.01, 0.2, 0.8):
        assert float(jax.grad(sde.cumulative_likelihood_weight)(t)) == pytest.approx(
            float(sde.diffusion_squared(t) / sde.marginal_std(t) ** 2), rel=1e-3)
    t = np.asarray(sample_importance_time(sde, jax.random.key(0), (20000,), eps))
    assert t.min() >= eps and t.max() <= 1.0
    # empirical CDF equals the normalized cumulative weight (Kolmogorov-Smirnov distance)
    w = lambda s: np.asarray(sde.cumulative_likelihood_weight(jnp.asarray(s)))  # noqa: E731
    grid = np.sort(t)
    cdf = (w(grid) - w(eps)) / (w(1.0) - w(eps))
    assert np.max(np.abs(cdf - np.arange(1, len(grid) + 1) / len(grid))) < 0.015


# ------------------------------------------------------------------------ likelihood

MUS = np.array([[2.0, -1.0], [-1.5, 1.0]])
STDS = np.array([0.5, 0.8])
LOGW = np.log([0.3, 0.7])


def mixture_log_prob(sde, x, t):
    """log p_t(x) of the mixture sum_k w_k N(mu_k, s_k^2 I) diffused by ``sde`` to time ``t`` [B]."""
    m = sde.marginal_mean_coef(t)[:, None, None]
    var = m ** 2 * STDS[None, :, None] ** 2 + sde.marginal_std(t)[:, None, None] ** 2
    lp = -0.5 * jnp.sum((x[:, None] - m * MUS[None]) ** 2 / var + jnp.log(2 * jnp.pi * var), -1)
    return jax.nn.logsumexp(lp + LOGW[None], -1)


def mixture_score(sde):
    return lambda x, t: jax.grad(lambda v: jnp.sum(mixture_log_prob(sde, v, t)))(x)


X = np.array([[1.0, 0.0], [2.0, -1.0], [-3.0, 2.0]])


@pytest.mark.parametrize("sde", SDES, ids=["vp", "subvp"])
def test_exact_score_gives_the_true_log_density(sde):
    res = jax.jit(lambda x: log_likelihood(mixture_score(sde), sde, x, divergence="exact"))(X)
    true = mixture_log_prob(sde, jnp.asarray(X), jnp.zeros(3))
    np.testing.assert_allclose(res.logp, true, atol=0.05)
    assert res.logp.shape == res.nfe.shape == (3,) and res.z.shape == X.shape
    np.testing.assert_allclose(res.logp, res.prior_logp + res.delta_logp, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_agrees_with_exact_within_its_standard_error(probe):
    sde = VPSDE()
    exact = log_likelihood(mixture_score(sde), sde, X, divergence="exact").logp
    res = log_likelihood(mixture_score(sde), sde, X, jax.random.key(0), num_probes=200, probe=probe)
    assert res.probe_logp.shape == (3, 200)
    se = np.std(res.probe_logp, axis=1, ddof=1) / np.sqrt(200)
    assert np.all(np.abs(res.logp - exact) < 4 * se + 1e-3), (res.logp - exact, se)
    assert np.all(se > 0)  # the probes really vary


@pytest.mark.slow
def test_gradient_through_the_ode_is_the_score_and_matches_finite_differences(x64):
    sde = VPSDE()
    x = jnp.asarray(X, jnp.float64)
    f = lambda v, tol=1e-5: log_likelihood(mixture_score(sde), sde, v, divergence="exact",  # noqa: E731
                                           rtol=tol, atol=tol).logp
    g = jax.grad(lambda v: jnp.sum(f(v)))(x)
    true_score = jax.grad(lambda v: jnp.sum(mixture_log_prob(sde, v, jnp.zeros(3))))(x)
    np.testing.assert_allclose(g, true_score, atol=0.02)
    # finite differences need a solve far more accurate than the step h (adaptive steps jump)
    f = functools.partial(f, tol=1e-10)
    g = jax.grad(lambda v: jnp.sum(f(v)))(x)
    h = 1e-4
    for i in range(2):
        e = jnp.zeros_like(x).at[:, i].set(h)
        fd = (f(x + e) - f(x - e)) / (2 * h)
        np.testing.assert_allclose(g[:, i], fd, rtol=1e-3, atol=1e-4)


def test_a_sample_does_not_depend_on_its_batch_and_any_shape_works():
    sde = VPSDE()
    score = lambda v, t: -v  # noqa: E731  (N(0, I) data: p_t = N(0, I) for VP)
    x = jax.random.normal(jax.random.key(0), (4, 2, 3))
    fn = jax.jit(lambda v: log_likelihood(score, sde, v, jax.random.key(1), num_probes=3).logp)
    full = fn(x)
    np.testing.assert_allclose(fn(x[1:2]), full[1:2], rtol=1e-6, atol=1e-5)
    other = fn(jnp.concatenate([x[1:2], 5.0 * x[2:]]))
    np.testing.assert_allclose(other[0], full[1], rtol=1e-6, atol=1e-5)
    # N(0, I) is its own VP marginal: the divergence term is exact for any probe
    true = -0.5 * np.sum(np.asarray(x).reshape(4, -1) ** 2, 1) - 3 * math.log(2 * math.pi)
    np.testing.assert_allclose(full, true, rtol=1e-4)


def test_nfe_counts_the_drift_evaluations():
    calls = []

    def score(v, t):
        jax.debug.callback(lambda: calls.append(1))
        return -v

    res = log_likelihood(score, VPSDE(), jnp.ones((1, 3)), jax.random.key(0))
    assert int(res.nfe[0]) == len(calls) > 6


def test_bad_arguments_name_the_problem():
    sde, score = VPSDE(), (lambda v, t: -v)
    with pytest.raises(ValueError, match="unknown divergence"):
        log_likelihood(score, sde, jnp.ones((2, 3)), jax.random.key(0), divergence="trace")
    with pytest.raises(ValueError, match="probes must be"):
        log_likelihood(score, sde, jnp.ones((2, 3)), probes=jnp.ones((1, 4)))
    with pytest.raises(ValueError, match="needs a key"):
        log_likelihood(score, sde, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="unknown probe kind"):
        make_probes(jax.random.key(0), (3,), 1, "sphere")
    with pytest.raises(Exception, match="max_steps"):  # too few steps: an error, not a wrong number
        jax.block_until_ready(log_likelihood(lambda v, t: -3 * v ** 3, sde, jnp.ones((1, 3)),
                                             jax.random.key(0), max_steps=2).logp)


def test_bits_per_dim_offsets():
    d = 12
    # the uniform density on [0, 1]^d (log p = 0) and on [-1, 1]^d (log p = -d ln 2) are both
    # exactly 8 bits per 8-bit dimension
    assert float(bits_per_dim(jnp.zeros(()), d)) == pytest.approx(8.0)
    assert float(bits_per_dim(jnp.asarray(-d * math.log(2.0)), d, "[-1,1]")) == pytest.approx(8.0)
    # a density twice as high everywhere saves one bit in total
    assert float(bits_per_dim(jnp.asarray(math.log(2.0)), d)) == pytest.approx(8.0 - 1.0 / d)
    with pytest.raises(ValueError, match="data_range"):
        bits_per_dim(jnp.zeros(()), d, "[0,255]")


def test_other_solvers_and_the_direct_adjoint():
    sde = VPSDE()
    score = mixture_score(sde)
    ref = log_likelihood(score, sde, X, divergence="exact").logp
    res = log_likelihood(score, sde, X, divergence="exact", solver=diffrax.Tsit5(),
                         adjoint=diffrax.DirectAdjoint())
    np.testing.assert_allclose(res.logp, ref, atol=1e-3)


def test_checkpoints_change_the_cost_not_the_gradient():
    sde = VPSDE()
    score = lambda v, t: -v * (1.0 + jnp.tanh(v)) * (1.0 + t[:, None])  # noqa: E731  (nonlinear)
    grad = lambda **kw: jax.jit(jax.grad(lambda v: jnp.sum(log_likelihood(  # noqa: E731
        score, sde, v, divergence="exact", **kw).logp)))(jnp.asarray(X, jnp.float32))
    np.testing.assert_allclose(grad(checkpoints=64), grad(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="default adjoint only"):
        log_likelihood(mixture_score(sde), sde, X, divergence="exact", checkpoints=8,
                       adjoint=diffrax.DirectAdjoint())


def test_the_continuous_adjoint_gives_the_gradient():
    """diffusion.make_adjoint('backsolve'): the adjoint ODE backwards from T gives the exact
    gradient to the solver's tolerance (here: the true score of the mixture, as the default), with
    per-sample ``cond`` and traced parameters too."""
    sde = VPSDE()
    x = jnp.asarray(X, jnp.float32)
    grad = lambda adjoint: jax.jit(jax.grad(lambda v: jnp.sum(log_likelihood(  # noqa: E731
        mixture_score(sde), sde, v, divergence="exact", adjoint=adjoint).logp)))(x)
    true_score = jax.grad(lambda v: jnp.sum(mixture_log_prob(sde, v, jnp.zeros(3))))(x)
    back = grad(make_adjoint("backsolve"))
    np.testing.assert_allclose(back, true_score, atol=0.02)
    np.testing.assert_allclose(back, grad(make_adjoint("recursive")), atol=2e-3)
    # per-sample conditioning, and a score closing over traced parameters (as the score family's
    # does under the attacks' jit): the continuous adjoint gets them as solver arguments
    cond_score = lambda v, t, y, w: -v * w[y][:, None]  # noqa: E731  (w = 1: N(0, I) data)
    def cond_grad(w, adjoint):
        return jax.grad(lambda v: jnp.sum(log_likelihood(lambda a, t, y: cond_score(a, t, y, w), sde, v,
                                                         cond=jnp.array([0, 1, 1]), divergence="exact",
                                                         adjoint=make_adjoint(adjoint)).logp))(x)
    w = jnp.array([1.0, 2.0])
    back, rec = (jax.jit(cond_grad, static_argnums=1)(w, a) for a in ("backsolve", "recursive"))
    np.testing.assert_allclose(back, rec, rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(rec[:1], -x[:1], atol=2e-3)  # class 0: N(0, I), its own VP marginal
    with pytest.raises(ValueError, match="cond must"):
        log_likelihood(lambda v, t, y: -v, sde, x, cond=jnp.zeros((2,), jnp.int32), divergence="exact")
    with pytest.raises(ValueError, match="unknown adjoint"):
        make_adjoint("forward")
    with pytest.raises(ValueError, match="recursive"):
        make_adjoint("backsolve", checkpoints=8)


# ------------------------------------------------------------------------------- the bound

def _mixture_samples(n, seed=0):
    rng = np.random.default_rng(seed)
    comp = rng.choice(2, n, p=np.exp(LOGW))
    return jnp.asarray(MUS[comp] + STDS[comp, None] * rng.normal(size=(n, 2)), jnp.float32)


@pytest.mark.parametrize("sde", SDES, ids=["vp", "subvp"])
def test_the_bound_of_the_true_score_is_the_log_density_and_a_wrong_score_lowers_it(sde):
    """Over 200 samples of the mixture and 2000 (t, noise) draws shared by them: with the analytic
    score the mean bound equals the mean exact log p(x) within 4 standard errors (the error of
    the shared draws: their per-draw means are what is independent); scaling the score by 0.8 or
    1.2 lowers it, paired on the same draws."""
    x = _mixture_samples(200)
    bound = jax.jit(lambda a: elbo(lambda v, t: a * mixture_score(sde)(v, t), sde, x, jax.random.key(0),
                                   num_draws=2000).draw_bound)
    true_draws = np.asarray(bound(1.0))  # [N, K]
    exact = np.asarray(mixture_log_prob(sde, x, jnp.zeros(len(x))))
    per_draw = true_draws.mean(0) - exact.mean()
    se = per_draw.std(ddof=1) / np.sqrt(len(per_draw))
    assert abs(per_draw.mean()) < 4 * se + 0.02, (per_draw.mean(), se)
    for a in (0.8, 1.2):
        diff = (np.asarray(bound(a)) - true_draws).mean(0)
        assert diff.mean() < -4 * diff.std(ddof=1) / np.sqrt(len(diff)) < 0, (a, diff.mean())


def test_the_bounds_gradient_keeps_one_draws_activations():
    """Differentiating the bound keeps what one draw's backward pass needs, not every draw's: the
    residuals of its VJP grow only by the draws' own (t, noise) as the draws go from 4 to 64 (a
    bound of 64 draws over 5 images of a score network would otherwise keep 64 networks'
    activations)."""
    sde = VPSDE()
    w1 = jax.random.normal(jax.random.key(0), (2, 512))
    w2 = jax.random.normal(jax.random.key(1), (512, 2)) / 30
    score = lambda v, t: jnp.tanh(v @ w1 + t[:, None]) @ w2  # noqa: E731  (activations [B, 512] per draw)
    x = jnp.ones((8, 2), jnp.float32)

    def residual_bytes(num_draws):
        _, vjp = jax.vjp(lambda v: elbo(score, sde, v, jax.random.key(0), num_draws=num_draws).bound, x)
        return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(vjp))

    per_draw = (residual_bytes(64) - residual_bytes(4)) / 60
    assert per_draw <= 4 * (1 + 2) * 2, per_draw  # float32 t and a noise of x's 2 dimensions, 2x slack


def test_the_bound_shares_its_draws_and_has_the_contract_of_a_likelihood():
    """One image's bound does not depend on its batch; classes share the draws (``cond``); it is
    differentiable and vmappable; bad arguments are named."""
    sde = VPSDE()
    score = lambda v, t, c: mixture_score(sde)(v, t) * (1.0 + 0.1 * c[:, None])  # noqa: E731
    x = jnp.asarray(X, jnp.float32)
    key = jax.random.key(3)
    f = lambda v, c: elbo(score, sde, v, key, num_draws=16, cond=c).bound  # noqa: E731
    both = f(x, jnp.zeros(3))
    np.testing.assert_allclose(f(x[1:2], jnp.zeros(1)), both[1:2], rtol=1e-5, atol=1e-4)
    # the same draws for two classes: the difference is the classes', not the draws'
    r0, r1 = (elbo(score, sde, x, key, num_draws=16, cond=jnp.full(3, c)) for c in (0.0, 1.0))
    assert r0.draw_bound.shape == (3, 16) and not np.allclose(r0.bound, r1.bound)
    g = jax.grad(lambda v: jnp.sum(f(v, jnp.zeros(3))))(x)
    assert g.shape == x.shape and np.all(np.isfinite(g))
    v = jax.vmap(lambda xi: f(xi[None], jnp.zeros(1))[0])(x)
    np.testing.assert_allclose(v, both, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="num_draws must be at least 1"):
        elbo(mixture_score(sde), sde, x, key, num_draws=0)
    with pytest.raises(ValueError, match="batch axis"):
        elbo(mixture_score(sde), sde, x[0], key, num_draws=4)
