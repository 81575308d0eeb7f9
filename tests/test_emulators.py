import jax
import jax.numpy as jnp
import numpy as np
import pytest

from online_emulate.emulators import (
    ConvNet,
    LinearStencil,
    functional,
    get_params,
    lax_ops,
    set_params,
)


def _hand_periodic_conv_1d(u, w):
    """u (C_in, N), w (k, C_in, C_out) -> (C_out, N) with numpy loops."""
    k, cin, cout = w.shape
    n = u.shape[-1]
    left = (k - 1) // 2
    out = np.zeros((cout, n))
    for o in range(cout):
        for s in range(n):
            for j in range(k):
                for i in range(cin):
                    out[o, s] += w[j, i, o] * u[i, (s + j - left) % n]
    return out


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4])
def test_linear_stencil_matches_hand_periodic_conv(kernel_size):
    em = LinearStencil(1, 2, 3, kernel_size=kernel_size, key=3)
    u = jax.random.normal(jax.random.PRNGKey(0), (2, 7))
    w = np.asarray(em.conv.weight.value)
    np.testing.assert_allclose(em(u), _hand_periodic_conv_1d(np.asarray(u), w), atol=1e-5)


def test_kernel_two_is_forward_upwind_stencil():
    # with stencil [a, b] the update is a*u_i + b*u_{i+1} (trainax quickstart layout)
    em = LinearStencil(1, 1, 1, kernel_size=2)
    set_params(em, {"conv": {"weight": jnp.array([0.25, 0.75]).reshape(2, 1, 1)}})
    u = jnp.arange(5.0)[None]
    expected = 0.25 * u + 0.75 * jnp.roll(u, -1, axis=-1)
    np.testing.assert_allclose(em(u), expected, atol=1e-6)
    np.testing.assert_allclose(em.stencil[0, 0], [0.25, 0.75])


def test_linear_stencil_2d_matches_separate_shift_sum():
    em = LinearStencil(2, 1, 1, kernel_size=3, use_bias=True, key=1)
    w = np.asarray(em.conv.weight.value)[..., 0, 0]
    b = float(em.conv.bias.value[0])
    u = jax.random.normal(jax.random.PRNGKey(2), (1, 5, 6))
    expected = b + sum(
        w[i, j] * jnp.roll(u, (-(i - 1), -(j - 1)), axis=(-2, -1))
        for i in range(3)
        for j in range(3)
    )
    np.testing.assert_allclose(em(u), expected, atol=1e-5)


@pytest.mark.parametrize("dims", [1, 2, pytest.param(3, marks=pytest.mark.slow)])
def test_convnet_shapes_batch_and_single(dims):
    em = ConvNet(dims, 2, 2, hidden_channels=4, depth=3, key=0)
    single = jnp.ones((2,) + (6,) * dims)
    batch = jnp.ones((3, 2) + (6,) * dims)
    assert em(single).shape == single.shape
    assert em(batch).shape == batch.shape
    np.testing.assert_allclose(em(batch)[1], em(single), atol=1e-6)


def test_convnet_residual_adds_input():
    em = ConvNet(1, 1, 1, depth=2, residual=True, key=0)
    zero = jax.tree_util.tree_map(jnp.zeros_like, get_params(em))
    set_params(em, zero)
    u = jax.random.normal(jax.random.PRNGKey(0), (1, 9))
    np.testing.assert_allclose(em(u), u)


def test_seed_reproducible_and_distinct():
    a, b, c = (ConvNet(1, 1, 1, key=k) for k in (5, 5, 6))
    pa, pb, pc = map(get_params, (a, b, c))
    jax.tree_util.tree_map(np.testing.assert_array_equal, pa, pb)
    assert not np.allclose(pa["layers"][0]["weight"], pc["layers"][0]["weight"])
    d = ConvNet(1, 1, 1, key=jax.random.PRNGKey(5))
    jax.tree_util.tree_map(np.testing.assert_array_equal, pa, get_params(d))


def test_functional_equals_module_and_lax_equals_etp():
    em = ConvNet(1, 2, 2, hidden_channels=5, depth=2, activation=jnp.tanh, key=2)
    apply, params = functional(em)
    u = jax.random.normal(jax.random.PRNGKey(1), (4, 2, 16))
    etp = em(u)
    with lax_ops():
        plain = em(u)
    np.testing.assert_allclose(apply(params, u), etp, atol=1e-6)
    np.testing.assert_allclose(plain, etp, atol=1e-6)
    # vmap over single samples gives the batched result
    np.testing.assert_allclose(jax.vmap(lambda x: apply(params, x))(u), etp, atol=1e-6)


