"""Per-step loss terms shared by several configurations and their online specs."""

from __future__ import annotations

from jaxtyping import Array, Float, Int, PyTree

from ..loss import BaseLoss
from .._rollout import stop_gradient
from ._utils import time_level

__all__ = ["data_target_loss"]


def data_target_loss(
    time_level_loss: BaseLoss,
    t: int | Int[Array, ""],
    nxt: PyTree[Float[Array, "batch channel *space"]],
    data: PyTree[Float[Array, "batch time channel *space"]],
) -> Float[Array, ""]:
    """Loss of the state after step `t` against the data level `t + 1` (no gradient to data)."""
    return time_level_loss(nxt, stop_gradient(time_level(data, t + 1)))
