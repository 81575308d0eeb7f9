"""Tests of online_emulate.sample_data: layouts, reproducibility, exactness of the
reference steppers, advection against trainax, physical sanity, validation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import online_emulate.sample_data as sd

KEY = jax.random.PRNGKey(0)

# Small but valid settings per problem (kept tiny for speed).
SMALL = {
    "advection_1d": dict(num_points=16, highest_init_mode=3),
    "diffusion_1d": dict(num_points=16, highest_init_mode=3),
    "burgers_1d": dict(num_points=32, highest_init_mode=3),
    "ks_1d": dict(num_points=64, warmup_steps=100),
    "burgers_2d": dict(num_points=16, highest_init_mode=3),
}
NUM_SAMPLES, HORIZON = 3, 60

# Direct generator calls with the same arguments as the fixture (so the compiled
# functions are reused; compilation dominates the cost of these tests).
DIRECT = {
    "advection_1d": lambda key: sd.advection_1d_periodic(
        16, NUM_SAMPLES, highest_init_mode=3, temporal_horizon=HORIZON + 1, key=key),
    "diffusion_1d": lambda key: sd.diffusion_1d(
        16, NUM_SAMPLES, highest_init_mode=3, temporal_horizon=HORIZON, key=key),
    "burgers_1d": lambda key: sd.burgers_1d(
        32, NUM_SAMPLES, highest_init_mode=3, temporal_horizon=HORIZON, key=key),
    "ks_1d": lambda key: sd.kuramoto_sivashinsky_1d(
        64, NUM_SAMPLES, warmup_steps=100, temporal_horizon=HORIZON, key=key),
    "burgers_2d": lambda key: sd.burgers_2d(
        16, NUM_SAMPLES, highest_init_mode=3, temporal_horizon=HORIZON, key=key),
}
MAKERS = {
    "advection_1d": lambda: sd.advection_1d_stepper(16, 0.75),
    "diffusion_1d": lambda: sd.make_diffusion_1d_stepper(16),
    "burgers_1d": lambda: sd.make_burgers_1d_stepper(32),
    "ks_1d": lambda: sd.make_kuramoto_sivashinsky_1d_stepper(64),
    "burgers_2d": lambda: sd.make_burgers_2d_stepper(16),
}


@pytest.fixture(scope="module")
def small_problems():
    return {name: sd.get_problem(name, **kw) for name, kw in SMALL.items()}


@pytest.fixture(scope="module")
def small_data(small_problems):
    return {name: p.make_data(NUM_SAMPLES, HORIZON, KEY) for name, p in small_problems.items()}


# ----------------------------------------------------------------------------- layout


def test_registry_names():
    assert set(sd.PROBLEMS) == {
        "advection_1d", "diffusion_1d", "burgers_1d", "ks_1d", "burgers_2d"
    }
    assert set(sd.__all__) <= set(dir(sd))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_problem_shapes_and_metadata(name, small_problems, small_data):
    p = small_problems[name]
    data = small_data[name]
    assert isinstance(p, sd.Problem)
    assert p.name == name
    assert data.dtype == jnp.float32
    assert data.shape == (NUM_SAMPLES, HORIZON + 1) + p.state_shape
    assert p.state_shape == (p.num_channels,) + (p.num_points,) * p.num_spatial_dims
    assert p.num_points == SMALL[name]["num_points"]
    assert p.dt > 0
    assert p.params["num_points"] == p.num_points
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "x"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_direct_generators_equal_make_data(name, small_data):
    data = DIRECT[name](KEY)
    assert data.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(data), np.asarray(small_data[name]))
    assert bool(jnp.all(jnp.isfinite(data)))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_reproducible_from_key(name, small_problems, small_data):
    p = small_problems[name]
    again = p.make_data(NUM_SAMPLES, HORIZON, KEY)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(small_data[name]))
    other = DIRECT[name](jax.random.PRNGKey(1))
    assert not np.allclose(np.asarray(other), np.asarray(small_data[name]))
    # Samples differ from each other.
    assert not np.allclose(small_data[name][0], small_data[name][1])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "burgers_2d"
                                  else n for n in sorted(SMALL)])
def test_sample_initial_conditions_is_make_datas_first_level(name, small_problems, small_data):
    """The streamed initial conditions are the stored data's first level for the same key
    (the same draws and warm-up), also with the key traced inside jit, and the rollout
    of the problem's own stepper from them is the stored trajectory."""
    p = small_problems[name]
    u0 = p.sample_initial_conditions(NUM_SAMPLES, KEY)
    assert u0.dtype == jnp.float32 and u0.shape == (NUM_SAMPLES,) + p.state_shape
    np.testing.assert_array_equal(np.asarray(u0), np.asarray(small_data[name][:, 0]))
    traced = jax.jit(lambda k: p.sample_initial_conditions(NUM_SAMPLES, k))(KEY)
    np.testing.assert_array_equal(np.asarray(traced), np.asarray(u0))
    one = p.sample_initial_conditions(1, KEY)  # a different count: a different split
    assert one.shape == (1,) + p.state_shape
    nxt = jax.vmap(p.ref_stepper)(u0)
    np.testing.assert_allclose(np.asarray(nxt), np.asarray(small_data[name][:, 1]),
                               rtol=1e-5, atol=1e-5)


