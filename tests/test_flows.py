"""gcj.flows: every invertible layer inverts, and its logdet is log|det| of its Jacobian."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcj import flows

jax.config.update("jax_default_matmul_precision", "highest")

LAYERS = {
    "actnorm": lambda: flows.ActNorm(),
    "global_affine": lambda: flows.GlobalAffine(),
    "conv1x1_lu": lambda: flows.Conv1x1(seed=3),
    "conv1x1_plain": lambda: flows.Conv1x1(seed=3, lu=False),
    "fixed_orthogonal": lambda: flows.FixedOrthogonal(seed=5),
    "coupling_glow": lambda: flows.AffineCoupling(width=8),
    "coupling_ib": lambda: flows.AffineCoupling(width=8, kind="ib"),
    "downsample_coupling": lambda: flows.DownsampleCoupling(width=8),
    "squeeze": lambda: flows.Squeeze(),
    "haar": lambda: flows.HaarDownsampling(),
    "haar_rebalanced": lambda: flows.HaarDownsampling(rebalance=0.5),
    "dct": lambda: flows.DCTPooling(size=(4, 4)),
    "chain": lambda: flows.Sequential([flows.ActNorm(), flows.AffineCoupling(width=8),
                                       flows.Conv1x1(seed=1), flows.Squeeze(),
                                       flows.AffineCoupling(width=8, kind="ib"),
                                       flows.GlobalAffine(), flows.FixedOrthogonal(seed=2)]),
}


def _init_perturbed(layer, x):
    """Variables after initialisation on ``x``, with every parameter moved at random, so that
    zero-initialised couplings are not the identity."""
    v = layer.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
    leaves, tree = jax.tree_util.tree_flatten(v.get("params", {}))
    keys = jax.random.split(jax.random.key(2), len(leaves))
    moved = [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    return {**v, "params": jax.tree_util.tree_unflatten(tree, moved)}


@pytest.mark.parametrize("name", list(LAYERS))
def test_inverse_of_forward_is_identity_and_logdet_is_the_jacobian(name):
    layer = LAYERS[name]()
    x = jax.random.normal(jax.random.key(0), (3, 4, 4, 4)) + 0.5
    v = _init_perturbed(layer, x)
    y, logdet = layer.apply(v, x, method="forward")
    assert logdet.shape == (3,)
    back = layer.apply(v, y, method="inverse")
    np.testing.assert_allclose(back, x, rtol=1e-4, atol=1e-4 * float(jnp.abs(x).max()))
    _, inv_logdet = layer.apply(v, y, reverse=True)
    np.testing.assert_allclose(inv_logdet, -logdet, rtol=1e-5, atol=1e-4)

    f = lambda u: layer.apply(v, u.reshape(1, *x.shape[1:]))[0].ravel()  # noqa: E731
    jacobian = jax.jit(jax.jacfwd(f))
    for i in range(2):  # per example: log|det| of the Jacobian of the flattened map
        jac = jacobian(x[i].ravel())
        sign, true = jnp.linalg.slogdet(jac)
        assert sign != 0
        np.testing.assert_allclose(logdet[i], true, rtol=1e-4, atol=1e-3)


def test_haar_and_dct_are_orthogonal_and_dct_leads_with_the_mean():
    np.testing.assert_allclose(flows._HAAR @ flows._HAAR.T, np.eye(4), atol=1e-7)
    for n in (1, 4, 7):
        d = flows.dct_matrix(n)
        np.testing.assert_allclose(d @ d.T, np.eye(n), atol=1e-6)
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 3))
    z, _ = flows.DCTPooling(size=(7, 7)).apply({}, x)
    np.testing.assert_allclose(z[:, 0, 0, :3], 7.0 * x.mean((1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jnp.sum(z ** 2, -1).ravel(), jnp.sum(x ** 2, (1, 2, 3)), rtol=1e-5)


def test_actnorm_initialises_from_data_and_keeps_it():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (64, 4, 4, 2))
    layer = flows.ActNorm()
    v = layer.init(jax.random.key(1), x)
    y, _ = layer.apply(v, x)
    np.testing.assert_allclose(y.mean((0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std((0, 1, 2)), 1.0, atol=1e-4)
    # the initialised values are parameters: applying to other data does not re-initialise
    y2, _ = layer.apply(v, x + 10.0)
    np.testing.assert_allclose(y2, y + 10.0 * jnp.exp(v["params"]["logs"])[None, None, None], rtol=1e-5, atol=1e-4)


def test_noise_pad_counts_the_noise_density():
    layer = flows.NoisePad(channels=1)
    x = jnp.ones((2, 3, 3, 1))
    (y, logdet) = layer.apply({}, x, rngs={"noise": jax.random.key(0)})
    assert y.shape == (2, 3, 3, 2)
    pad = y[..., 1]
    assert jnp.all(pad >= 0) and jnp.all(pad < 2 / 256) and jnp.std(pad) > 0
    # log p(x) = log p(x, u) - log q(u), q uniform on [0, 2/256)^9
    np.testing.assert_allclose(logdet, 9 * math.log(2 / 256), rtol=1e-6)
    np.testing.assert_array_equal(layer.apply({}, y, method="inverse"), x)


def test_layers_name_bad_input():
    with pytest.raises(ValueError, match="even height and width"):
        flows.squeeze(jnp.ones((1, 3, 4, 1)))
    with pytest.raises(ValueError, match="at least 2 channels"):
        flows.AffineCoupling(width=4).init(jax.random.key(0), jnp.ones((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="unknown coupling kind"):
        flows.AffineCoupling(width=4, kind="nice").init(jax.random.key(0), jnp.ones((1, 4, 4, 2)))


# ------------------------------------------------------------------ the Glow classifier

from scipy import stats  # noqa: E402

from conftest import smoke_config  # noqa: E402
from gcj import classifier  # noqa: E402
from gcj.models import flow  # noqa: E402
from gcj.train import init_state, make_optimizer, make_train_step  # noqa: E402

RNGS = {"params": jax.random.key(1), "noise": jax.random.key(2)}


def test_glow_transform_logdet_is_the_jacobian_and_inverts():
    glow = flow.Glow((4, 4, 1), levels=2, steps=1, width=4)
    x = jax.random.uniform(jax.random.key(0), (3, 4, 4, 2)) - 0.5  # image + noise channel
    v = _init_perturbed(glow, x[..., :1])
    transform = jax.jit(lambda u, reverse=False: glow.apply(v, u, reverse, method="transform"),
                        static_argnums=1)
    z, logdet = transform(x)
    assert z.shape == (3, 32)
    back, _ = transform(z, True)
    np.testing.assert_allclose(back, x, atol=5e-4)  # float32 through 2 perturbed levels
    jac = jax.jit(jax.jacfwd(lambda u: transform(u.reshape(1, 4, 4, 2))[0][0]))(x[0].ravel())
    np.testing.assert_allclose(logdet[0], jnp.linalg.slogdet(jac)[1], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("variant", ["base", "reweighted", "split"])
def test_glow_classifier_variants(variant):
    m = flow.GlowClassifier((8, 8, 1), 3, levels=2, steps=1, width=8, variant=variant)
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
    labels = jnp.array([0, 1, 2, 0])
    v = m.init(RNGS, x, labels, method="losses")
    noise = {"noise": jax.random.key(3)}
    ll = m.apply(v, x, rngs=noise)
    assert ll.shape == (4, 3) and np.all(np.isfinite(ll))
    # one flow pass, classes differ only in the prior: log p(x|y) = log p(z|y) + log|det J|
    z, logdet = m.apply(v, x, rngs=noise, method="forward")
    np.testing.assert_allclose(ll, m.apply(v, z, method=lambda mod, z: mod.prior(z)) + logdet[:, None],
                               rtol=1e-5)
    # the inverse recovers the dequantized image v = (255 x + u)/256: |v - x| < 1/256
    back = m.apply(v, z, method="inverse")
    assert 1e-4 < float(jnp.max(jnp.abs(back - x))) < 1 / 256 + 1e-5
    samples = m.apply(v, labels, jax.random.key(4), method="sample")
    assert samples.shape == x.shape and np.all(np.isfinite(samples))
    loss, metrics = m.apply(v, x, labels, False, rngs=noise, method="losses")
    nll_dim = -float(jnp.mean(ll[jnp.arange(4), labels])) / 64
    expected = nll_dim if variant == "base" else nll_dim - float(
        jnp.mean(jax.nn.log_softmax(ll)[jnp.arange(4), labels]))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(metrics["bits_per_dim"]) == pytest.approx(nll_dim / np.log(2) + 8, rel=1e-5)


def test_priors_are_the_stated_gaussians():
    z = jax.random.normal(jax.random.key(0), (2, 12))
    g = flow.GaussianPrior(3, 12)
    v = g.init(jax.random.key(1), z)
    mu, s = v["params"]["mu"], jnp.exp(v["params"]["log_sigma"])
    true = stats.norm.logpdf(np.asarray(z)[:, None], np.asarray(mu)[None], np.asarray(s)[None]).sum(-1)
    np.testing.assert_allclose(g.apply(v, z), true, rtol=1e-5)
    # split prior at init: z_s ~ N(2 e_y, 0.5^2), z_n ~ N(0, 1) (the conditional starts at zero)
    sp = flow.SplitPrior(3, 12, scale=2.0, sigma=0.5)
    v = sp.init(jax.random.key(1), z)
    zn, zs = np.asarray(z[:, :9]), np.asarray(z[:, 9:])
    true = (stats.norm.logpdf(zs[:, None], 2.0 * np.eye(3)[None], 0.5).sum(-1)
            + stats.norm.logpdf(zn).sum(-1)[:, None])
    np.testing.assert_allclose(sp.apply(v, z), true, rtol=1e-5)


@pytest.mark.parametrize("variant", ["base", "reweighted", "split"])
def test_glow_train_step(variant):
    c = smoke_config("glow_digits", **{"model.glow.variant": variant, "optim.warmup_steps": 0})
    module = classifier.build_module(c)
    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 1)).astype(np.uint8)
    v = classifier.init_variables(c, jax.random.key(0), images=images / 255.0)
    tx = make_optimizer(c.optim, 10, 1, v["params"])
    state = init_state(v, tx)
    labels = np.arange(8, dtype=np.int32) % 10
    step = jax.jit(make_train_step(module, tx, c.data))
    new, metrics = step(state, images, labels, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))
    # zero-initialised output convolutions pass no gradient to their subnetwork at step 1
    new, metrics = step(new, images, labels, jax.random.key(2))
    assert np.isfinite(float(metrics["loss"]))
    moved = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda a, b: bool(jnp.any(a != b)), new["params"], state["params"]))
    assert all(moved)
