"""Array-layout checks shared by the metric functions (run eagerly, before any tracing);
the integer checks are the package-wide `online_emulate._checks.check_int`."""

from __future__ import annotations

import numpy as np


def shape_of(x) -> tuple[int, ...]:
    """Shape of an array-like without forcing a device transfer."""
    shape = getattr(x, "shape", None)
    if shape is None:
        shape = np.shape(x)
    return tuple(int(s) for s in shape)


def check_trajectory_pair(pred, ref, *, pred_name: str = "pred", ref_name: str = "ref"):
    """Check that `pred` and `ref` are both `(B, T, C, *N)` with equal shapes.

    Raises:
        ValueError: if either has fewer than 3 axes or if the shapes differ.
    """
    pred_shape = shape_of(pred)
    ref_shape = shape_of(ref)
    for name, shape in ((pred_name, pred_shape), (ref_name, ref_shape)):
        if len(shape) < 3:
            raise ValueError(
                f"{name}: expected layout (batch, time, channel, *space) with at least "
                f"3 axes, got shape {shape}"
            )
    if pred_shape != ref_shape:
        raise ValueError(
            f"{pred_name}: expected {ref_shape} (the shape of {ref_name}), got {pred_shape}"
        )


def check_per_step(values, name: str) -> int:
    """Check that `values` is a non-empty 1-D per-step array; return its length."""
    shape = shape_of(values)
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(
            f"{name}: expected a non-empty 1-D array with one entry per rollout step "
            f"(shape (T,)), got shape {shape}"
        )
    return shape[0]