def test_functional_grad_matches_finite_difference():
    em = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    apply, params = functional(em)
    u = jax.random.normal(jax.random.PRNGKey(1), (3, 1, 8))

    def loss(p):
        return jnp.sum(apply(p, u) ** 2)

    g = jax.jit(jax.grad(loss))(params)["conv"]["weight"]
    w = params["conv"]["weight"]
    eps = 1e-3
    for idx in np.ndindex(w.shape):
        wp = {"conv": {"weight": w.at[idx].add(eps)}}
        wm = {"conv": {"weight": w.at[idx].add(-eps)}}
        fd = (loss(wp) - loss(wm)) / (2 * eps)
        np.testing.assert_allclose(g[idx], fd, rtol=2e-2)


def test_set_params_roundtrip_and_apply_does_not_mutate():
    em = ConvNet(1, 1, 1, key=0)
    apply, params = functional(em)
    doubled = jax.tree_util.tree_map(lambda x: 2 * x, params)
    apply(doubled, jnp.ones((1, 8)))
    jax.tree_util.tree_map(np.testing.assert_array_equal, get_params(em), params)
    set_params(em, doubled)
    jax.tree_util.tree_map(np.testing.assert_array_equal, get_params(em), doubled)


def test_set_params_rejects_wrong_structure_and_shape():
    em = LinearStencil(1, 1, 1, kernel_size=2)
    with pytest.raises(ValueError, match="params"):
        set_params(em, {"other": jnp.ones(2)})
    with pytest.raises(ValueError, match="shape"):
        set_params(em, {"conv": {"weight": jnp.ones((3, 1, 1))}})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_spatial_dims=4, in_channels=1, out_channels=1), "num_spatial_dims"),
        (dict(num_spatial_dims=1, in_channels=0, out_channels=1), "in_channels"),
        (dict(num_spatial_dims=1, in_channels=1, out_channels=1, depth=0), "depth"),
        (dict(num_spatial_dims=1, in_channels=1, out_channels=1, kernel_size=0), "kernel_size"),
        (dict(num_spatial_dims=1, in_channels=1, out_channels=2, residual=True), "residual"),
    ],
)
def test_convnet_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvNet(**kwargs)


def test_bad_key_and_bad_input_shape():
    with pytest.raises(TypeError, match="key"):
        LinearStencil(1, 1, 1, key="seed")
    em = LinearStencil(1, 2, 2)
    with pytest.raises(ValueError, match="channel"):
        em(jnp.ones((3, 8)))
    with pytest.raises(ValueError, match="axes"):
        em(jnp.ones((8,)))
    with pytest.raises(TypeError, match="emulator"):
        functional(lambda u: u)


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4])
def test_pure_apply_matches_hand_periodic_conv(kernel_size):
    """The pure apply path (im2col matrix product for 1-D kernels) against numpy loops,
    on one sample, on a batch and on the batch under vmap and grad."""
    em = LinearStencil(1, 2, 3, kernel_size=kernel_size, use_bias=True, key=5)
    apply, params = functional(em)
    w = np.asarray(params["conv"]["weight"])
    b = np.asarray(params["conv"]["bias"])
    u = jax.random.normal(jax.random.PRNGKey(1), (4, 2, 9))
    expected = np.stack([_hand_periodic_conv_1d(np.asarray(x), w) + b[:, None] for x in u])
    np.testing.assert_allclose(apply(params, u), expected, atol=1e-5)
    np.testing.assert_allclose(apply(params, u[2]), expected[2], atol=1e-5)
    np.testing.assert_allclose(jax.vmap(lambda x: apply(params, x))(u), expected, atol=1e-5)
    # d/dw of sum(apply * c) = sum over samples of the hand correlation
    c = np.asarray(jax.random.normal(jax.random.PRNGKey(2), expected.shape))
    g = jax.grad(lambda p: jnp.sum(apply(p, u) * c))(params)["conv"]["weight"]
    left = (kernel_size - 1) // 2
    hand = np.zeros_like(w)
    for j in range(kernel_size):
        shifted = np.roll(np.asarray(u), -(j - left), axis=-1)  # u[i, (s + j - left) % n]
        hand[j] = np.einsum("bis,bos->io", shifted, c)
    np.testing.assert_allclose(g, hand, rtol=1e-4, atol=1e-4)


