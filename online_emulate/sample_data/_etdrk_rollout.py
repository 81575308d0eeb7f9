"""Shared trajectory generation for the exponax (ETDRK spectral) problems."""

from __future__ import annotations

import equinox as eqx
import exponax as ex
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._validation import check_int, check_key


def band_limited_ic(num_spatial_dims: int, num_channels: int, highest_init_mode: int):
    """exponax generator of random truncated Fourier series (modes ``<=
    highest_init_mode`` along every axis, zero mean, max |u| = 1) per channel."""
    single = ex.ic.RandomTruncatedFourierSeries(
        num_spatial_dims, cutoff=highest_init_mode, max_one=True
    )
    if num_channels == 1:
        return single
    return ex.ic.RandomMultiChannelICGenerator((single,) * num_channels)


def check_data_args(num_samples, temporal_horizon, warmup_steps, key):
    """Validate the arguments every data generator shares; returns the ints."""
    num_samples = check_int("num_samples", num_samples, minimum=1)
    temporal_horizon = check_int("temporal_horizon", temporal_horizon, minimum=1)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    check_key("key", key)
    return num_samples, temporal_horizon, warmup_steps


@eqx.filter_jit
def _generate(stepper, ic_generator, num_points, num_samples, temporal_horizon, warmup_steps, key):
    keys = jax.random.split(key, num_samples)
    u0 = jax.vmap(lambda k: ic_generator(num_points, key=k))(keys)
    if warmup_steps > 0:
        u0 = jax.vmap(ex.repeat(stepper, warmup_steps))(u0)
    trajectories = jax.vmap(ex.rollout(stepper, temporal_horizon, include_init=True))(u0)
    return trajectories.astype(jnp.float32)


def etdrk_trajectories(
    stepper,
    ic_generator,
    *,
    num_points: int,
    num_samples: int,
    temporal_horizon: int,
    warmup_steps: int,
    key: PRNGKeyArray,
) -> Float[Array, "num_samples temporal_horizon+1 C ..."]:
    """Draw ``num_samples`` initial states from ``ic_generator`` (one key each,
    ``jax.random.split(key, num_samples)``), advance them ``warmup_steps`` steps
    (discarded), then roll out ``temporal_horizon`` steps with
    ``exponax.rollout(stepper, temporal_horizon, include_init=True)`` vmapped over
    samples. Arguments must already be validated. Returns float32 of shape
    ``(num_samples, temporal_horizon + 1, C, *N)``."""
    return _generate(
        stepper, ic_generator, num_points, num_samples, temporal_horizon, warmup_steps, key
    )
