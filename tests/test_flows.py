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
    "coupling_dense": lambda: flows.AffineCoupling(width=8, kind="ib", dense=True),
    "downsample_coupling": lambda: flows.DownsampleCoupling(width=8),
    "downsample_coupling_3ch": lambda: flows.DownsampleCoupling(width=8, kernel=5, bottleneck=True),
    "fixed_permutation": lambda: flows.FixedPermutation(seed=4),
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
    channels = 3 if name.endswith("_3ch") else 4  # odd: unequal coupling halves
    x = jax.random.normal(jax.random.key(0), (3, 4, 4, channels)) + 0.5
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
    np.testing.assert_allclose(logdet, 9 * math.log(2 / 256), rtol=1e-6, atol=1e-5)
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

from conftest import load_config, smoke_config  # noqa: E402
from gcj import classifier, data  # noqa: E402
from gcj.suites import Context, Request, clean  # noqa: E402
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
    # relative error <= 1e-3 (float32 through 2 perturbed levels: measured 5.5e-5 with XLA's
    # optimized code, 2.4e-4 without LLVM's optimizations; a wrong inverse is off by O(1))
    assert float(jnp.linalg.norm(back - x) / jnp.linalg.norm(x)) <= 1e-3
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


# ------------------------------------------------------------------ the IB-INN classifier

from gcj.models import ibinn  # noqa: E402

IBINN_LAYOUTS = {  # Ardizzone's MNIST-like layout, and paper 002's ImageNet entry with bottlenecks
    "haar": ((8, 8, 1), dict(entry="haar", widths=(4, 8), blocks=(1, 1), fc_width=8,
                             fc_dropout=0.0)),
    "downsample_haar": ((8, 8, 3), dict(entry="downsample_haar", entry_width=4, entry_kernel=3,
                                        widths=(4,), blocks=(2,), bottleneck=True, fc_blocks=0)),
}


@pytest.mark.parametrize("layout", list(IBINN_LAYOUTS))
def test_ibinn_logdet_is_the_jacobian_and_inverts(layout):
    shape, kw = IBINN_LAYOUTS[layout]
    net = ibinn.IBINN(shape, **kw)
    x = jax.random.uniform(jax.random.key(0), (3, *shape)) - 0.5
    v = _init_perturbed(net, x)
    f = jax.jit(lambda u, reverse=False: net.apply(v, u, reverse), static_argnums=1)
    z, logdet = f(x)
    assert z.shape == (3, math.prod(shape)) and logdet.shape == (3,)
    back, inv_logdet = f(z, True)
    assert float(jnp.linalg.norm(back.reshape(x.shape) - x) / jnp.linalg.norm(x)) <= 1e-4
    np.testing.assert_allclose(inv_logdet, -logdet, rtol=1e-4, atol=1e-3)
    jac = jax.jit(jax.jacfwd(lambda u: f(u.reshape(1, *shape))[0][0]))(x[0].ravel())
    np.testing.assert_allclose(logdet[0], jnp.linalg.slogdet(jac)[1], rtol=1e-4, atol=2e-3)
    # the DCT's first outputs (one per channel before it) are the mean-pooled channels
    h, w, c = ibinn.final_shape(shape, kw["entry"], len(kw["widths"]))
    assert (h, w) == (2, 2) and c == math.prod(shape) // 4