# 6 s: the full suite (the first-level test above runs in the quick loop)
@pytest.mark.slow
def test_sample_initial_conditions_equals_direct_exponax_draw():
    """Against exponax called by hand: one key per sample, then the warm-up steps."""
    import exponax as ex

    p = sd.get_problem("ks_1d", num_points=32, warmup_steps=10)
    ic = ex.ic.RandomTruncatedFourierSeries(1, cutoff=5, max_one=True)
    ks = ex.stepper.KuramotoSivashinskyConservative(1, 32.0, 32, 0.5)
    keys = jax.random.split(KEY, 3)
    want = jax.vmap(ex.repeat(ks, 10))(jax.vmap(lambda k: ic(32, key=k))(keys))
    np.testing.assert_allclose(np.asarray(p.sample_initial_conditions(3, KEY)),
                               np.asarray(want), rtol=1e-5, atol=1e-5)


def test_sample_initial_conditions_validation():
    p = sd.get_problem("advection_1d", num_points=16)
    with pytest.raises(ValueError, match="^num:"):
        p.sample_initial_conditions(0, KEY)
    with pytest.raises(TypeError, match="^key:"):
        p.sample_initial_conditions(2, 3)
    with pytest.raises(TypeError, match="^key:"):
        sd.get_problem("burgers_1d", num_points=32).sample_initial_conditions(2, "k")


def test_typed_key_accepted():
    a = DIRECT["diffusion_1d"](jax.random.key(3))
    assert a.shape == (NUM_SAMPLES, HORIZON + 1, 1, 16)
    b = sd.advection_1d_periodic(16, 2, temporal_horizon=2, key=jax.random.key(3))
    assert b.shape == (2, 2, 1, 16)


# ------------------------------------------------------------- reference steppers


@pytest.mark.parametrize("name", sorted(SMALL))
def test_ref_stepper_reproduces_data(name, small_problems, small_data):
    """ref_stepper(data[:, t]) == data[:, t + 1] for every t, and the public
    make_<problem>_stepper with the same parameters is the same stepper."""
    p = small_problems[name]
    data = small_data[name]
    maker_stepper = MAKERS[name]()

    @jax.jit
    def both(u):
        return jax.vmap(p.ref_stepper)(u), jax.vmap(maker_stepper)(u)

    prev = data[:, :-1].reshape((-1,) + p.state_shape)
    nxt = data[:, 1:].reshape((-1,) + p.state_shape)
    by_ref, by_maker = both(prev)
    scale = max(float(jnp.max(jnp.abs(data))), 1.0)
    np.testing.assert_allclose(np.asarray(by_ref), np.asarray(nxt), atol=2e-5 * scale, rtol=0)
    np.testing.assert_array_equal(np.asarray(by_ref), np.asarray(by_maker))


@pytest.mark.parametrize("name", ["advection_1d", "ks_1d", "burgers_2d"])
def test_ref_stepper_jit_vmap_grad(name, small_problems, small_data):
    p = small_problems[name]
    u = small_data[name][:, 0]

    def loss(u):
        return jnp.sum(jax.vmap(p.ref_stepper)(u) ** 2)

    g = jax.jit(jax.grad(loss))(u)
    assert g.shape == u.shape
    assert bool(jnp.all(jnp.isfinite(g)))
    assert float(jnp.abs(g).max()) > 0


