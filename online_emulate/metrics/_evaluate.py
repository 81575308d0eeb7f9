"""One-call evaluation of an emulator against reference trajectories."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
from jaxtyping import Array, Float

from ._per_step import correlation, mae, nrmse, rmse
from ._rollout import rollout
from ._summary import mean_nrmse_geometric, steps_until_decorrelation
from .._checks import check_int, check_real
from ._validation import shape_of

PER_STEP_METRICS: dict[str, Callable] = {
    "nrmse": nrmse,
    "rmse": rmse,
    "mae": mae,
    "correlation": correlation,
}


def evaluate_rollout(
    stepper: Callable,
    trajectories: Float[Array, "batch time_plus_one channel *space"],
    *,
    num_steps: int | None = None,
    metrics: Sequence[str] = ("nrmse", "rmse", "mae", "correlation"),
    summary_steps: int = 100,
    decorrelation_threshold: float = 0.8,
) -> dict[str, Any]:
    """Roll a stepper out from reference initial states and score it step by step.

    The rollout starts at `trajectories[:, 0]` and its step t (1-based) is compared
    with `trajectories[:, t]` for t = 1, ..., num_steps.

    Arguments:
        stepper: one state `(C, *N)` -> next state (an emulator or any callable).
        trajectories: reference trajectories, shape `(B, T + 1, C, *N)`; time level 0
            holds the initial states.
        num_steps: rollout length; default `T` (all reference levels). At most `T`.
        metrics: names of per-step metrics to compute, any of `"nrmse"`, `"rmse"`,
            `"mae"`, `"correlation"` (normalised inner product, see
            `correlation`).
        summary_steps: the geometric-mean summary of nRMSE uses the first
            `min(summary_steps, num_steps)` steps (apebench: 100).
        decorrelation_threshold: threshold for `steps_until_decorrelation`.

    Returns:
        A dict with `"num_steps"` (int), each requested metric name mapped to its
        per-step array `(num_steps,)`, and summaries as plain Python numbers:
        `"mean_<metric>"` (arithmetic mean over all steps) for each metric,
        `"nrmse_geometric_mean"` and `"nrmse_geometric_mean_steps"` if nRMSE was
        requested, `"steps_until_decorrelation"` if correlation was requested. Pass
        the dict through `to_json_dict` for JSON.

    Raises:
        ValueError: if `trajectories` has fewer than 4 axes (batch, time, channel,
            space) or fewer than 2 time levels, if `num_steps` is not in
            [1, T], if a metric name is unknown or repeated, or for a bad
            `summary_steps` / `decorrelation_threshold`.
    """
    shape = shape_of(trajectories)
    if len(shape) < 3:
        raise ValueError(
            "trajectories: expected layout (batch, time, channel, *space) with at "
            f"least 3 axes, got shape {shape}"
        )
    available = shape[1] - 1
    if available < 1:
        raise ValueError(
            "trajectories: expected at least 2 time levels (initial state + one "
            f"reference step), got {shape[1]} in shape {shape}"
        )
    if num_steps is None:
        num_steps = available
    num_steps = check_int("num_steps", num_steps, minimum=1)
    if num_steps > available:
        raise ValueError(
            f"num_steps: expected <= {available}, got {num_steps} (the reference steps "
            "in trajectories: time levels - 1)"
        )
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in PER_STEP_METRICS]
    if unknown or not metrics or len(set(metrics)) != len(metrics):
        raise ValueError(
            f"metrics: expected a non-empty sequence of distinct names from "
            f"{sorted(PER_STEP_METRICS)}, got {list(metrics)}"
        )
    summary_steps = check_int("summary_steps", summary_steps, minimum=1)
    if "correlation" in metrics:
        # validate before the (possibly long) rollout
        check_real("decorrelation_threshold", decorrelation_threshold, positive=True,
                   maximum=1.0)

    initial = trajectories[:, 0]
    pred = rollout(stepper, initial, num_steps)
    ref = trajectories[:, 1 : num_steps + 1]

    results: dict[str, Any] = {"num_steps": num_steps}
    for name in metrics:
        per_step = PER_STEP_METRICS[name](pred, ref)
        results[name] = per_step
        results[f"mean_{name}"] = float(np.mean(np.asarray(per_step)))
    if "nrmse" in metrics:
        n = min(summary_steps, num_steps)
        results["nrmse_geometric_mean"] = float(mean_nrmse_geometric(results["nrmse"], n))
        results["nrmse_geometric_mean_steps"] = n
    if "correlation" in metrics:
        results["steps_until_decorrelation"] = int(
            steps_until_decorrelation(results["correlation"], decorrelation_threshold)
        )
    return results


def to_json_dict(results: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a result dict (e.g. from `evaluate_rollout`) to JSON-serialisable form.

    Arrays become (nested) lists of Python floats/ints/bools, scalar arrays and NumPy
    scalars become Python numbers, nested mappings / lists / tuples are converted
    recursively, and `nan`/`inf` are kept as floats (`json.dumps` writes them as
    `NaN`/`Infinity` unless `allow_nan=False`).

    Arguments:
        results: a mapping with string keys.

    Returns:
        A new dict containing only `dict`, `list`, `str`, `int`, `float`,
        `bool` and `None`.

    Raises:
        ValueError: if a key is not a string or a value has an unsupported type.
    """
    if not isinstance(results, Mapping):
        raise ValueError(
            f"results: expected a mapping with string keys, got {type(results).__name__}"
        )
    return _convert(results, "results")


def _convert(value, where: str):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(
                    f"{where}: expected string keys (JSON), got key {key!r} of type "
                    f"{type(key).__name__}"
                )
            out[key] = _convert(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_convert(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.generic) or hasattr(value, "__array__"):
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"{where}: expected a numeric array (JSON), got dtype {array.dtype}"
            )
        return array.tolist()
    raise ValueError(
        f"{where}: expected a dict, list, str, number, bool, None or numeric array "
        f"(JSON), got {type(value).__name__}"
    )
