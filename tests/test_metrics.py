"""Tests for online_emulate.metrics on cases with known answers."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from online_emulate import metrics

N = 32


def shift(u):
    """Exact advection by one cell on a periodic grid: one sample (C, N)."""
    return jnp.roll(u, 1, axis=-1)


@pytest.fixture(scope="module")
def trajectories():
    x0 = jax.random.normal(jax.random.PRNGKey(0), (3, 2, N))
    return metrics.rollout(shift, x0, 12, include_init=True)


def test_rollout_shapes_and_values():
    x0 = jax.random.normal(jax.random.PRNGKey(1), (4, 1, N))
    out = metrics.rollout(shift, x0, 5)
    assert out.shape == (4, 5, 1, N)
    with_init = metrics.rollout(shift, x0, 5, include_init=True)
    assert with_init.shape == (4, 6, 1, N)
    np.testing.assert_array_equal(with_init[:, 0], x0)
    for t in range(6):
        np.testing.assert_array_equal(with_init[:, t], np.roll(x0, t, axis=-1))
    assert metrics.rollout(shift, x0, 0).shape == (4, 0, 1, N)


def test_rollout_2d():
    x0 = jnp.arange(2 * 1 * 4 * 5, dtype=jnp.float32).reshape(2, 1, 4, 5)
    out = metrics.rollout(lambda u: 2.0 * u, x0, 3)
    np.testing.assert_allclose(out[:, 2], 8.0 * x0)


def test_rollout_brainstate_emulator():
    from online_emulate.emulators import LinearStencil

    emulator = LinearStencil(1, 1, 1, kernel_size=3)
    x0 = jax.random.normal(jax.random.PRNGKey(2), (3, 1, 16))
    out = metrics.rollout(emulator, x0, 4)
    expected, u = [], x0
    for _ in range(4):
        u = emulator(u)
        expected.append(u)
    np.testing.assert_allclose(out, jnp.stack(expected, axis=1), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="initial_states"):
        metrics.rollout(emulator, x0[0], 4)  # one sample, no batch axis


def test_rollout_validation():
    x0 = jnp.zeros((2, 1, N))
    with pytest.raises(ValueError, match="num_steps"):
        metrics.rollout(shift, x0, -1)
    with pytest.raises(ValueError, match="num_steps"):
        metrics.rollout(shift, x0, 2.5)
    with pytest.raises(ValueError, match="initial_states"):
        metrics.rollout(shift, jnp.zeros((N,)), 2)
    with pytest.raises(ValueError, match="same shape"):
        metrics.rollout(lambda u: u[..., :-1], x0, 2)
    with pytest.raises(TypeError, match="stepper"):
        metrics.rollout("not a function", x0, 2)


def test_exact_emulator_gives_zero_error_and_unit_correlation(trajectories):
    result = metrics.evaluate_rollout(shift, trajectories)
    assert result["num_steps"] == 12
    for name in ("nrmse", "rmse", "mae"):
        assert result[name].shape == (12,)
        np.testing.assert_array_equal(result[name], 0.0)
    np.testing.assert_allclose(result["correlation"], 1.0, rtol=0, atol=1e-6)
    assert result["steps_until_decorrelation"] == 12
    assert result["nrmse_geometric_mean"] == 0.0


def test_constant_offset_gives_known_nrmse():
    # ref[b, t, c, :] = a_{b,t,c} * sin(2 pi x / N): ||ref_{b,t}||^2 = sum_c a^2 * N / 2.
    # pred = ref + c0 everywhere: ||pred - ref||^2 = C * N * c0^2.
    x = np.arange(N)
    amplitude = np.array([[[1.0, 2.0], [0.5, 3.0]], [[2.0, 2.0], [1.0, 1.0]]])  # (B, T, C)
    ref = amplitude[..., None] * np.sin(2 * np.pi * x / N)
    c0 = 0.3
    pred = ref + c0
    # per channel: ||pred - ref|| = sqrt(N) c0, ||ref|| = |a| sqrt(N / 2); summed over c
    expected_per_sample = (np.sqrt(N * c0**2) / np.sqrt(amplitude**2 * N / 2)).sum(-1)
    expected = expected_per_sample.mean(axis=0)
    got = metrics.nrmse(jnp.asarray(pred, jnp.float32), jnp.asarray(ref, jnp.float32))
    assert got.shape == (2,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # RMSE of a constant offset is the offset, MAE too.
    np.testing.assert_allclose(metrics.rmse(pred, ref), [c0, c0], rtol=1e-5)
    np.testing.assert_allclose(metrics.mae(pred, ref), [c0, c0], rtol=1e-5)


def test_rmse_mae_match_numpy():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(3, 4, 2, 5, 6)).astype(np.float32)
    ref = rng.normal(size=(3, 4, 2, 5, 6)).astype(np.float32)
    diff = (pred - ref).reshape(3, 4, -1)
    np.testing.assert_allclose(
        metrics.rmse(pred, ref), np.sqrt((diff**2).mean(-1)).mean(0), rtol=1e-5
    )
    np.testing.assert_allclose(metrics.mae(pred, ref), np.abs(diff).mean(-1).mean(0), rtol=1e-5)
    per_channel = (pred - ref).reshape(3, 4, 2, -1)
    r = ref.reshape(3, 4, 2, -1)
    np.testing.assert_allclose(
        metrics.nrmse(pred, ref),
        (np.linalg.norm(per_channel, axis=-1) / np.linalg.norm(r, axis=-1)).sum(-1).mean(0),
        rtol=1e-5,
    )


def test_nrmse_matches_exponax_on_two_channels():
    exponax = pytest.importorskip("exponax")
    rng = np.random.default_rng(1)
    # channels of very different scales: a joint norm would hide the small one's error
    scale = np.array([1.0, 0.01])[None, None, :, None]
    ref = (rng.normal(size=(3, 5, 2, 32)) * scale).astype(np.float32)
    pred = (ref + 0.05 * rng.normal(size=ref.shape) * scale).astype(np.float32)
    expected = [
        np.mean([float(exponax.metrics.nRMSE(jnp.asarray(pred[b, t]), jnp.asarray(ref[b, t]))) for b in range(3)])
        for t in range(5)
    ]
    np.testing.assert_allclose(metrics.nrmse(pred, ref), expected, rtol=1e-5)


def test_correlation_conventions():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(2, 3, 1, 16)).astype(np.float32)
    # positive scaling keeps the cosine at 1; negation gives -1
    np.testing.assert_allclose(metrics.correlation(2.5 * ref, ref), 1.0, atol=1e-6)
    np.testing.assert_allclose(metrics.correlation(-ref, ref), -1.0, atol=1e-6)
    # an offset changes the cosine but not the Pearson correlation
    shifted = ref + 5.0
    assert np.all(np.asarray(metrics.correlation(shifted, ref)) < 0.99)
    np.testing.assert_allclose(metrics.correlation(shifted, ref, centered=True), 1.0, atol=1e-5)
    p = shifted.reshape(2, 3, -1)
    r = ref.reshape(2, 3, -1)
    cos = (p * r).sum(-1) / np.linalg.norm(p, axis=-1) / np.linalg.norm(r, axis=-1)
    np.testing.assert_allclose(metrics.correlation(shifted, ref), cos.mean(0), rtol=1e-5)


def test_geometric_mean_matches_numpy():
    values = np.array([0.1, 0.5, 2.0, 0.3, 1.5, 0.7], dtype=np.float32)
    for n in (1, 3, 6):
        expected = np.prod(values[:n].astype(np.float64)) ** (1.0 / n)
        np.testing.assert_allclose(metrics.mean_nrmse_geometric(values, n), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="num_steps.*<= 6, got 100"):
        metrics.mean_nrmse_geometric(values)  # default 100 > 6 steps
    with pytest.raises(ValueError, match="num_steps"):
        metrics.mean_nrmse_geometric(values, 0)
    with pytest.raises(ValueError, match="nrmse_per_step"):
        metrics.mean_nrmse_geometric(values.reshape(2, 3), 2)


def test_steps_until_decorrelation():
    corr = np.array([0.99, 0.9, 0.7, 0.95, 0.5])
    assert int(metrics.steps_until_decorrelation(corr)) == 2
    assert int(metrics.steps_until_decorrelation(corr, threshold=0.6)) == 4
    assert int(metrics.steps_until_decorrelation(corr, threshold=0.4)) == 5  # never: T
    assert int(metrics.steps_until_decorrelation(corr, threshold=0.995)) == 0
    assert int(metrics.steps_until_decorrelation(np.array([0.9, np.nan]))) == 1
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            metrics.steps_until_decorrelation(corr, threshold=bad)
    with pytest.raises(ValueError, match="corr_per_step"):
        metrics.steps_until_decorrelation(np.array([]))


def test_metric_shape_validation():
    a = jnp.zeros((2, 3, 1, 8))
    for fn in (metrics.nrmse, metrics.rmse, metrics.mae, metrics.correlation):
        with pytest.raises(ValueError, match=r"expected \(2, 3, 1, 8\).*got \(2, 4, 1, 8\)"):
            fn(jnp.zeros((2, 4, 1, 8)), a)
        with pytest.raises(ValueError, match="pred"):
            fn(jnp.zeros((2, 3)), jnp.zeros((2, 3)))


def test_evaluate_rollout_options_and_json(trajectories):
    def damped(u):
        return 0.9 * shift(u)

    result = metrics.evaluate_rollout(damped, trajectories, num_steps=5, metrics=("nrmse",))
    assert set(result) == {
        "num_steps",
        "nrmse",
        "mean_nrmse",
        "nrmse_geometric_mean",
        "nrmse_geometric_mean_steps",
    }
    # damping by 0.9 per step: pred_t = 0.9^t ref_t, so each of the 2 channels has
    # nRMSE 1 - 0.9^t exactly, and channels add up
    t = np.arange(1, 6)
    np.testing.assert_allclose(result["nrmse"], 2 * (1 - 0.9**t), rtol=1e-5)
    geo = np.prod(2 * (1 - 0.9**t)) ** (1 / 5)
    np.testing.assert_allclose(result["nrmse_geometric_mean"], geo, rtol=1e-5)
    encoded = json.loads(json.dumps(metrics.to_json_dict(result)))
    assert encoded["num_steps"] == 5 and len(encoded["nrmse"]) == 5
    assert isinstance(encoded["mean_nrmse"], float)

    with pytest.raises(ValueError, match=r"num_steps.*<= 12, got 13"):
        metrics.evaluate_rollout(damped, trajectories, num_steps=13)
    with pytest.raises(ValueError, match="metrics"):
        metrics.evaluate_rollout(damped, trajectories, metrics=("nrmse", "psnr"))
    with pytest.raises(ValueError, match="decorrelation_threshold"):
        metrics.evaluate_rollout(damped, trajectories, decorrelation_threshold=0.0)
    with pytest.raises(ValueError, match="trajectories"):
        metrics.evaluate_rollout(damped, trajectories[:, :1])


def test_to_json_dict_rejects_non_string_keys():
    with pytest.raises(ValueError, match=r"results: expected string keys \(JSON\), got key 1"):
        metrics.to_json_dict({1: 2.0})
    out = metrics.to_json_dict({"a": np.float32(1.5), "b": jnp.arange(3), "c": {"d": (1, 2)}})
    assert out == {"a": 1.5, "b": [0, 1, 2], "c": {"d": [1, 2]}}
