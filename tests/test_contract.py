"""The one contract, for every family: shape, finiteness, jit, grad, batch independence, and the
identities of the derived quantities; every bad input raises a ValueError that names it."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import gcj
from conftest import smoke_config

FAMILIES = {"sdim": ("demo", {}), "disc": ("disc_fashion_mnist", {"data.name": "mnist5k"}),
            "sdim_logit": ("sdim_logit_fashion_mnist", {"data.name": "mnist5k"}),
            "score": ("score_digits", {}),
            "glow": ("glow_digits", {}), "ibinn": ("ibinn_digits", {})}


@pytest.fixture(scope="module", params=[pytest.param(f, marks=pytest.mark.slow) if f == "score" else f
                                        for f in FAMILIES])
def clf(request):
    name, overrides = FAMILIES[request.param]
    return gcj.create(smoke_config(name, **overrides), jax.random.key(0))


@pytest.fixture(scope="module")
def x(clf):
    return jax.random.uniform(jax.random.key(1), (3, *clf.image_shape))


def test_shape_and_finite(clf, x):
    ll = clf.class_log_likelihoods(x)
    chex.assert_shape(ll, (3, clf.num_classes))
    chex.assert_type(ll, jnp.float32)
    chex.assert_tree_all_finite(ll)


def _methods(clf, x):
    """Every public method of the contract on images ``x``, as one tuple."""
    return (clf.class_log_likelihoods(x), clf.predict(x), clf.log_posterior(x), clf.log_marginal(x))


def _assert_methods_agree(got, want):
    """Two evaluations of ``_methods`` agree within float32 noise; a prediction may differ only
    between classes tied within that noise (an untrained model has near-ties)."""
    ll, pred, post, marg = got
    np.testing.assert_allclose(ll, want[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(post, want[2], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(marg, want[3], rtol=1e-5, atol=1e-4)
    ll = np.asarray(ll)
    assert np.all(ll[np.arange(len(ll)), np.asarray(pred)] >= ll.max(1) - 1e-4)


@functools.cache
def _classifier(family: str):
    name, overrides = FAMILIES[family]
    return gcj.create(smoke_config(name, **overrides), jax.random.key(0))


class MethodsUnderJit(chex.TestCase):
    """The pure function and every method, eager and inside a user's ``jax.jit`` (chex's variants),
    against the eager pure function; shapes are checked at trace."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*[f for f in FAMILIES if f != "score"])  # (score: test_pretrained, test_diffusion)
    def test_methods_equal_the_pure_function(self, family):
        clf = _classifier(family)
        x = jax.random.uniform(jax.random.key(1), (3, *clf.image_shape))
        key = jax.random.key(0)
        want = clf.log_likelihood_fn(clf.params, x, key)
        np.testing.assert_allclose(self.variant(clf.log_likelihood_fn)(clf.params, x, key), want,
                                   rtol=1e-5, atol=1e-4)
        reference = (want, jnp.argmax(want, 1), gcj.log_posterior(want), gcj.log_marginal(want))
        _assert_methods_agree(self.variant(lambda xi: _methods(clf, xi))(x), reference)
        with pytest.raises(ValueError, match="must be \\[B, "):
            self.variant(lambda xi: clf.predict(xi))(x[:, :-1])


