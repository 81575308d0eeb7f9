"""Convolutions of two or more spatial axes as a last-axis im2col product with shifted
sums on its output side (`_split_im2col`), against lax convolutions."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from online_emulate.emulators._matmul_convs import im2col_conv
from online_emulate.emulators._ops import _shifted_matmul_conv
from online_emulate.emulators._split_im2col import split_im2col

NUMBERS = {2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}

# the quick loop (-m "not slow") keeps one square, one cropping and one 3-D case
_slow = pytest.mark.slow
ZERO_PADDED = [
    # (spatial shape, kernel, in, out, padding)
    ((7, 6), (3, 3), 5, 4, "SAME"),
    pytest.param((7, 6), (3, 3), 1, 26, "VALID", marks=_slow),
    pytest.param((8, 9), (5, 3), 3, 2, "SAME", marks=_slow),
    pytest.param((6, 7), (2, 3), 2, 3, ((1, 0), (1, 1)), marks=_slow),
    pytest.param((6, 7), (1, 3), 4, 4, ((0, 0), (1, 1)), marks=_slow),
    pytest.param((6, 7), (3, 1), 4, 1, ((1, 1), (0, 0)), marks=_slow),
    ((9, 8), (3, 3), 2, 2, ((2, -1), (0, 2))),  # negative padding crops
    pytest.param((5, 4, 6), (3, 3, 3), 3, 2, "SAME", marks=_slow),
    ((5, 6, 4), (3, 1, 2), 2, 3, ((1, 1), (0, 0), (1, 0))),
]


def _grads(fn, x, w):
    # a non-linear read of the output, so every output element weighs differently
    return jax.grad(lambda a, b: jnp.sum(jnp.sin(fn(a, b))), argnums=(0, 1))(x, w)


def _close(actual, desired):
    scale = float(jnp.max(jnp.abs(desired)))
    np.testing.assert_allclose(actual, desired, rtol=1e-5, atol=2e-6 * max(scale, 1.0))


def _operands(space, kernel, c_in, c_out, key=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(key))
    x = jax.random.normal(k1, (2, *space, c_in))
    w = jax.random.normal(k2, (*kernel, c_in, c_out)) / np.sqrt(np.prod(kernel) * c_in)
    return x, w


@pytest.mark.parametrize("space, kernel, c_in, c_out, padding", ZERO_PADDED)
def test_zero_padded_split_equals_the_convolution(space, kernel, c_in, c_out, padding):
    x, w = _operands(space, kernel, c_in, c_out)
    d = len(space)

    def conv(a, b):
        return jax.lax.conv_general_dilated(a, b, (1,) * d, padding,
                                            dimension_numbers=NUMBERS[d])

    explicit = jax.make_jaxpr(conv)(x, w).eqns[0].params["padding"]  # "SAME" -> numbers

    def split(a, b):
        return split_im2col(a, b, explicit)

    _close(jax.jit(split)(x, w), conv(x, w))
    for got, want in zip(jax.jit(lambda a, b: _grads(split, a, b))(x, w), _grads(conv, x, w)):
        _close(got, want)


def _wrapped_conv(a, b):
    kernel = b.shape[:-2]
    widths = [(0, 0)] + [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel] + [(0, 0)]
    return jax.lax.conv_general_dilated(jnp.pad(a, widths, mode="wrap"), b, (1,) * len(kernel),
                                        "VALID", dimension_numbers=NUMBERS[len(kernel)])


@pytest.mark.parametrize("space, kernel, c_in, c_out", [
    ((7, 6), (3, 3), 5, 4), ((8, 8), (2, 2), 1, 3),
    pytest.param((6, 9), (5, 3), 3, 3, marks=_slow), ((6, 7), (1, 3), 2, 2),
    pytest.param((5, 4, 6), (3, 3, 3), 2, 3, marks=_slow),
    pytest.param((4, 5, 6), (2, 3, 1), 3, 1, marks=_slow),
])
def test_periodic_split_equals_the_wrap_padded_convolution(space, kernel, c_in, c_out):
    # the built-in emulators' and the fused pdequinox paddings' convolution (checkpointed)
    x, w = _operands(space, kernel, c_in, c_out, key=1)
    _close(jax.jit(_shifted_matmul_conv)(x, w), _wrapped_conv(x, w))
    got = jax.jit(lambda a, b: _grads(_shifted_matmul_conv, a, b))(x, w)
    for g, want in zip(got, _grads(_wrapped_conv, x, w)):
        _close(g, want)


def test_im2col_conv_of_a_2d_convolution_builds_no_nine_fold_patches():
    # C_in = 5, 3x3 kernel: the full patch tensor would have 45 channels, the split has
    # 15 (three copies along the last axis); the product's output holds 3 x C_out
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 11, 12))  # NCHW
    w = jax.random.normal(jax.random.PRNGKey(3), (4, 5, 3, 3))  # OIHW

    def conv(a, b):
        return jax.lax.conv_general_dilated(a, b, (1, 1), "SAME")

    params = jax.make_jaxpr(conv)(x, w).eqns[0].params

    def rewritten(a, b):
        return im2col_conv(a, b, padding=params["padding"],
                           dimension_numbers=params["dimension_numbers"])

    _close(rewritten(x, w), conv(x, w))
    for fn in (rewritten, lambda a, b: _grads(rewritten, a, b)):
        text = jax.jit(fn).lower(x, w).compile().as_text()
        shapes = [tuple(map(int, s.split(","))) for s in re.findall(r"\[(\d+(?:,\d+)+)\]", text)]
        assert any(s[-1] == 15 for s in shapes)
        assert not any(45 in s for s in shapes)