def _hand_periodic_conv_nd(x, w, b):
    """x (B, *N, C_in), w (*k, C_in, C_out): y[b, s, o] = sum x[b, (s+u-left) % N, i] w[u, i, o] + b[o]."""
    d = x.ndim - 2
    y = np.zeros(x.shape[:-1] + (w.shape[-1],)) + b
    for offset in np.ndindex(*w.shape[:d]):
        shift = tuple((k - 1) // 2 - u for k, u in zip(w.shape[:d], offset))
        y += np.roll(x, shift, axis=tuple(range(1, d + 1))) @ w[offset]
    return y


@pytest.mark.parametrize("shape,kernel", [
    ((3, 9, 2), (3,)), pytest.param((2, 8, 3), (4,), marks=pytest.mark.slow), ((2, 7, 1), (1,)),
    pytest.param((2, 5, 6, 2), (3, 2), marks=pytest.mark.slow),
    pytest.param((1, 4, 5, 3, 2), (3, 1, 2), marks=pytest.mark.slow),
])
def test_periodic_conv_paths_agree_with_numpy_values_grads_and_jvp(shape, kernel):
    from online_emulate.emulators import lax_conv_ops
    from online_emulate.emulators._ops import periodic_conv

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(4), 3)
    x = jax.random.normal(k1, shape)
    w = jax.random.normal(k2, kernel + (shape[-1], 3))
    b = jax.random.normal(k3, (3,))
    expected = _hand_periodic_conv_nd(np.asarray(x, np.float64), np.asarray(w, np.float64), np.asarray(b))

    def under(context):
        def f(x, w, b):
            with context():
                return periodic_conv(x, w, b)
        return f

    paths = {"matmul": under(lax_ops), "lax_conv": under(lax_conv_ops), "etp": periodic_conv}
    probe = jax.random.normal(jax.random.PRNGKey(5), expected.shape)
    grads, tangents = {}, {}
    for name, f in paths.items():
        np.testing.assert_allclose(f(x, w, b), expected, rtol=1e-5, atol=1e-5, err_msg=name)
        grads[name] = jax.grad(lambda *a: jnp.sum(f(*a) * probe), argnums=(0, 1, 2))(x, w, b)
        tangents[name] = jax.jvp(f, (x, w, b), (x, w, b))[1]
    for name in ("lax_conv", "etp"):
        for got, ref in zip(grads["matmul"], grads[name]):
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(tangents["matmul"], tangents[name], rtol=1e-4, atol=1e-4, err_msg=name)
    # the matmul path really is a matrix product: no convolution primitive in its program
    assert "conv_general_dilated" not in str(jax.make_jaxpr(paths["matmul"])(x, w, b))
    assert "conv_general_dilated" in str(jax.make_jaxpr(paths["lax_conv"])(x, w, b))


@pytest.mark.parametrize("shape,kernel", [((3, 9, 2), (3,)), ((2, 8, 3), (4,)),
                                          ((2, 5, 6, 2), (3, 2))])
def test_periodic_conv_channel_first_layout_agrees_with_numpy(shape, kernel):
    """The layout ETrace's lift of the built-in emulators traces them in."""
    from online_emulate.emulators import lax_conv_ops
    from online_emulate.emulators._ops import channel_first_convs, periodic_conv

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(6), 3)
    x = jax.random.normal(k1, shape)
    w = jax.random.normal(k2, kernel + (shape[-1], 3))
    b = jax.random.normal(k3, (3,))
    expected = _hand_periodic_conv_nd(np.asarray(x, np.float64), np.asarray(w, np.float64),
                                      np.asarray(b))
    first = jnp.moveaxis(x, -1, 1)
    with lax_conv_ops(), channel_first_convs():
        got = periodic_conv(first, w, b)
    np.testing.assert_allclose(jnp.moveaxis(got, 1, -1), expected, rtol=1e-5, atol=1e-5)
    with channel_first_convs(), pytest.raises(ValueError, match="layout"):
        periodic_conv(first, w, b)