def test_gmm_prior_is_the_stated_mixture():
    z = jax.random.normal(jax.random.key(0), (4, 20))
    prior = ibinn.GMMPrior(num_classes=4, dim=20, init_scale=5.0)
    v = prior.init(jax.random.key(1), z)
    mu = np.asarray(v["params"]["mu"])
    # one-hot block initialisation: every pair of class means 5 apart
    dist = np.linalg.norm(mu[:, None] - mu[None], axis=-1)
    np.testing.assert_allclose(dist[~np.eye(4, dtype=bool)], 5.0, rtol=1e-5)
    true = np.stack([stats.multivariate_normal(mu[k], np.eye(20)).logpdf(np.asarray(z))
                     for k in range(4)], 1)
    np.testing.assert_allclose(prior.apply(v, z), true, rtol=1e-5)
    np.testing.assert_allclose(prior.apply(v, method="log_weights"), np.log(0.25), rtol=1e-6, atol=1e-5)
    # low rank (paper 002 eq. 28): mu_y = [mu_mean_y, sum_k alpha_yk mu_k]
    low = ibinn.GMMPrior(num_classes=4, dim=20, rank=3, mean_dims=8)
    v = low.init(jax.random.key(1), z)
    p = jax.tree_util.tree_map(lambda a: a + jax.random.normal(jax.random.key(5), a.shape), v["params"])
    means = low.apply({"params": p}, method="means")
    np.testing.assert_allclose(means, np.concatenate(
        [p["mu_mean"], np.asarray(p["alpha"]) @ np.asarray(p["prototypes"])], 1), rtol=1e-5, atol=1e-5)
    assert sum(a.size for a in jax.tree_util.tree_leaves(p)) == 8 * 4 + 3 * (12 + 4) + 4
    fixed = ibinn.GMMPrior(num_classes=4, dim=20, learn_weights=False)
    v = fixed.init(jax.random.key(1), z)
    assert set(v["params"]) == {"mu"}  # fixed, uniform class weights
    np.testing.assert_allclose(fixed.apply(v, method="log_weights"), np.log(0.25), rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="unknown entry 'pool'"):
        ibinn.final_shape((8, 8, 1), "pool", 2)
    with pytest.raises(ValueError, match="mean_dims"):
        ibinn.GMMPrior(num_classes=4, dim=20, rank=3, mean_dims=0).init(jax.random.key(1), z)


def _ibinn_classifier(beta=1.0, smoothing=0.1):
    return ibinn.IBINNClassifier((8, 8, 1), 3, tuple(IBINN_LAYOUTS["haar"][1].items()), beta=beta,
                                 label_smoothing=smoothing)


def test_ib_losses_on_a_hand_computed_case():
    m = _ibinn_classifier(smoothing=0.1)
    mu = np.zeros((3, 64), np.float32)
    mu[1, 0], mu[2, 1] = 2.0, 3.0
    phi = np.array([0.0, np.log(2.0), np.log(3.0)], np.float32)  # w = (1, 2, 3)/6
    z = np.zeros((2, 64), np.float32)
    z[0, 0], z[1, 1] = 1.0, 1.0
    logdet, labels = np.array([3.0, -1.0], np.float32), np.array([1, 2])
    # the losses of given latents need only the prior's parameters
    l_x, l_y, logits = m.apply({"params": {"prior": {"mu": mu, "phi": phi}}}, z, logdet, labels,
                               method="ib_losses")
    # by hand: zz[0] = (1, 1, 1 + 9), zz[1] = (1, 1 + 4, 4)
    zz = np.array([[1.0, 1.0, 10.0], [1.0, 5.0, 4.0]])
    lw = np.log(np.array([1.0, 2.0, 3.0]) / 6)
    t = -zz / 2 + lw
    np.testing.assert_allclose(logits, t, rtol=1e-5)
    lse = np.log(np.exp(t).sum(1))
    assert float(l_x) == pytest.approx(np.mean(-lse - logdet) / 64, rel=1e-5)
    target = 0.9 * np.eye(3)[labels] + 0.1 / 3
    assert float(l_y) == pytest.approx(-np.mean(np.sum(target * (t - lse[:, None]), 1)), rel=1e-5)


@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0, math.inf])
def test_ibinn_classifier_likelihoods_inverse_and_loss(beta):
    m = _ibinn_classifier(beta)
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
    labels = jnp.array([0, 1, 2, 0])
    v = m.init(RNGS, x, labels, method="losses")
    noise = {"noise": jax.random.key(3)}
    ll = m.apply(v, x, rngs=noise)
    z, logdet = m.apply(v, x, rngs=noise, method="forward")
    np.testing.assert_allclose(ll, m.apply(v, z, method=lambda mod, z: mod.prior(z)) + logdet[:, None],
                               rtol=1e-5)
    back = m.apply(v, z, method="inverse")  # the dequantized image: |v - x| < 1/256
    assert 1e-4 < float(jnp.max(jnp.abs(back - x))) < 1 / 256 + 1e-5
    loss, metrics = m.apply(v, x, labels, False, rngs=noise, method="losses")
    l_x, l_y = float(metrics["l_x"]), float(metrics["l_y"])
    expected = 2 * l_y if math.isinf(beta) else 2 / (1 + beta) * l_x + 2 * beta / (1 + beta) * l_y
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    nll = -float(jnp.mean(ll[jnp.arange(4), labels]))
    assert float(metrics["bits_per_dim"]) == pytest.approx(nll / (64 * np.log(2)) + 8, rel=1e-5)
    samples = m.apply(v, labels, jax.random.key(4), method="sample")
    assert samples.shape == x.shape and float(samples.min()) >= 0 and float(samples.max()) <= 1