# ---------------------------------------------------------------------- advection


def test_advection_integer_shift_and_zero_mean():
    cfl = 0.75
    data = sd.advection_1d_periodic(24, 4, cfl=cfl, highest_init_mode=4, temporal_horizon=13, key=KEY)
    # cfl * 4 = 3 cells: u[t + 4] is u[t] moved by 3 cells in +x.
    for t in range(0, 9):
        np.testing.assert_allclose(data[:, t + 4], jnp.roll(data[:, t], 3, axis=-1), atol=2e-5)
    np.testing.assert_allclose(jnp.mean(data, axis=-1), 0.0, atol=2e-6)
    # Negative cfl moves in -x.
    back = sd.advection_1d_periodic(24, 4, cfl=-0.5, highest_init_mode=4, temporal_horizon=3, key=KEY)
    np.testing.assert_allclose(back[:, 2], jnp.roll(back[:, 0], -1, axis=-1), atol=2e-5)
    # Exact: energy is conserved.
    energy = jnp.sum(data**2, axis=(-1, -2))
    np.testing.assert_allclose(energy, energy[:, :1] * jnp.ones_like(energy), rtol=1e-5)


def test_advection_stepper_is_the_data_stepper():
    data = sd.advection_1d_periodic(20, 3, cfl=-0.3, temporal_horizon=4, key=KEY)
    stepper = sd.advection_1d_stepper(20, -0.3)
    np.testing.assert_allclose(jax.vmap(stepper)(data[:, :-1].reshape(-1, 1, 20)),
                               data[:, 1:].reshape(-1, 1, 20), atol=1e-5)
    with pytest.raises(ValueError, match="20 points"):
        stepper(jnp.zeros((1, 21)))


def test_advection_fou_stencil_one_step_accuracy():
    """FOU stencil [1 + cfl, -cfl] on (u[j], u[j+1]) for cfl < 0: local error
    O(dx^2), i.e. the one-step error drops ~4x when the grid is refined 2x (the
    same key gives the same continuous field at every resolution)."""

    def one_step_error(n, cfl):
        d = sd.advection_1d_periodic(n, 8, cfl=cfl, temporal_horizon=2, key=KEY)
        u, exact = d[:, 0, 0], d[:, 1, 0]
        if cfl < 0:
            fou = (1 + cfl) * u - cfl * jnp.roll(u, -1, axis=-1)
        else:
            fou = (1 - cfl) * u + cfl * jnp.roll(u, 1, axis=-1)
        return float(jnp.linalg.norm(fou - exact) / jnp.linalg.norm(exact))

    for cfl in (-0.75, 0.75):
        e1, e2 = (one_step_error(n, cfl) for n in (64, 128))
        assert e1 < 0.05
        assert 3.5 < e1 / e2 < 4.5
    # The wrong-way stencil is much worse.
    d = sd.advection_1d_periodic(64, 8, cfl=-0.75, temporal_horizon=2, key=KEY)
    u, exact = d[:, 0, 0], d[:, 1, 0]
    wrong = 0.25 * u + 0.75 * jnp.roll(u, 1, axis=-1)
    assert float(jnp.linalg.norm(wrong - exact) / jnp.linalg.norm(exact)) > 10 * one_step_error(64, -0.75)


def test_advection_matches_trainax():
    trainax = pytest.importorskip("trainax")
    # trainax's quickstart setting (cfl = -0.75), fewer samples and levels.
    for kwargs in (dict(num_points=30, num_samples=4, cfl=-0.75, highest_init_mode=5, temporal_horizon=20),):
        ours = sd.advection_1d_periodic(key=KEY, **kwargs)
        theirs = trainax.sample_data.advection_1d_periodic(key=KEY, **kwargs)
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=5e-5)


