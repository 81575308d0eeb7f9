"""How close each estimator's gradient is to exact BPTT, and what it costs."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from .._checks import check_positive_int
from ..configuration import BaseConfiguration
from ._base import Estimator
from ._bptt import BPTT
from ._value_and_grad import bind_to_data

__all__ = ["gradient_fidelity", "compiled_temp_bytes", "flat_vector"]


def flat_vector(tree) -> np.ndarray:
    """All leaves of a PyTree concatenated into one float64 numpy vector."""
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree_util.tree_leaves(tree)])


def compiled_temp_bytes(
    estimator: Estimator,
    configuration: BaseConfiguration,
    emulator: Any,
    data: jax.Array,
    *,
    ref_stepper: Callable | None = None,
    residuum_fn: Callable | None = None,
) -> int:
    """XLA's `memory_analysis().temp_size_in_bytes` of the compiled value-and-grad program."""
    bound, adapter = bind_to_data(estimator, configuration, emulator, data,
                                  ref_stepper=ref_stepper, residuum_fn=residuum_fn)
    if estimator.jittable:
        lowered = jax.jit(bound.loss_and_grad).lower(adapter.params, data)
    else:
        lowered = estimator.lowered(configuration, adapter, adapter.params, data,
                                    ref_stepper=ref_stepper, residuum_fn=residuum_fn)
    return int(lowered.compile().memory_analysis().temp_size_in_bytes)


def _timed(fn, repeats: int) -> tuple[object, float]:
    out = fn()
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
        jax.block_until_ready(out)
    return out, (time.perf_counter() - t0) / repeats


def gradient_fidelity(
    emulator: Any,
    configuration: BaseConfiguration | Callable[[int], BaseConfiguration],
    data: jax.Array,
    estimators: Sequence[Estimator] = (),
    rollout_lengths: Sequence[int] | None = None,
    *,
    ref_stepper: Callable | None = None,
    residuum_fn: Callable | None = None,
    repeats: int = 1,
) -> list[dict]:
    """Compare estimators with exact BPTT, per rollout length.

    Arguments:
        emulator: a brainstate Module, an equinox Module or an `(apply, params)` pair
            (its current parameters are used).
        configuration: a configuration, or a factory `T -> configuration` (e.g.
            `lambda T: Supervised(T)`) when `rollout_lengths` is given.
        data: `(batch, time, C, *N)`; the first `configuration.num_time_levels` levels
            are used for each T.
        estimators: the estimators to compare.
        rollout_lengths: the T values; None uses `configuration` as it is.
        ref_stepper, residuum_fn: as the configuration needs them.
        repeats: timed calls per measurement (after one warm-up call).

    Returns:
        One dict per (estimator, T): `estimator` (repr), `T`, `cosine` (cosine similarity
        to the BPTT gradient), `rel_error` (|g - g_bptt| / |g_bptt|), `temp_bytes`
        (compiled XLA temp memory of the value-and-grad program), `time_per_step`
        (seconds per rollout step, jit-warm), `loss`.

    Raises:
        TypeError: an entry of `estimators` is not an Estimator, or `configuration` is not
            callable while `rollout_lengths` is given.
        ValueError: empty `estimators`, bad rollout lengths, or too few time levels.
    """
    estimators = list(estimators)
    if not estimators:
        raise ValueError("estimators: expected at least one estimator, got none")
    for e in estimators:
        if not isinstance(e, Estimator):
            raise TypeError(f"estimators: expected Estimator objects, got {type(e).__name__}")
    if rollout_lengths is None:
        configs = [(None, configuration)]
    else:
        if not callable(configuration) or hasattr(configuration, "online_spec"):
            raise TypeError(
                "configuration: with rollout_lengths, expected a factory T -> configuration "
                f"(e.g. lambda T: Supervised(T)), got {type(configuration).__name__}"
            )
        if not rollout_lengths:
            raise ValueError(f"rollout_lengths: expected positive ints, got {rollout_lengths!r}")
        for i, T in enumerate(rollout_lengths):
            check_positive_int(f"rollout_lengths[{i}]", T)
        configs = [(T, configuration(T)) for T in rollout_lengths]
    for est in estimators:  # a model ETrace cannot trace fails before any compilation
        _, adapter = bind_to_data(est, configs[0][1], emulator, data, ref_stepper=ref_stepper,
                                  residuum_fn=residuum_fn)
    params = adapter.params
    rows = []
    for T, cfg in configs:
        levels = cfg.num_time_levels
        if data.shape[1] < levels:
            raise ValueError(
                f"data: expected at least {levels} time levels ({cfg!r} reads them), got "
                f"{data.shape[1]}"
            )
        d = data[:, :levels]
        steps = T if T is not None else max(1, levels - 1)

        def call(est):
            bound, _ = bind_to_data(est, cfg, adapter, d, ref_stepper=ref_stepper,
                                    residuum_fn=residuum_fn)
            return lambda: bound.value_and_grad(params, d)

        (_, g_ref) = call(BPTT())()
        ref = flat_vector(g_ref)
        for est in estimators:
            (loss, g), dt = _timed(call(est), repeats)
            v = flat_vector(g)
            denom = np.linalg.norm(v) * np.linalg.norm(ref)
            rows.append({
                "estimator": repr(est),
                "T": steps,
                "cosine": float(v @ ref / denom) if denom > 0 else float("nan"),
                "rel_error": float(np.linalg.norm(v - ref) / max(np.linalg.norm(ref), 1e-300)),
                "temp_bytes": compiled_temp_bytes(est, cfg, adapter, d, ref_stepper=ref_stepper,
                                                  residuum_fn=residuum_fn),
                "time_per_step": dt / steps,
                "loss": float(loss),
            })
    return rows
