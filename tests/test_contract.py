"""The one contract, for every family: shape, finiteness, jit, grad, batch independence, and the
identities of the derived quantities; every bad input raises a ValueError that names it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gcj
from conftest import smoke_config

FAMILIES = {"sdim": ("demo", {}), "disc": ("demo", {"model.family": "disc"}),
            "sdim_logit": ("demo", {"model.family": "sdim_logit"}),
            "score": ("score_digits", {}),
            "glow": ("glow_digits", {}), "ibinn": ("ibinn_digits", {})}


@pytest.fixture(scope="module", params=list(FAMILIES))
def clf(request):
    name, overrides = FAMILIES[request.param]
    return gcj.create(smoke_config(name, **overrides), jax.random.key(0))


@pytest.fixture(scope="module")
def x(clf):
    return jax.random.uniform(jax.random.key(1), (5, *clf.image_shape))


def test_shape_and_finite(clf, x):
    ll = clf.class_log_likelihoods(x)
    assert ll.shape == (5, clf.num_classes) and ll.dtype == jnp.float32
    assert np.all(np.isfinite(ll))


def test_pure_function_jit_equals_eager(clf, x):
    key = jax.random.key(0)
    eager = clf.log_likelihood_fn(clf.params, x, key)
    np.testing.assert_allclose(jax.jit(clf.log_likelihood_fn)(clf.params, x, key), eager, rtol=1e-5, atol=1e-4)


def test_a_sample_does_not_depend_on_its_batch(clf, x):
    full = clf.class_log_likelihoods(x)
    np.testing.assert_allclose(clf.class_log_likelihoods(x[2:3]), full[2:3], rtol=1e-5, atol=1e-4)
    per_sample = jax.vmap(lambda xi: clf.log_likelihood_fn(clf.params, xi[None], jax.random.key(0))[0])(x)
    np.testing.assert_allclose(per_sample, full, rtol=1e-5, atol=1e-4)


def test_grad_wrt_input(clf, x):
    f = lambda xi: clf.log_likelihood_fn(clf.params, xi, jax.random.key(0))[:, 0].sum()
    g = jax.grad(f)(x)
    assert g.shape == x.shape and np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0
    # reverse mode agrees with forward mode and with a finite difference along a unit direction
    v = jax.random.normal(jax.random.key(3), x.shape)
    v = v / jnp.linalg.norm(v)
    if clf.config.model.family == "score":
        # the ODE's checkpointed adjoint is reverse-mode only, and finite differences of an
        # adaptive solve need tolerances that make this test minutes long: test_diffusion checks
        # the ODE gradient against the true score and float64 finite differences
        return
    _, jvp = jax.jvp(f, (x,), (v,))
    assert float(jnp.vdot(g, v)) == pytest.approx(float(jvp), rel=1e-4, abs=1e-5)
    eps = 1e-2
    fd = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    assert float(jnp.vdot(g, v)) == pytest.approx(float(fd), rel=0.05, abs=2e-3)


def test_derived_quantities(clf, x):
    ll = clf.class_log_likelihoods(x)
    np.testing.assert_array_equal(clf.predict(x), jnp.argmax(ll, 1))
    lp = clf.log_posterior(x)
    np.testing.assert_allclose(jax.nn.logsumexp(lp, axis=1), 0.0, atol=1e-5)
    lm = clf.log_marginal(x)
    np.testing.assert_allclose(lm, jax.nn.logsumexp(ll, axis=1) - np.log(clf.num_classes), rtol=1e-6)
    # Bayes: log p(y|x) = log p(x|y) + log p(y) - log p(x), with a non-uniform prior too
    prior = jnp.log(jnp.arange(1.0, clf.num_classes + 1) / jnp.sum(jnp.arange(1.0, clf.num_classes + 1)))
    np.testing.assert_allclose(clf.log_posterior(x, log_prior=prior),
                               ll + prior[None] - clf.log_marginal(x, log_prior=prior)[:, None],
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bad, message", [
    (lambda s: np.zeros(s[1:], np.float32), "rank 4"),
    (lambda s: np.zeros((2, s[1] + 1, s[2], s[3]), np.float32), "must be \\[B, "),
    (lambda s: np.zeros(s, np.uint8), "floating point.*divide uint8"),
    (lambda s: np.full(s, np.nan, np.float32), "NaN"),
    (lambda s: np.full(s, 255.0, np.float32), "pixels must be in \\[0, 1\\]"),
    (lambda s: -np.ones(s, np.float32), "pixels must be in \\[0, 1\\]"),
])
def test_bad_inputs_raise(clf, bad, message):
    with pytest.raises(ValueError, match=message):
        clf.class_log_likelihoods(bad((2, *clf.image_shape)))


def test_log_prior_shape_is_checked(clf, x):
    with pytest.raises(ValueError, match="log_prior must have shape"):
        clf.log_posterior(x, log_prior=jnp.zeros(3))


def test_flow_methods(clf, x):
    """Flows: ``forward`` / ``inverse`` are the bijection of the dequantized image (the classes'
    log-likelihoods are the prior's plus its logdet); other families say they have none."""
    if clf.config.model.family not in gcj.classifier.FLOW_FAMILIES:
        with pytest.raises(ValueError, match="need a flow family"):
            clf.forward(x)
        return
    key = jax.random.key(7)
    z, logdet = clf.forward(x, key)
    assert z.shape[0] == 5 and logdet.shape == (5,)
    back = clf.inverse(z)
    h, w, _ = clf.image_shape  # (Glow may zero-pad: compare the image's own pixels)
    top, left = (back.shape[1] - h) // 2, (back.shape[2] - w) // 2
    diff = jnp.abs(back[:, top:top + h, left:left + w] - x)
    assert 1e-4 < float(diff.max()) < 1 / 256 + 1e-4  # the dequantization noise, nothing more
    samples = clf.sample(jnp.arange(3), jax.random.key(8))
    assert samples.shape == (3, *back.shape[1:]) and 0 <= float(samples.min()) <= float(samples.max()) <= 1
    with pytest.raises(ValueError, match="labels must be integers"):
        clf.sample(jnp.array([0, clf.num_classes]), key)
