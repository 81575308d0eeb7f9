"""Validation of trajectory data: arrays or PyTrees of `(samples, time, C, *N)` arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, PyTree

__all__ = ["check_trajectories", "trajectory_shape"]


def trajectory_shape(data: PyTree, *, name: str = "data") -> tuple[int, int]:
    """Return `(num_samples, num_time_levels)` of array or PyTree trajectory data.

    Raises:
        TypeError: if `data` has no array leaves.
        ValueError: if a leaf has fewer than 3 axes `(samples, time, channel, ...)` or the
            leaves disagree on the sample or time axis.
    """
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise TypeError(f"{name}: expected an array or a PyTree of arrays, got {data!r}")
    shapes = []
    for leaf in leaves:
        shape = getattr(leaf, "shape", None)
        if shape is None:
            raise TypeError(
                f"{name}: expected arrays of shape (samples, time, channel, *space), got a "
                f"leaf of type {type(leaf).__name__}"
            )
        if len(shape) < 3:
            raise ValueError(
                f"{name}: expected arrays of shape (samples, time, channel, *space) with "
                f"at least 3 axes, got shape {tuple(shape)}"
            )
        shapes.append(tuple(shape))
    first = shapes[0][:2]
    for shape in shapes[1:]:
        if shape[:2] != first:
            raise ValueError(
                f"{name}: expected leaves that share (samples, time) = {first}, got a leaf "
                f"of shape {shape}"
            )
    return first


@jax.jit
def _finite_levels(leaf: Array) -> Bool[Array, "samples time"]:
    # one compiled program instead of three eager ones (each eager op compiles on first use)
    return jnp.isfinite(leaf).reshape(leaf.shape[0], leaf.shape[1], -1).all(-1)


def _finite(leaf: Array) -> np.ndarray:
    """Whether each (sample, time) level of `leaf` is finite: with NumPy where the data
    already lies in host memory (no program to compile), else on its device."""
    if all(device.platform == "cpu" for device in leaf.devices()):
        return np.isfinite(np.asarray(leaf)).reshape(leaf.shape[0], leaf.shape[1], -1).all(-1)
    return np.asarray(_finite_levels(leaf))


def check_trajectories(data: PyTree, *, name: str = "data", check_finite: bool = True) -> PyTree:
    """Validate trajectories and convert leaves to jax arrays.

    Returns:
        The data with every leaf as a `jax.Array`.

    Raises:
        TypeError / ValueError: as `trajectory_shape`; ValueError if a leaf holds NaN or inf
            (with the first offending (sample, time) index) when `check_finite`.
    """
    trajectory_shape(data, name=name)
    data = jax.tree_util.tree_map(jnp.asarray, data)
    if check_finite:
        for path, leaf in jax.tree_util.tree_leaves_with_path(data):
            finite = _finite(leaf)
            if not finite.all():
                s, t = np.argwhere(~finite)[0]
                where = jax.tree_util.keystr(path) or ""
                raise ValueError(
                    f"{name}{where}: expected finite values, got NaN/inf at sample {s}, "
                    f"time level {t}"
                )
    return data
