"""Configuration-specific argument checks (losses, weights, data levels), run at
construction and at call time before anything is traced. The generic checks (ints,
flags, callables) are `online_emulate._checks`."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..loss import BaseLoss, as_loss

__all__ = [
    "check_loss",
    "check_weights",
    "check_data",
]


def check_loss(name: str, value: Any) -> BaseLoss:
    """Require an `online_emulate.loss` loss object (a trainax loss is wrapped)."""
    value = as_loss(value)
    if not isinstance(value, BaseLoss):
        raise TypeError(
            f"{name}: expected a loss from online_emulate.loss (an instance of BaseLoss, "
            f"e.g. MSELoss()), got {value!r} ({type(value).__name__})"
        )
    return value


def check_weights(name: str, value: Optional[Any], length: int, meaning: str):
    """Return a float `(length,)` weight array; None means all ones.

    Raises:
        ValueError: if the weights are not one-dimensional of the expected length
            (upstream silently clamped wrong lengths).
    """
    if value is None:
        # built on the host: `jnp.ones` compiles two small programs per length
        return jnp.asarray(np.ones((length,), jnp.result_type(float)))
    array = jnp.asarray(value)
    if array.ndim != 1 or array.shape[0] != length:
        raise ValueError(
            f"{name}: expected shape ({length},) ({meaning}), got shape {tuple(array.shape)}"
        )
    if not jnp.issubdtype(array.dtype, jnp.floating):
        array = array.astype(jnp.result_type(float))
    return array


def check_data(data: Any, num_time_levels: int, configuration: str) -> None:
    """Check `data` is an array or PyTree of arrays `(batch, time, C, *N)` with enough levels.

    Raises:
        ValueError: for an empty PyTree, a non-array leaf, a leaf with fewer than
            three axes, leaves disagreeing on batch or time size, or fewer than
            `num_time_levels` time levels.
    """
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError(
            f"data: expected an array or a PyTree of arrays (batch, time, channel, *space), "
            f"got an empty PyTree {data!r:.80}"
        )
    sizes = set()
    for leaf in leaves:
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise ValueError(
                "data: expected an array or a PyTree of arrays (batch, time, channel, *space), "
                f"got a leaf of type {type(leaf).__name__}"
            )
        if len(leaf.shape) < 3:
            raise ValueError(
                "data: expected leaves with at least 3 axes (batch, time, channel, *space), "
                f"got a leaf of shape {tuple(leaf.shape)}"
            )
        sizes.add(tuple(leaf.shape[:2]))
    if len(sizes) != 1:
        raise ValueError(
            "data: expected leaves that share the batch and time sizes, got (batch, time) "
            f"sizes {sorted(sizes)}"
        )
    (_, num_given), = sizes
    if num_given < num_time_levels:
        raise ValueError(
            f"data: expected at least {num_time_levels} time levels (axis 1) for "
            f"{configuration}, got {num_given}"
        )
