"""The shared formulas: their definitions, numpy in -> numpy out, and jit / vmap / grad."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gcj import conv as conv_lib
from gcj import ops

LL = np.array([[-1.0, -3.0, -2.0], [-5.0, -1.0, -4.0], [-2.0, -2.5, -0.5]])
Y = np.array([0, 0, 1])


def test_definitions_on_numpy_stay_numpy():
    np.testing.assert_array_equal(ops.pick(LL, Y), [-1.0, -5.0, -2.5])
    other, j = ops.best_other(LL, Y)
    np.testing.assert_array_equal(other, [-2.0, -1.0, -0.5])
    np.testing.assert_array_equal(j, [2, 1, 2])
    # rejected where max_y log p(x|y) < delta of the argmax class
    np.testing.assert_array_equal(ops.rejected(LL, np.array([-0.5, -2.0, -1.0])), [True, False, False])
    u, log_std = np.array([[0.3, -1.2]]), np.array([[0.1, -0.4]])
    want = stats.norm.logpdf(u * np.exp(log_std), scale=np.exp(log_std)).sum(-1)
    np.testing.assert_allclose(ops.gaussian_log_prob(u, log_std), want, rtol=1e-12)
    assert ops.bits_per_dim(np.array([-64 * math.log(2.0)]), 64)[0] == pytest.approx(9.0)
    for bpd in (1.4, 4.0, 9.0):  # its inverse
        assert ops.bits_per_dim(ops.log_p_at_bits_per_dim(bpd, 784), 784) == pytest.approx(bpd, abs=1e-12)
    np.testing.assert_allclose(ops.entropy(np.log(np.full((2, 4), 0.25))), math.log(4), rtol=1e-12)
    assert ops.entropy(np.array([[0.0, -np.inf]]))[0] == 0.0  # 0 log 0 = 0
    for v in (ops.pick(LL, Y), ops.best_other(LL, Y)[0], ops.rejected(LL, np.zeros(3)), ops.entropy(LL),
              ops.gaussian_log_prob(u, log_std)):
        assert isinstance(v, np.ndarray)


def test_one_threshold_acts_on_log_p_x():
    """A threshold [] is paper 001's, on the marginal log p(x) = logsumexp_y log p(x|y) - log C; a
    [C] one is paper 000's, on the predicted class's log p(x|y) (numpy and jitted alike)."""
    log_px = np.log(np.exp(LL).mean(1))  # -1.9, -2.0, -1.3 roughly
    t = np.float32(np.sort(log_px)[:2].mean())  # exactly one image below it
    np.testing.assert_allclose(ops.acceptance_margin(LL, t, Y), log_px - t, atol=1e-6)
    np.testing.assert_array_equal(ops.rejected(LL, t), log_px < t)
    assert ops.rejected(LL, t).sum() == 1 and isinstance(ops.rejected(LL, t), np.ndarray)
    np.testing.assert_array_equal(jax.jit(ops.rejected)(jnp.asarray(LL), jnp.float32(t)), log_px < t)
    np.testing.assert_array_equal(ops.rejected(LL, np.float32(-np.inf)), [False] * 3)
    np.testing.assert_allclose(ops.acceptance_margin(LL, np.array([-0.5, -2.0, -1.0]), Y), [-0.5, -4.5, -0.5])


def test_jit_vmap_grad_agree_with_numpy():
    ll, y = jnp.asarray(LL), jnp.asarray(Y)
    np.testing.assert_allclose(jax.jit(ops.pick)(ll, y), ops.pick(LL, Y))
    np.testing.assert_allclose(jax.vmap(lambda r, t: ops.pick(r[None], t[None])[0])(ll, y), ops.pick(LL, Y))
    np.testing.assert_allclose(jax.jit(lambda a, b: ops.best_other(a, b)[0])(ll, y), ops.best_other(LL, Y)[0])
    np.testing.assert_array_equal(jax.jit(ops.rejected)(ll, jnp.full(3, -1.5)), ops.rejected(LL, np.full(3, -1.5)))
    # d/du of the standard normal log-density is -u; of the entropy at the uniform posterior, 0
    u = jnp.array([[0.3, -1.2, 2.0]])
    np.testing.assert_allclose(jax.grad(lambda v: ops.gaussian_log_prob(v).sum())(u), -u, atol=1e-6)
    g = jax.grad(lambda logits: ops.entropy(jax.nn.log_softmax(logits)).sum())(jnp.zeros((1, 5)))
    np.testing.assert_allclose(g, 0.0, atol=1e-6)


_DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("reverse_only", [False, True])
@pytest.mark.parametrize("shape,k,strides,padding,lhs_dilation", [
    ((3, 8, 8, 5), 3, (1, 1), ((1, 1), (1, 1)), None),
    ((3, 9, 7, 5), 3, (2, 2), "SAME", None),
    ((2, 7, 7, 4), 4, (2, 1), "VALID", None),
    ((2, 5, 6, 4), 3, (1, 1), ((2, 0), (1, 1)), (2, 2)),
])
def test_conv_is_lax_conv_with_the_same_first_and_second_derivatives(shape, k, strides, padding, lhs_dilation,
                                                                    reverse_only):
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (k, k, shape[-1], 6))
    ours = functools.partial(conv_lib.conv_general_dilated, reverse_only=reverse_only)
    convs = [lambda x, w, c=c: c(x, w, strides, padding, lhs_dilation, dimension_numbers=_DN)
             for c in (jax.lax.conv_general_dilated, ours)]
    e = jax.random.normal(jax.random.key(2), convs[0](x, w).shape)

    def first(c):  # a loss of the convolution
        return lambda x, w: jnp.sum(jnp.sin(c(x, w)) * e)

    def second(c):  # a loss of its input gradient: reverse over reverse, as the ODE's divergence
        return lambda x, w: jnp.sum(jax.vjp(lambda v: jnp.tanh(c(v, w)), x)[1](e)[0] ** 2)

    ref, new = (jax.jit(c)(x, w) for c in convs)
    np.testing.assert_allclose(new, ref, rtol=1e-5, atol=1e-5)
    for order in (first, second):
        for a, b in zip(*(jax.jit(jax.grad(order(c), (0, 1)))(x, w) for c in convs)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))
    per_sample = jax.vmap(jax.grad(lambda xi, ei: jnp.sum(jnp.sin(convs[1](xi[None], w)) * ei[None])))(x, e)
    np.testing.assert_allclose(per_sample, jax.grad(first(convs[0]))(x, w), rtol=1e-4, atol=1e-4)
    if not reverse_only:  # forward mode, and forward over reverse
        v = jax.random.normal(jax.random.key(3), x.shape)
        for a, b in zip(*(jax.jvp(first(c), (x, w), (v, w)) for c in convs)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
        hvp = [jax.jvp(jax.grad(first(c)), (x, w), (v, w))[1] for c in convs]
        np.testing.assert_allclose(hvp[1], hvp[0], rtol=1e-4, atol=1e-4 * float(jnp.abs(hvp[0]).max()))


def test_conv_input_gradients_keep_the_fast_kernel_layout_inside_loops(monkeypatch):
    """XLA:CPU puts convolutions into its fast layout only outside loops: every convolution of a
    gradient through a scan must already be NHWC/HWIO, as JAX's own rule does not give (first
    order by default, second order, the gradient of a vjp, with ``reverse_only``)."""
    x, w = jnp.ones((2, 6, 6, 3)), jnp.ones((4, 3, 3, 3, 3)) * 0.1

    def loss(conv, second):
        def step(h, wi):
            out, vjp = jax.vjp(lambda v: jnp.tanh(conv(v, wi, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)), h)
            return h + 0.1 * out + (0.1 * vjp(jnp.ones_like(h))[0] if second else 0.0), None
        return lambda x: jnp.sum(jax.lax.scan(step, x, w)[0] ** 2)

    def kernel_layouts(conv, second):
        text = jax.jit(jax.grad(loss(conv, second))).lower(x).as_text()
        return {line.split("x[", 1)[1].split("]", 1)[0] for line in text.splitlines() if "convolution" in line and "x[" in line}

    assert kernel_layouts(conv_lib.conv_general_dilated, second=False) == {"0, 1, i, o"}
    assert kernel_layouts(functools.partial(conv_lib.conv_general_dilated, reverse_only=True), second=True) == {"0, 1, i, o"}
    for second in (False, True):  # what the fix is for
        assert "0, 1, o, i" in kernel_layouts(jax.lax.conv_general_dilated, second)
    # on a backend outside CUSTOM_GRADIENT_BACKENDS (GPU, TPU): lax's convolutions, its gradients
    monkeypatch.setattr(conv_lib, "CUSTOM_GRADIENT_BACKENDS", frozenset({"gpu", "tpu"}))
    assert "0, 1, o, i" in kernel_layouts(conv_lib.conv_general_dilated, second=False)
    assert "0, 1, o, i" in kernel_layouts(functools.partial(conv_lib.conv_general_dilated, reverse_only=True), True)
    monkeypatch.undo()
    # anything else falls back to lax (here: feature groups)
    depthwise = w[0][:, :, :1]
    np.testing.assert_array_equal(
        conv_lib.conv_general_dilated(x, depthwise, (1, 1), "SAME", dimension_numbers=_DN, feature_group_count=3),
        jax.lax.conv_general_dilated(x, depthwise, (1, 1), "SAME", dimension_numbers=_DN, feature_group_count=3))