@pytest.mark.parametrize("name, overrides", [
    ("glow_digits", {"model.glow.variant": "base"}), ("glow_digits", {"model.glow.variant": "reweighted"}),
    ("glow_digits", {"model.glow.variant": "split"}),
    ("ibinn_digits", {})])  # (beta only weighs the IB-INN's two losses: tested above)
def test_flow_train_step(name, overrides):
    c = smoke_config(name, **overrides, **{"optim.warmup_steps": 0})
    module = classifier.build_module(c)
    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 1)).astype(np.uint8)
    v = classifier.init_variables(c, jax.random.key(0), images=images / 255.0)
    tx = make_optimizer(c.optim, 10, 1, v["params"])
    state = init_state(v, tx)
    labels = np.arange(8, dtype=np.int32) % 10
    step = jax.jit(make_train_step(module, tx, c.data))
    new, metrics = step(state, images, labels, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))
    # zero-initialised output layers pass no gradient to their subnetwork at step 1
    new, metrics = step(new, images, labels, jax.random.key(2))
    assert np.isfinite(float(metrics["loss"]))
    moved = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda a, b: bool(jnp.any(a != b)), new["params"], state["params"]))
    assert all(moved)


def test_ibinn_imagenet_layout_has_the_papers_parameter_count():
    c = load_config("ibinn_imagenet")
    p = jax.eval_shape(lambda: classifier.init_variables(c, jax.random.key(0)))["params"]
    count = lambda t: sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(t))  # noqa: E731
    # paper 002 Tab. 2: 55.4M in the network, 77.5M with the class means
    assert count(p["flow"]) == pytest.approx(55.4e6, rel=0.05)   # gcj: 55,572,672
    assert count(p) == pytest.approx(77.5e6, rel=0.05)           # gcj: 77,648,040
    # low-rank means: D_mean·C + K·(D_rest + C) with D = 7·7·3072, D_mean = 3072, K = 128
    assert count(p["prior"]) == 3072 * 1000 + 128 * (150528 - 3072 + 1000) + 1000


def test_a_padded_glow_counts_bits_per_dim_over_its_padded_image():
    """pad_to 12 on 8x8 digits: the density is over 12x12 = 144 dimensions, and training's
    bits/dim, Classifier.density_dims and the clean suite's bits/dim all divide by 144."""
    c = smoke_config("glow_digits", **{"model.glow.pad_to": 12})
    clf = classifier.create(c, jax.random.key(0))
    assert clf.density_dims == 144 and math.prod(clf.image_shape) == 64
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
    labels = jnp.array([0, 1, 2, 3])
    key = jax.random.key(2)
    ll = clf.log_likelihood_fn(clf.params, x, key)
    module = classifier.build_module(c)
    _, m = module.apply(clf.params, x, labels, False, rngs={"noise": key}, method="losses")
    nll = -np.asarray(ll)[np.arange(4), np.asarray(labels)]
    assert float(m["bits_per_dim"]) == pytest.approx(nll.mean() / (144 * np.log(2)) + 8, rel=1e-5)
    test = data.Split((np.asarray(x) * 255).astype(np.uint8), np.asarray(labels))
    ll_test = np.asarray(clf.log_likelihood_fn(clf.params, jnp.asarray(test.images, jnp.float32) / 255, key))
    r = clean.run(Context(clf, Request(), test, ll_test, {}, {}, key))
    q = np.asarray(jax.nn.logsumexp(ll_test, 1) - np.log(clf.num_classes))
    assert r["bits_per_dim"] == pytest.approx(float(np.mean(-q / (144 * np.log(2)) + 8)), rel=1e-5)
    with pytest.raises(ValueError, match="not a density"):
        classifier.create(smoke_config("demo"), jax.random.key(0)).density_dims
