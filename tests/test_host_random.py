"""The host (NumPy) threefry draws equal jax.random's bit for bit, and every caller falls
back to jax.random where they might not (online_emulate/_random.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from online_emulate import _random
from online_emulate.emulators import ConvNet, LinearStencil, get_params
from online_emulate.sample_data import advection_1d_periodic
from online_emulate.sample_data._advection import _draw_coefficients, draw_coefficients

SEEDS = [0, 1, 42, 73, 2**31 - 1, 123456789]


def _keys():
    keys = [jax.random.PRNGKey(s) for s in SEEDS]
    rng = np.random.default_rng(0)  # arbitrary words, high bits set included
    keys += [jnp.asarray(rng.integers(0, 2**32, 2, dtype=np.uint64).astype(np.uint32))
             for _ in range(6)]
    return keys


@pytest.mark.parametrize("num", [1, 2, 3, 7, 64, (2, 3)])
def test_split_equals_jax(num):
    for key in _keys():
        expected = np.asarray(jax.random.split(key, num))
        got = _random.split(_random.host_key(key), num)
        assert got.dtype == np.uint32 and np.array_equal(got, expected)


@pytest.mark.parametrize("shape", [(), (1,), (2,), (5,), (2, 1, 1), (3, 3, 26, 26), (1001,)])
@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 1.0), (-0.7071067811865475, 0.7071067811865475),
                                    (-0.11322770341445956, 0.11322770341445956), (2.5, 3.0)])
def test_uniform_equals_jax(shape, bounds):
    for key in _keys():
        expected = np.asarray(jax.random.uniform(key, shape, jnp.float32, *bounds))
        got = _random.uniform(_random.host_key(key), shape, *bounds)
        assert got.dtype == jnp.float32 and got.shape == expected.shape
        assert np.array_equal(np.asarray(got).view(np.uint32), expected.view(np.uint32))


def test_batched_keys_equal_vmapped_jax():
    keys = jax.random.split(jax.random.PRNGKey(5), 11)
    expected = jax.vmap(lambda k: jax.random.uniform(k, (4, 3), minval=-2.0, maxval=2.0))(keys)
    got = _random.uniform(np.asarray(keys), (4, 3), -2.0, 2.0)
    assert np.array_equal(got, np.asarray(expected))
    split = jax.vmap(lambda k: jax.random.split(k, 3))(keys)
    assert np.array_equal(_random.split(np.asarray(keys), 3), np.asarray(split))


def test_typed_threefry_key_is_drawn_on_the_host():
    key = jax.random.key(9)
    assert np.array_equal(_random.host_key(key), np.asarray(jax.random.key_data(key)))
    assert np.array_equal(np.asarray(_random.uniform_draw(key, (3,))),
                          np.asarray(jax.random.uniform(key, (3,))))


def test_host_key_refuses_what_jax_may_draw_differently():
    key = jax.random.PRNGKey(3)
    assert _random.host_key(key) is not None
    assert _random.host_key(jax.random.key(3, impl="rbg")) is None
    assert _random.host_key(jax.device_put(key, jax.devices()[0])) is None  # committed
    assert _random.host_key(jax.random.split(key, 2)) is None  # a key array
    assert _random.host_key(jnp.zeros(2, jnp.int32)) is None
    with jax.threefry_partitionable(False):
        assert _random.host_key(key) is None
    with jax.legacy_prng_key("warn"):
        assert _random.host_key(key) is None
    seen = []
    jax.jit(lambda k: seen.append(_random.host_key(k)) or k)(key)
    assert seen == [None]  # traced


def test_fallbacks_give_jax_results():
    key = jax.random.PRNGKey(11)
    with jax.threefry_partitionable(False):
        expected = jax.random.uniform(key, (4,), jnp.float32, -1.0, 1.0)
        got = _random.uniform_draw(key, (4,), jnp.float32, -1.0, 1.0)
        assert np.array_equal(np.asarray(got), np.asarray(expected))
        assert np.array_equal(np.asarray(_random.split_key(key, 3)),
                              np.asarray(jax.random.split(key, 3)))
    bf16 = _random.uniform_draw(key, (4,), jnp.bfloat16)
    assert bf16.dtype == jnp.bfloat16
    assert np.array_equal(np.asarray(bf16), np.asarray(jax.random.uniform(key, (4,), jnp.bfloat16)))
    traced = jax.jit(lambda k: _random.uniform_draw(k, (4,), jnp.float32, -1.0, 1.0))(key)
    assert np.array_equal(np.asarray(traced),
                          np.asarray(jax.random.uniform(key, (4,), jnp.float32, -1.0, 1.0)))


def test_advection_coefficients_and_data_unchanged():
    """The quickstart's data: host-drawn coefficients equal the compiled draw, and the
    trajectories equal those made with the jitted draw under the jax fallback."""
    key = jax.random.PRNGKey(0)
    for num, modes in [(20, 5), (3, 1), (7, 12)]:
        a, b = _draw_coefficients(key, num, modes)
        ha, hb = draw_coefficients(key, num, modes)
        assert np.array_equal(ha, np.asarray(a)) and np.array_equal(hb, np.asarray(b))
    data = advection_1d_periodic(cfl=-0.75, key=key)
    traced = jax.jit(lambda k: advection_1d_periodic(cfl=-0.75, key=k))(key)  # jax's draw
    assert np.array_equal(np.asarray(data), np.asarray(traced))


@pytest.mark.parametrize("make", [
    lambda key: LinearStencil(1, 1, 1, kernel_size=2, key=key),
    lambda key: LinearStencil(2, 2, 3, kernel_size=(3, 2), use_bias=True, key=key),
    lambda key: ConvNet(1, 1, 1, hidden_channels=26, depth=9, key=key),
])
def test_emulator_weights_unchanged(make):
    """An emulator built from a traced key (jax.random throughout) has the weights of
    one built from the same concrete key (host draws)."""
    for seed in (0, 73):
        host = get_params(make(seed))
        expected = jax.jit(lambda k: get_params(make(k)))(jax.random.PRNGKey(seed))
        for a, b in zip(jax.tree_util.tree_leaves(host), jax.tree_util.tree_leaves(expected)):
            assert np.array_equal(np.asarray(a), np.asarray(b))