def test_a_classifier_is_a_pytree(clf, x):
    """A ``Classifier`` as an argument of a user's ``jax.jit`` (params and thresholds its leaves, the
    config and function static), and ``jax.vmap`` over a stack of its parameters. (Not the score
    family: what is tested is the same for every family, and its ODE takes long to compile.)"""
    if clf.config.model.family == "score":
        pytest.skip("the score family: the same code, a long ODE compilation")
    leaves = jax.tree_util.tree_leaves(clf)
    assert len(leaves) == len(jax.tree_util.tree_leaves(clf.params)) > 0
    got = jax.jit(lambda c, xi: c.class_log_likelihoods(xi))(clf, x)
    np.testing.assert_allclose(got, clf.class_log_likelihoods(x), rtol=1e-5, atol=1e-4)
    moved = jax.tree_util.tree_map(lambda p: p + 0.1 if jnp.issubdtype(p.dtype, jnp.floating) else p, clf.params)
    stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), clf.params, moved)
    both = jax.vmap(lambda p: clf.replace(params=p).class_log_likelihoods(x))(stacked)
    chex.assert_shape(both, (2, 3, clf.num_classes))
    np.testing.assert_allclose(both[0], clf.class_log_likelihoods(x), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(both[1], clf.replace(params=moved).class_log_likelihoods(x), rtol=1e-5, atol=1e-4)
    assert float(jnp.abs(both[1] - both[0]).max()) > 1e-3  # the second member is another model


def test_a_sample_does_not_depend_on_its_batch(clf, x):
    """Batch independence, and the methods under a user's ``jax.vmap`` over single images."""
    full = clf.class_log_likelihoods(x)
    np.testing.assert_allclose(clf.class_log_likelihoods(x[1:2]), full[1:2], rtol=1e-5, atol=1e-4)
    per_sample = jax.vmap(lambda xi: tuple(m[0] for m in _methods(clf, xi[None])))(x)
    _assert_methods_agree(per_sample, _methods(clf, x))


def test_grad_wrt_input(clf, x):
    """``jax.grad`` through the methods: of log p(x|y=0) and of log p(x), log p(y|x) by Bayes."""
    g = jax.grad(lambda xi: clf.class_log_likelihoods(xi)[:, 0].sum())(x)
    assert g.shape == x.shape and np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0
    if clf.config.model.family == "score":
        # three more ODE adjoints would take a minute; the derived methods below are the same
        # code for every family. The ODE's checkpointed adjoint is reverse-mode only, and finite
        # differences of an adaptive solve need tolerances that make this test minutes long:
        # test_diffusion checks the ODE gradient against the true score and float64 finite
        # differences
        return
    # Bayes, differentiated: log p(y|x) + log p(x) - log p(x|y) is constant in x
    bayes = lambda xi: (clf.log_posterior(xi)[:, 0] + clf.log_marginal(xi)
                        - clf.class_log_likelihoods(xi)[:, 0]).sum()
    assert float(jnp.abs(jax.grad(bayes)(x)).max()) <= 1e-3 * float(jnp.abs(g).max())
    # reverse mode agrees with forward mode and with a finite difference along a unit direction
    # (of the pure function: the methods refuse the pixels outside [0, 1] that x +- eps v has)
    f = lambda xi: clf.log_likelihood_fn(clf.params, xi, jax.random.key(0))[:, 0].sum()
    v = jax.random.normal(jax.random.key(3), x.shape)
    v = v / jnp.linalg.norm(v)
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
    # |log p(x)| ranges from ~0.01 (SDIM smoke) to ~1e3 nats: relative float32 error plus an
    # absolute floor, which holds whatever order the CPU sums in
    np.testing.assert_allclose(lm, jax.nn.logsumexp(ll, axis=1) - np.log(clf.num_classes), rtol=1e-5, atol=1e-5)
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


def test_a_function_breaking_the_contract_is_caught(clf, x):
    broken = gcj.Classifier(clf.config, clf.params, lambda p, xi, k: jnp.zeros((xi.shape[0], 3)))
    with pytest.raises(AssertionError, match="shape"):
        broken.class_log_likelihoods(x)


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
    assert z.shape[0] == 3 and logdet.shape == (3,)
    back = clf.inverse(z)
    h, w, _ = clf.image_shape  # (Glow may zero-pad: compare the image's own pixels)
    top, left = (back.shape[1] - h) // 2, (back.shape[2] - w) // 2
    diff = jnp.abs(back[:, top:top + h, left:left + w] - x)
    assert 1e-4 < float(diff.max()) < 1 / 256 + 1e-4  # the dequantization noise, nothing more
    samples = clf.sample(jnp.arange(3), jax.random.key(8))
    assert samples.shape == (3, *back.shape[1:]) and 0 <= float(samples.min()) <= float(samples.max()) <= 1
    # the flow methods inside a user's jit / vmap / grad / jacfwd
    zj, ldj = jax.jit(lambda xi: clf.forward(xi, key))(x)
    np.testing.assert_allclose(zj, z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ldj, logdet, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(jax.vmap(lambda zi: clf.inverse(zi[None])[0])(z), back, atol=1e-4)
    np.testing.assert_allclose(jax.jit(lambda l, k: clf.sample(l, k))(jnp.arange(3), jax.random.key(8)),
                               samples, atol=1e-4)
    # d z / d x of one image against the logdet: log|det J| = slogdet of the forward's Jacobian
    # is tested in test_flows; here only that jacfwd and grad trace through the methods
    jac = jax.jacfwd(lambda xi: clf.forward(xi, key)[0])(x[:1])
    assert jac.shape == (*z[:1].shape, *x[:1].shape) and np.all(np.isfinite(jac))
    g = jax.grad(lambda zi: clf.inverse(zi).sum())(z)
    assert g.shape == z.shape and np.all(np.isfinite(g))
    with pytest.raises(ValueError, match="labels must be integers"):
        clf.sample(jnp.array([0, clf.num_classes]), key)
    # temperature 0: the inverse of the prior's mean latent of each class (no noise drawn)
    cold = clf.sample(jnp.arange(3), jax.random.key(8), temperature=0.0)
    np.testing.assert_allclose(cold, clf.sample(jnp.arange(3), jax.random.key(9), temperature=0.0), atol=1e-5)
    assert float(jnp.abs(cold - samples).max()) > 1e-3
