"""A minimal training loop for `KFAC` (no trainer needed)."""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

__all__ = ["sample_windows", "fit_kfac"]


def sample_windows(data, key, *, batch_size: int, num_time_levels: int):
    """Random windows `(batch_size, num_time_levels, C, *N)` cut from `data` `(S, T, C, *N)`.

    Raises:
        ValueError: `data` has fewer than `num_time_levels` time levels.
    """
    num_samples, num_levels = data.shape[:2]
    if num_levels < num_time_levels:
        raise ValueError(
            f"data: expected at least {num_time_levels} time levels on axis 1, "
            f"got shape {tuple(data.shape)}"
        )
    skey, tkey = jax.random.split(key)
    rows = jax.random.randint(skey, (batch_size,), 0, num_samples)
    starts = jax.random.randint(tkey, (batch_size,), 0, num_levels - num_time_levels + 1)
    offsets = jnp.arange(num_time_levels)
    return data[rows[:, None], starts[:, None] + offsets[None, :]]


def fit_kfac(
    apply: Callable,
    params,
    configuration,
    data,
    *,
    num_steps: int,
    batch_size: int,
    key,
    kfac=None,
    ref_stepper=None,
    residuum_fn=None,
    callback: Optional[Callable[[int, object, float], None]] = None,
):
    """Train `params` with K-FAC on random windows of `data`.

    Arguments:
        apply, params: the pure emulator view (`functional(emulator)`).
        configuration: has `loss(...)` and `num_time_levels`.
        data: trajectories `(S, T, C, *N)`.
        num_steps, batch_size: positive ints.
        key: PRNG key (windows and kfac's sampling).
        kfac: a `KFAC` instance (default `KFAC()`).
        ref_stepper, residuum_fn: passed to the configuration's loss.
        callback: `callback(step, params, loss)` after every step.

    Returns:
        `(params, losses)`: trained parameters and the per-step rollout losses.

    Raises:
        ValueError: non-positive `num_steps` / `batch_size`.
        ImportError: kfac-jax is not installed.
    """
    from ._kfac import KFAC

    for name, value in (("num_steps", num_steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    kfac = KFAC() if kfac is None else kfac
    kfac.build(apply, configuration, ref_stepper=ref_stepper, residuum_fn=residuum_fn)
    levels = configuration.num_time_levels
    sample = jax.jit(
        lambda k: sample_windows(data, k, batch_size=batch_size, num_time_levels=levels)
    )
    key, init_key, batch_key = jax.random.split(key, 3)
    state = kfac.init(params, init_key, sample(batch_key))
    losses = []
    for i in range(num_steps):
        key, batch_key, step_key = jax.random.split(key, 3)
        params, state, loss = kfac.step(params, state, sample(batch_key), step_key)
        losses.append(float(loss))
        if callback is not None:
            callback(i, params, float(loss))
    return params, losses
