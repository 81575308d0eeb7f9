"""Argument checks shared by the metric functions (run eagerly, before any tracing)."""

from __future__ import annotations

import numbers

import numpy as np


def shape_of(x) -> tuple[int, ...]:
    """Shape of an array-like without forcing a device transfer."""
    shape = getattr(x, "shape", None)
    if shape is None:
        shape = np.shape(x)
    return tuple(int(s) for s in shape)


def check_trajectory_pair(pred, ref, *, pred_name: str = "pred", ref_name: str = "ref"):
    """Check that ``pred`` and ``ref`` are both ``(B, T, C, *N)`` with equal shapes.

    Raises:
        ValueError: if either has fewer than 3 axes or if the shapes differ.
    """
    pred_shape = shape_of(pred)
    ref_shape = shape_of(ref)
    for name, shape in ((pred_name, pred_shape), (ref_name, ref_shape)):
        if len(shape) < 3:
            raise ValueError(
                f"`{name}` must have layout (batch, time, channel, *space) with at least "
                f"3 axes; got shape {shape}."
            )
    if pred_shape != ref_shape:
        raise ValueError(
            f"`{pred_name}` and `{ref_name}` must have the same shape; expected "
            f"{ref_shape} (the shape of `{ref_name}`), got {pred_shape}."
        )


def check_int(value, name: str, *, minimum: int) -> int:
    """Check that ``value`` is an integer >= ``minimum`` and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}; got {value!r} "
            f"of type {type(value).__name__}."
        )
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value}.")
    return int(value)


def check_per_step(values, name: str) -> int:
    """Check that ``values`` is a non-empty 1-D per-step array; return its length."""
    shape = shape_of(values)
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 1-D array with one entry per rollout step "
            f"(shape (T,)); got shape {shape}."
        )
    return shape[0]
