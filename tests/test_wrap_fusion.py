"""Periodic paddings of user models folded into the matrix-product convolution."""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pdequinox as pdeqx
import pytest

from online_emulate.emulators._matmul_convs import (
    _Rewrite,
    _im2col,
    _rewritable,
    matmul_convolutions,
)

# today's rewrite without the fusion: im2col of the padded copy
_UNFUSED = _Rewrite(wants=_rewritable, replace=_im2col, inline_etp=True)

ARCHS = [
    pytest.param("ConvNet", {"hidden_channels": 5, "depth": 2}, id="ConvNet"),
    # the ResNets' 9-16 s of compilation belong to the full run (the quick loop keeps the
    # ConvNet, in 1-D and 2-D)
    pytest.param("ClassicResNet", {"hidden_channels": 5, "num_blocks": 1}, marks=pytest.mark.slow,
                 id="ClassicResNet"),
    pytest.param("ModernResNet", {"hidden_channels": 5, "num_blocks": 1}, marks=pytest.mark.slow,
                 id="ModernResNet"),
    # the UNets compile for 25-45 s each on 2 cores
    pytest.param("ClassicUNet", {"hidden_channels": 4, "num_levels": 1}, marks=pytest.mark.slow,
                 id="ClassicUNet"),
    pytest.param("ModernUNet", {"hidden_channels": 4, "num_levels": 1}, marks=pytest.mark.slow,
                 id="ModernUNet"),
]


def _batched(name, options, d):
    net = getattr(pdeqx.arch, name)(d, 1, 1, boundary_mode="periodic",
                                   key=jax.random.PRNGKey(0), **options)
    params, static = eqx.partition(net, eqx.is_array)

    def f(p, u):
        return jax.vmap(eqx.combine(p, static))(u)

    u = jax.random.normal(jax.random.PRNGKey(1), (3, 1) + ((16,) if d == 1 else (12, 12)))
    return f, params, u


def _loss(f):
    return lambda p, u: jnp.sum(jnp.sin(f(p, u)))


def _close(actual, desired):
    scale = float(jnp.max(jnp.abs(desired)))
    np.testing.assert_allclose(actual, desired, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("d", [1, pytest.param(2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name, options", ARCHS)
def test_fused_pdequinox_nets_keep_outputs_and_gradients(name, options, d):
    f, params, u = _batched(name, options, d)
    _close(jax.jit(matmul_convolutions(f))(params, u), f(params, u))
    want = jax.grad(_loss(f))(params, u)
    got = jax.jit(jax.grad(_loss(matmul_convolutions(f))))(params, u)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        _close(g, w)


def _has_extent(text, extent):
    """Whether an HLO text holds an array of rank >= 3 with an axis of `extent`."""
    shapes = (tuple(map(int, s.split(","))) for s in re.findall(r"\[(\d+(?:,\d+)+)\]", text))
    return any(len(s) >= 3 and extent in s for s in shapes)


def _compiled(fn, *args):
    compiled = jax.jit(fn).lower(*args).compile()
    cost = compiled.cost_analysis()
    return compiled.as_text(), (cost[0] if isinstance(cost, list) else cost)["bytes accessed"]


@pytest.mark.parametrize("d", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_the_padded_copy_is_gone_from_the_compiled_step(d):
    # N = 16 (1-D) or 12 (2-D), kernel 3: the padded copy is the only array with an
    # axis of N + 2 (the channel counts keep every other extent off it)
    f, params, u = _batched("ConvNet", {"hidden_channels": 5, "depth": 2}, d)
    extent = u.shape[-1] + 2
    text, _ = _compiled(jax.value_and_grad(_loss(matmul_convolutions(f))), params, u)
    text_before, _ = _compiled(jax.value_and_grad(_loss(_UNFUSED(f))), params, u)
    assert _has_extent(text_before, extent)  # the check sees the copy where there is one
    assert not _has_extent(text, extent)
    # the training step (value and gradient) reads and writes less without it; in 2-D
    # the forward pass alone does not (the split im2col's output-side rolls read a
    # little more than slices of a padded copy), the backward pass makes up for it
    _, fused_bytes = _compiled(jax.value_and_grad(_loss(matmul_convolutions(f))), params, u)
    _, unfused_bytes = _compiled(jax.value_and_grad(_loss(_UNFUSED(f))), params, u)
    assert fused_bytes < unfused_bytes


def test_a_padding_the_convolution_does_not_read_whole_stays_an_im2col():
    # wrap-padded by 2 cells each side, then a 3-wide VALID convolution: not a 'same'
    # periodic convolution, so the padded copy is convolved as before
    w = jax.random.normal(jax.random.PRNGKey(2), (4, 1, 3))

    def f(x):
        padded = jnp.concatenate([x[..., -2:], x, x[..., :2]], axis=-1)
        return jax.lax.conv_general_dilated(padded, w, (1,), "VALID")

    x = jax.random.normal(jax.random.PRNGKey(3), (2, 1, 10))
    out = jax.jit(matmul_convolutions(f))(x)
    assert out.shape == (2, 4, 12)
    _close(out, f(x))


def test_a_channel_last_wrap_pad_with_a_same_convolution_is_fused():
    # jnp.pad(mode="wrap") (what pdequinox calls), NHC layout, a 5-wide kernel
    w = jax.random.normal(jax.random.PRNGKey(4), (5, 3, 4))

    def f(x, w):
        padded = jnp.pad(x, ((0, 0), (2, 2), (0, 0)), mode="wrap")
        return jax.lax.conv_general_dilated(padded, w, (1,), "VALID",
                                            dimension_numbers=("NHC", "HIO", "NHC"))

    x = jax.random.normal(jax.random.PRNGKey(5), (2, 10, 3))
    _close(jax.jit(matmul_convolutions(f))(x, w), f(x, w))
    _close(jax.grad(lambda w: jnp.sum(jnp.sin(matmul_convolutions(f)(x, w))))(w),
           jax.grad(lambda w: jnp.sum(jnp.sin(f(x, w))))(w))
    # XLA fuses a single layer's padding into its slices either way: look before XLA,
    # at the lowered program (dead code already dropped)
    assert "2x14x3" in jax.jit(_UNFUSED(f)).lower(x, w).as_text()
    assert "2x14x3" not in jax.jit(matmul_convolutions(f)).lower(x, w).as_text()
