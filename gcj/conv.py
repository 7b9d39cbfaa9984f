"""Convolution kernels written around an XLA:CPU limit (``conv_general_dilated``: its docstring
says which), and ``Conv``, flax's ``nn.Conv`` with them: the families' convolutions.
``bench/attack_speed.py`` and ``bench/score_gradient.py`` measure the gain."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

_NHWC = ("NHWC", "HWIO", "NHWC")
# where the custom input gradient was measured to beat XLA's own (bench/attack_speed.py,
# bench/score_gradient.py); GPUs and TPUs canonicalize convolutions inside loops themselves and
# keep lax's (unmeasured there: no accelerator was at hand)
CUSTOM_GRADIENT_BACKENDS = frozenset({"cpu"})


def _conv_nhwc(x, w, strides, padding, lhs_dilation):
    return jax.lax.conv_general_dilated(x, w, strides, padding, lhs_dilation,
                                        dimension_numbers=_NHWC)


def _input_gradient(conv, x_shape, w, g, strides, padding, lhs_dilation):
    """The input gradient of an NHWC/HWIO convolution of ``x_shape`` by ``w`` for the output
    cotangent ``g``, as JAX's own transpose rule computes it (stride <-> input dilation, the
    padding of the full correlation), but with the kernel flipped and its in/out axes swapped in
    the array, so that it is an NHWC/HWIO convolution again (``conv``)."""
    k, n_in, n_out = w.shape[:2], x_shape[1:3], g.shape[1:3]
    pads = []
    for i in range(2):
        before = k[i] - 1 - padding[i][0]
        after = ((n_in[i] - 1) * lhs_dilation[i] + k[i]) - ((n_out[i] - 1) * strides[i] + 1) - before
        pads.append((before, after))
    return conv(g, jnp.swapaxes(w[::-1, ::-1], 2, 3), lhs_dilation, tuple(pads), strides)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, padding, lhs_dilation):
    return _conv_nhwc(x, w, strides, padding, lhs_dilation)


def _conv_jvp(strides, padding, lhs_dilation, primals, tangents):
    (x, w), (dx, dw) = primals, tangents
    y = _conv(x, w, strides, padding, lhs_dilation)
    # the input tangent as the transpose of the input gradient's convolution: reverse mode
    # transposes it back into that convolution (forward mode evaluates JAX's transpose of it)
    grad = lambda g: _input_gradient(_conv, x.shape, w, g, strides, padding, lhs_dilation)  # noqa: E731
    terms = []  # (the rule is called only when dx or dw is nonzero)
    if not isinstance(dx, SymbolicZero):
        terms.append(jax.linear_transpose(grad, jax.ShapeDtypeStruct(y.shape, y.dtype))(dx)[0])
    if not isinstance(dw, SymbolicZero):
        terms.append(_conv_nhwc(x, dw, strides, padding, lhs_dilation))
    return y, sum(terms[1:], terms[0])


_conv.defjvp(_conv_jvp, symbolic_zeros=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_reverse(x, w, strides, padding, lhs_dilation):
    return _conv_nhwc(x, w, strides, padding, lhs_dilation)


def _conv_reverse_fwd(x, w, strides, padding, lhs_dilation):
    # whether w needs a cotangent travels as the (static) length of an empty array
    flag = jnp.zeros((int(w.perturbed),), x.value.dtype)
    return _conv_reverse(x.value, w.value, strides, padding, lhs_dilation), (x.value, w.value, flag)


def _conv_reverse_bwd(strides, padding, lhs_dilation, res, g):
    x, w, flag = res
    gx = _input_gradient(_conv_reverse, x.shape, w, g, strides, padding, lhs_dilation)
    if flag.shape[0] == 0:
        return gx, None
    _, w_vjp = jax.vjp(lambda v: _conv_nhwc(x, v, strides, padding, lhs_dilation), w)
    return gx, w_vjp(g)[0]


_conv_reverse.defvjp(_conv_reverse_fwd, _conv_reverse_bwd, symbolic_zeros=True)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, *,
                         reverse_only: bool = False, **kwargs):
    """``jax.lax.conv_general_dilated`` whose input gradient is fast inside XLA:CPU loops
    (``Conv``: ``nn.Conv`` with it).

    XLA:CPU brings convolutions into the layout its fast kernels take (NHWC input, HWIO kernel)
    only at the top level of a program, not inside ``while`` loops (jax#12868). The input gradient
    that JAX derives for an NHWC/HWIO convolution names its kernel HWOI, so in a loop body (an
    attack's iterations, an ODE solve) XLA emits it as a naive loop nest, 10-20x slower
    (bench/score_gradient.py). Here the input gradient is an NHWC/HWIO convolution of the flipped,
    transposed kernel; values and gradients equal JAX's.

    - default: a ``jax.custom_jvp``; forward mode (``jax.jvp``, ``jax.jacfwd``) works as before,
      reverse mode gets the fast input gradient (first order).
    - ``reverse_only=True``: a ``jax.custom_vjp`` whose input gradient is again this convolution,
      so reverse over reverse (the gradient of a vjp: the score model's Hutchinson divergence
      under an attack) stays fast at every order; no forward mode.

    2-D NHWC/HWIO convolutions without kernel dilation or groups take this path, on the backends
    in ``CUSTOM_GRADIENT_BACKENDS`` (where it was measured to win: the CPU); any other falls back
    to ``jax.lax.conv_general_dilated``.
    """
    ones = (1, 1)
    fast = (jax.default_backend() in CUSTOM_GRADIENT_BACKENDS and lhs.ndim == 4 and feature_group_count == 1 and precision is None and not kwargs
            and tuple(rhs_dilation or ones) == ones
            and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
            == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
    if not fast:
        return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                            dimension_numbers, feature_group_count,
                                            precision=precision, **kwargs)
    strides, lhs_dilation = tuple(window_strides), tuple(lhs_dilation or ones)
    if isinstance(padding, str):
        dilated = [(n - 1) * d + 1 for n, d in zip(lhs.shape[1:3], lhs_dilation)]
        padding = jax.lax.padtype_to_pads(dilated, rhs.shape[:2], strides, padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    return (_conv_reverse if reverse_only else _conv)(lhs, rhs, strides, padding, lhs_dilation)


# flax's nn.Conv with it (the families' convolutions; the score U-Net takes reverse_only=True)
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