def test_advection_problem_has_one_more_level():
    p = sd.get_problem("advection_1d", num_points=16, highest_init_mode=3, cfl=-0.75)
    d = p.make_data(2, 5, KEY)
    direct = sd.advection_1d_periodic(16, 2, cfl=-0.75, highest_init_mode=3, temporal_horizon=6, key=KEY)
    assert d.shape == (2, 6, 1, 16)
    np.testing.assert_array_equal(d, direct)
    assert p.params["cfl"] == -0.75
    with pytest.raises(ValueError, match="temporal_horizon"):
        p.make_data(2, 0, KEY)


# ---------------------------------------------------------------- physical sanity


def test_diffusion_energy_decays_monotonically(small_data):
    d = small_data["diffusion_1d"]
    energy = jnp.sum(d**2, axis=(-1, -2))
    assert bool(jnp.all(jnp.diff(energy, axis=1) < 0))
    np.testing.assert_allclose(jnp.mean(d, axis=-1), 0.0, atol=1e-6)


def test_burgers_and_ks_stay_finite(small_data):
    b = small_data["burgers_1d"]
    assert bool(jnp.all(jnp.isfinite(b)))
    assert float(jnp.abs(b).max()) <= 1.05  # maximum principle (max |u0| = 1)
    energy = jnp.sum(b**2, axis=(-1, -2))  # viscous Burgers dissipates energy
    assert bool(jnp.all(jnp.diff(energy, axis=1) <= 1e-6 * energy[:, :1]))
    ks = small_data["ks_1d"]
    assert bool(jnp.all(jnp.isfinite(ks)))
    # On the attractor: O(1) fluctuations that neither blow up nor decay.
    std = jnp.std(ks, axis=(-1, -2))
    assert 0.5 < float(std.min()) and float(std.max()) < 5.0
    b2 = small_data["burgers_2d"]
    assert bool(jnp.all(jnp.isfinite(b2)))
    assert float(jnp.abs(b2).max()) <= 1.5


# -------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(num_points=1), ValueError, "num_points"),
        (dict(num_points=16.0), TypeError, "num_points"),
        (dict(num_points=True), TypeError, "num_points"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(temporal_horizon=0), ValueError, "temporal_horizon"),
        (dict(temporal_horizon=2.0), TypeError, "temporal_horizon"),
        (dict(key=0), TypeError, "key"),
        (dict(key=jnp.zeros(3, jnp.uint32)), TypeError, "key"),
        (dict(key=jax.random.split(KEY, 2)), TypeError, "key"),
        (dict(highest_init_mode=8), ValueError, "highest_init_mode"),
        (dict(highest_init_mode=0), ValueError, "highest_init_mode"),
        (dict(dt=0.0), ValueError, "dt"),
        (dict(diffusivity=-1.0), ValueError, "diffusivity"),
        (dict(domain_extent="1"), TypeError, "domain_extent"),
        (dict(warmup_steps=-1), ValueError, "warmup_steps"),
    ],
)
def test_validation_burgers(kwargs, exc, match):
    args = dict(num_points=16, num_samples=2, temporal_horizon=2, key=KEY)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sd.burgers_1d(**args)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(num_points=1), ValueError, "num_points"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(temporal_horizon=0), ValueError, "temporal_horizon"),
        (dict(key=None), TypeError, "key"),
        (dict(cfl=float("nan")), ValueError, "cfl"),
        (dict(highest_init_mode=15), ValueError, "highest_init_mode"),
    ],
)
def test_validation_advection(kwargs, exc, match):
    args = dict(num_points=30, num_samples=2, temporal_horizon=2, key=KEY)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sd.advection_1d_periodic(**args)


def test_validation_steppers_and_registry():
    with pytest.raises(ValueError, match="num_points"):
        sd.advection_1d_stepper(1, 0.5)
    with pytest.raises(ValueError, match="dt"):
        sd.make_kuramoto_sivashinsky_1d_stepper(32, dt=-0.1)
    with pytest.raises(TypeError, match="num_points"):
        sd.make_burgers_2d_stepper(8.5)
    with pytest.raises(ValueError, match="advection_1d.*burgers_2d|burgers_2d.*ks_1d"):
        sd.get_problem("navier_stokes")
    with pytest.raises(TypeError, match="viscosity"):
        sd.get_problem("burgers_1d", viscosity=0.1)
    with pytest.raises(ValueError, match="diffusivity"):
        sd.get_problem("diffusion_1d", diffusivity=-0.1)
    p = sd.get_problem("ks_1d", num_points=32)
    with pytest.raises(ValueError, match="num_samples"):
        p.make_data(0, 3, KEY)
    with pytest.raises(TypeError, match="key"):
        p.make_data(1, 3, 0)


