"""Convolutions of user models evaluated as matrix products, against lax convolutions."""

import brainstate
import braintrace
import equinox as eqx
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from online_emulate.emulators import adapt, lax_conv_ops
from online_emulate.emulators._matmul_convs import im2col_conv, kernel_space_first, matmul_convolutions


def _primitives(fn, *args):
    names = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            names.add(eqn.primitive.name)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return names


def _convolutions(fn, *args):
    """The parameters of every conv_general_dilated in fn's jaxpr (nested ones too)."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                found.append(eqn.params)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


CASES = [
    # (lhs shape, rhs shape, dimension numbers, padding)
    ((3, 2, 11), (4, 2, 3), ("NCH", "OIH", "NCH"), "SAME"),
    ((3, 11, 2), (3, 2, 4), ("NHC", "HIO", "NHC"), "VALID"),
    ((3, 2, 11), (4, 2, 2), ("NCH", "OIH", "NCH"), ((1, 0),)),
    ((3, 2, 11), (4, 2, 3), ("NCH", "OIH", "NCH"), ((2, -1),)),
    # the quick loop keeps one 2-D case; the channel-first 2-D and the 3-D one run in full
    pytest.param((2, 3, 7, 6), (5, 3, 3, 2), ("NCHW", "OIHW", "NCHW"), "SAME",
                 marks=pytest.mark.slow),
    ((2, 7, 6, 3), (3, 2, 3, 5), ("NHWC", "HWIO", "NHWC"), ((1, 1), (0, 1))),
    pytest.param((2, 3, 5, 4, 4), (2, 3, 3, 1, 2), ("NCDHW", "OIDHW", "NCDHW"), "SAME",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("lhs_shape, rhs_shape, dims, padding", CASES)
def test_im2col_equals_the_convolution_in_values_and_gradients(lhs_shape, rhs_shape, dims, padding):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    lhs, rhs = jax.random.normal(k1, lhs_shape), jax.random.normal(k2, rhs_shape)
    strides = (1,) * (len(lhs_shape) - 2)

    def conv(a, b):
        return jax.lax.conv_general_dilated(a, b, strides, padding, dimension_numbers=dims)

    eqn = jax.make_jaxpr(conv)(lhs, rhs).eqns[0]
    p = eqn.params

    def mm(a, b):
        return im2col_conv(a, b, padding=p["padding"], dimension_numbers=p["dimension_numbers"])

    np.testing.assert_allclose(mm(lhs, rhs), conv(lhs, rhs), rtol=1e-5, atol=1e-5)
    g_mm = jax.jit(jax.grad(lambda a, b: jnp.sum(jnp.sin(mm(a, b))), argnums=(0, 1)))(lhs, rhs)
    g_cv = jax.grad(lambda a, b: jnp.sum(jnp.sin(conv(a, b))), argnums=(0, 1))(lhs, rhs)
    for a, b in zip(g_mm, g_cv):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _eqx_net(key=0):
    keys = jax.random.split(jax.random.PRNGKey(key), 3)
    conv = lambda i, o, k: eqx.nn.Conv1d(i, o, 3, padding="SAME", padding_mode="CIRCULAR", key=k)  # noqa: E731
    return eqx.nn.Sequential([conv(1, 6, keys[0]), eqx.nn.Lambda(jax.nn.relu),
                              conv(6, 6, keys[1]), eqx.nn.Lambda(jnp.tanh), conv(6, 1, keys[2])])


def test_an_equinox_network_loses_its_convolutions_not_its_values_or_gradients():
    net = _eqx_net()
    params, static = eqx.partition(net, eqx.is_inexact_array)
    u = jax.random.normal(jax.random.PRNGKey(1), (4, 1, 16))

    def batch_apply(p, x):
        return jax.vmap(eqx.combine(p, static))(x)

    fast = matmul_convolutions(batch_apply)
    assert "conv_general_dilated" in _primitives(batch_apply, params, u)
    assert "conv_general_dilated" not in _primitives(fast, params, u)
    np.testing.assert_allclose(fast(params, u), batch_apply(params, u), rtol=1e-5, atol=1e-6)
    loss = lambda f: lambda p: jnp.mean(f(p, f(p, u)) ** 2)  # noqa: E731  (two steps)
    g_fast, g_ref = jax.jit(jax.grad(loss(fast)))(params), jax.jit(jax.grad(loss(batch_apply)))(params)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g_fast, g_ref)


def test_nested_jit_is_rewritten_and_strided_convolutions_are_kept():
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 2, 3))
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 2, 12))

    @jax.jit
    def inner(x):
        return jax.lax.conv_general_dilated(x, w, (1,), "SAME")

    w2 = jax.random.normal(jax.random.PRNGKey(4), (2, 3, 3))

    def strided(x):
        return jax.lax.conv_general_dilated(inner(x), w2, (2,), "VALID")

    fast = matmul_convolutions(strided)
    eqns = [e for e in jax.make_jaxpr(fast)(x).eqns if e.primitive.name == "conv_general_dilated"]
    assert len(eqns) == 1 and eqns[0].params["window_strides"] == (2,)
    np.testing.assert_allclose(fast(x), strided(x), rtol=1e-5, atol=1e-5)
    no_conv = lambda x: jnp.tanh(x) * 2  # noqa: E731
    np.testing.assert_array_equal(matmul_convolutions(no_conv)(x), no_conv(x))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the rewrite is for XLA:CPU")
def test_adapters_rewrite_user_convolutions_on_cpu_except_for_kfac():
    net = _eqx_net()
    adapter = adapt(net, state_ndim=2)
    u = jax.random.normal(jax.random.PRNGKey(1), (4, 1, 16))
    assert "conv_general_dilated" not in _primitives(adapter.apply, adapter.params, u)
    assert "conv_general_dilated" not in _primitives(adapter.apply, adapter.params, u[0])
    with lax_conv_ops():  # K-FAC's graph matcher needs the convolution primitives
        assert "conv_general_dilated" in _primitives(adapter.apply, adapter.params, u)
    np.testing.assert_allclose(adapter.apply(adapter.params, u), jax.vmap(net)(u), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the rewrite is for XLA:CPU")
def test_the_same_jitted_apply_is_traced_again_in_another_mode():
    # jax caches traces by function: the mode must be part of its cache key, or a
    # function jitted outside lax_conv_ops() would hand K-FAC its matrix products
    adapter = adapt(_eqx_net(), state_ndim=2)
    u = jax.random.normal(jax.random.PRNGKey(1), (4, 1, 16))
    fast = jax.jit(adapter.apply)

    def convolutions(jitted):
        return jitted.lower(adapter.params, u).as_text().count("stablehlo.convolution")

    assert convolutions(fast) == 0
    with lax_conv_ops():
        assert convolutions(fast) == 3
        with_convs = fast(adapter.params, u)
    assert convolutions(fast) == 0
    np.testing.assert_allclose(fast(adapter.params, u), with_convs, rtol=1e-5, atol=1e-6)



class _UserModule(brainstate.nn.Module):
    """A user's brainstate network: a braintrace ETP convolution with a bias (an
    `etp_conv` op), a plain brainstate convolution (lax), a strided ETP one (kept)."""

    def __init__(self):
        super().__init__()
        self.etp = braintrace.nn.Conv1d((16, 1), 5, 3, padding="SAME", b_init=0.3 * jax.random.normal(jax.random.PRNGKey(5), (5,)))
        self.lax = brainstate.nn.Conv1d((16, 5), 5, 3, padding="SAME")
        self.strided = braintrace.nn.Conv1d((16, 5), 1, 2, stride=2, padding="SAME")
        self.up = brainstate.nn.Linear(8, 16)

    def __call__(self, x):  # (B, 16, 1), channel-last
        h = jnp.tanh(self.lax(jnp.tanh(self.etp(x))))
        return self.up(self.strided(h)[..., 0])[..., None]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the rewrite is for XLA:CPU")
# 5 s: the full suite (the equinox network above runs in the quick loop)
@pytest.mark.slow
def test_user_brainstate_modules_lose_their_convolutions_etp_ops_included():
    brainstate.random.seed(3)
    adapter = adapt(_UserModule(), state_ndim=2)
    u = jax.random.normal(jax.random.PRNGKey(1), (4, 1, 16))
    with lax_conv_ops():  # the module as written: ETP ops and lax convolutions
        assert {"etp_conv", "conv_general_dilated"} <= _primitives(adapter.apply, adapter.params, u)
    assert "etp_conv" not in _primitives(adapter.apply, adapter.params, u)
    convs = _convolutions(adapter.apply, adapter.params, u)
    assert [c["window_strides"] for c in convs] == [(2,)]  # only the strided one is kept

    def loss(p):
        return jnp.mean(adapter.apply(p, adapter.apply(p, u)) ** 2)

    def ref_loss(p):
        with lax_conv_ops():
            return loss(p)

    np.testing.assert_allclose(jax.jit(loss)(adapter.params), jax.jit(ref_loss)(adapter.params), rtol=1e-5)
    g, ref_g = jax.jit(jax.grad(loss))(adapter.params), jax.jit(jax.grad(ref_loss))(adapter.params)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref_g)):
        assert float(jnp.abs(b).max()) > 0
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_kernel_space_first_reorders_kernels_and_keeps_outputs():
    w = jax.random.normal(jax.random.PRNGKey(2), (4, 2, 3, 3))  # OIHW
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 2, 6, 5))

    def conv(x):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"))

    (eqn,) = [e for e in jax.make_jaxpr(kernel_space_first(conv))(x).eqns if e.primitive.name == "conv_general_dilated"]
    assert tuple(eqn.params["dimension_numbers"].rhs_spec) == (3, 2, 0, 1)  # HWIO
    np.testing.assert_allclose(kernel_space_first(conv)(x), conv(x), rtol=1e-6, atol=1e-6)
    hwio = lambda x: jax.lax.conv_general_dilated(x, jnp.transpose(w, (2, 3, 1, 0)), (1, 1), "SAME", dimension_numbers=("NCHW", "HWIO", "NCHW"))  # noqa: E731
    # a kernel already (*space, in, out) is left as written
    assert str(jax.make_jaxpr(kernel_space_first(hwio))(x)) == str(jax.make_jaxpr(hwio)(x))
