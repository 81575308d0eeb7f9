"""Scalar summaries of per-step metric curves."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._checks import check_int, check_real
from ._validation import check_per_step


@partial(jax.jit, static_argnums=1)
def _geometric_mean(values, num_steps):
    return jnp.exp(jnp.mean(jnp.log(values[:num_steps])))


@jax.jit
def _leading_true(mask):
    # index of the first False; len(mask) if there is none
    failed = jnp.logical_not(mask)
    return jnp.where(jnp.any(failed), jnp.argmax(failed), mask.shape[0])


def mean_nrmse_geometric(
    nrmse_per_step: Float[Array, "time"],
    num_steps: int = 100,
) -> Float[Array, ""]:
    """Geometric mean of a per-step error curve over its first `num_steps` steps.

        G = exp( (1 / n) * sum_{t < n} log(e[t]) ) = (prod_{t < n} e[t])^(1 / n),

    with `n = num_steps`; the apebench summary of an nRMSE rollout curve (n = 100).
    A zero entry gives 0 and a negative one `nan`.

    Arguments:
        nrmse_per_step: per-step errors `e`, shape `(T,)` (e.g. from `nrmse`).
        num_steps: how many leading steps to average, `1 <= num_steps <= T`.

    Returns:
        The geometric mean, a scalar array.

    Raises:
        ValueError: if `nrmse_per_step` is not a non-empty 1-D array, or
            `num_steps` is not an integer in [1, T].
    """
    length = check_per_step(nrmse_per_step, "nrmse_per_step")
    num_steps = check_int("num_steps", num_steps, minimum=1)
    if num_steps > length:
        raise ValueError(
            f"num_steps: expected <= {length}, got {num_steps} (the length of "
            f"nrmse_per_step is {length}; pass num_steps={length} or roll out longer)"
        )
    return _geometric_mean(jnp.asarray(nrmse_per_step), num_steps)


def steps_until_decorrelation(
    corr_per_step: Float[Array, "time"],
    threshold: float = 0.8,
) -> Int[Array, ""]:
    """Number of leading rollout steps whose correlation stays at or above a threshold.

    Convention: entry `corr_per_step[i]` belongs to step `i + 1`, step 1 being the
    first PREDICTED state. The result `k` is the number of steps 1..k with
    `corr >= threshold` before the first step (step k + 1, 0-based index k) whose
    correlation is below the threshold; it equals that 0-based index. If the
    correlation never drops below the threshold the result is `T`. A `nan`
    correlation counts as decorrelated.

    Example: corr = [0.99, 0.9, 0.7, 0.95] and threshold 0.8 give 2.

    Arguments:
        corr_per_step: per-step correlation, shape `(T,)` (e.g. from `correlation`).
        threshold: decorrelation threshold in (0, 1]; default 0.8.

    Returns:
        The step count, an integer scalar array in [0, T].

    Raises:
        ValueError: if `corr_per_step` is not a non-empty 1-D array or `threshold`
            is not a number in (0, 1].
    """
    check_per_step(corr_per_step, "corr_per_step")
    check_real("threshold", threshold, positive=True, maximum=1.0)
    corr = jnp.asarray(corr_per_step)
    return _leading_true(corr >= threshold)