# ------------------------------------------------- one exponax path, same numbers
# Written down on main before the spectral problems moved onto one table-driven
# exponax path (sample_data/_exponax.py): float64 sum |u|, sum u^2 and the last entry.
KEY7 = jax.random.PRNGKey(7)
RECORDED = {
    "diffusion_1d": (lambda: sd.diffusion_1d(32, 3, temporal_horizon=5, key=KEY7, highest_init_mode=4, warmup_steps=2),
                     (201.7078516483307, 103.18811038066592, -0.753719687461853)),
    "burgers_1d": (lambda: sd.burgers_1d(32, 3, temporal_horizon=5, key=KEY7),
                   (176.95111121144146, 82.79267330848535, -0.4026639759540558)),
    "ks_1d": (lambda: sd.kuramoto_sivashinsky_1d(32, 2, temporal_horizon=4, key=KEY7, warmup_steps=10),
              (248.6016420200467, 267.25001783625896, -0.5475714802742004)),
    "burgers_2d": (lambda: sd.burgers_2d(16, 2, temporal_horizon=3, key=KEY7, highest_init_mode=3),
                   (1089.550314215012, 440.9416799616729, 0.12905550003051758)),
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_spectral_problems_reproduce_recorded_numbers(name):
    make, expected = RECORDED[name]
    u = np.asarray(make(), np.float64)
    got = (np.abs(u).sum(), (u**2).sum(), u.ravel()[-1])
    # float32 data: the tolerance only allows a different CPU's rounding.
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_spectral_data_bit_identical_to_direct_exponax_calls():
    import equinox as eqx
    import exponax as ex

    @eqx.filter_jit
    def direct(stepper, ic, n, samples, horizon, warmup, key):
        u0 = jax.vmap(lambda k: ic(n, key=k))(jax.random.split(key, samples))
        if warmup:
            u0 = jax.vmap(ex.repeat(stepper, warmup))(u0)
        return jax.vmap(ex.rollout(stepper, horizon, include_init=True))(u0).astype(jnp.float32)

    ic1 = ex.ic.RandomTruncatedFourierSeries(1, cutoff=5, max_one=True)
    burgers = ex.stepper.Burgers(1, 1.0, 32, 0.01, diffusivity=0.01, convection_scale=1.0)
    np.testing.assert_array_equal(sd.burgers_1d(32, 3, temporal_horizon=5, key=KEY7),
                                  direct(burgers, ic1, 32, 3, 5, 0, KEY7))
    ks = ex.stepper.KuramotoSivashinskyConservative(1, 32.0, 32, 0.5)
    np.testing.assert_array_equal(
        sd.kuramoto_sivashinsky_1d(32, 2, temporal_horizon=4, key=KEY7, warmup_steps=10),
        direct(ks, ic1, 32, 2, 4, 10, KEY7))
    ic2 = ex.ic.RandomMultiChannelICGenerator(
        (ex.ic.RandomTruncatedFourierSeries(2, cutoff=3, max_one=True),) * 2)
    burgers_2d = ex.stepper.Burgers(2, 1.0, 16, 0.01, diffusivity=0.02, convection_scale=1.0)
    np.testing.assert_array_equal(
        sd.burgers_2d(16, 2, temporal_horizon=3, key=KEY7, highest_init_mode=3),
        direct(burgers_2d, ic2, 16, 2, 3, 0, KEY7))
    u = jnp.sin(jnp.linspace(0, 2 * jnp.pi, 32, endpoint=False))[None]
    stepper = sd.make_diffusion_1d_stepper(32, dt=0.02, diffusivity=0.05)
    np.testing.assert_array_equal(stepper(u), ex.stepper.Diffusion(1, 1.0, 32, 0.02, diffusivity=0.05)(u))
    # one cached stepper per argument set, shared by a problem's data and ref_stepper
    assert stepper is sd.make_diffusion_1d_stepper(32, dt=0.02, diffusivity=0.05)

