"""Time-level losses against NumPy hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from online_emulate.loss import (
    BaseLoss,
    MAELoss,
    MSELoss,
    NormalizedMAELoss,
    NormalizedMSELoss,
    RMSELoss,
)

RNG = np.random.default_rng(0)
PRED = RNG.normal(size=(3, 2, 8)).astype(np.float32)
TARGET = RNG.normal(size=(3, 2, 8)).astype(np.float32)


def per_sample(x, g):
    return g(x).reshape(x.shape[0], -1).mean(axis=1)


HAND = {
    MSELoss: lambda p, t: per_sample(p - t, np.square),
    MAELoss: lambda p, t: per_sample(p - t, np.abs),
    RMSELoss: lambda p, t: np.sqrt(per_sample(p - t, np.square)),
    NormalizedMSELoss: lambda p, t: per_sample(p - t, np.square) / per_sample(t, np.square),
    NormalizedMAELoss: lambda p, t: per_sample(p - t, np.abs) / per_sample(t, np.abs),
}


@pytest.mark.parametrize("cls", list(HAND))
def test_value_matches_numpy(cls):
    np.testing.assert_allclose(cls()(PRED, TARGET), HAND[cls](PRED, TARGET).mean(), rtol=1e-6)


@pytest.mark.parametrize("cls", list(HAND))
def test_batch_reduction_sum(cls):
    value = cls(batch_reduction=jnp.sum)(PRED, TARGET)
    np.testing.assert_allclose(value, HAND[cls](PRED, TARGET).sum(), rtol=1e-6)


@pytest.mark.parametrize("cls", list(HAND))
def test_pytree_is_sum_over_leaves(cls):
    other_pred = RNG.normal(size=(3, 1, 4, 4)).astype(np.float32)
    other_target = RNG.normal(size=(3, 1, 4, 4)).astype(np.float32)
    value = cls()({"u": PRED, "v": other_pred}, {"u": TARGET, "v": other_target})
    expected = (HAND[cls](PRED, TARGET) + HAND[cls](other_pred, other_target)).mean()
    np.testing.assert_allclose(value, expected, rtol=1e-6)


@pytest.mark.parametrize("cls", [MSELoss, MAELoss, RMSELoss])
def test_no_target_is_loss_against_zero(cls):
    expected = HAND[cls](PRED, np.zeros_like(PRED)).mean()
    np.testing.assert_allclose(cls()(PRED), expected, rtol=1e-6)
    np.testing.assert_allclose(cls()({"a": PRED}), expected, rtol=1e-6)


@pytest.mark.parametrize("cls", [NormalizedMSELoss, NormalizedMAELoss])
def test_normalized_without_target_raises(cls):
    with pytest.raises(ValueError, match="target"):
        cls()(PRED)


def test_per_sample_and_keyword_only():
    np.testing.assert_allclose(
        MSELoss().per_sample(PRED, TARGET), HAND[MSELoss](PRED, TARGET), rtol=1e-6
    )
    with pytest.raises(TypeError):
        MSELoss(jnp.sum)  # batch_reduction is keyword-only


def test_immutable_hashable_and_jittable():
    loss = MSELoss()
    with pytest.raises(Exception):
        loss.batch_reduction = jnp.sum
    assert loss == MSELoss() and hash(loss) == hash(MSELoss())
    assert isinstance(loss, BaseLoss)
    jitted = jax.jit(lambda p, t: loss(p, t))
    np.testing.assert_allclose(jitted(PRED, TARGET), loss(PRED, TARGET), rtol=1e-6)


def test_gradient_of_mse():
    grad = jax.grad(lambda p: MSELoss()(p, TARGET))(PRED)
    np.testing.assert_allclose(grad, 2 * (PRED - TARGET) / PRED[0].size / PRED.shape[0], rtol=1e-5)


def test_malformed_inputs_raise():
    with pytest.raises(ValueError, match="prediction"):
        MSELoss()({})
    with pytest.raises(ValueError):
        MSELoss()({"a": PRED}, {"b": TARGET})
