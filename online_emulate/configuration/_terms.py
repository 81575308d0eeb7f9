"""Per-step loss terms shared by several configurations and their online specs."""

from __future__ import annotations

from jaxtyping import Array, Float, Int, PyTree

from ..loss import BaseLoss
from .._rollout import Events, stop_gradient, weighted_rollout
from ._utils import batched, time_level

__all__ = ["data_target_loss", "chained_data_loss"]


def data_target_loss(
    time_level_loss: BaseLoss,
    t: int | Int[Array, ""],
    nxt: PyTree[Float[Array, "batch channel *space"]],
    data: PyTree[Float[Array, "batch time channel *space"]],
) -> Float[Array, ""]:
    """Loss of the state after step `t` against the data level `t + 1` (no gradient to data)."""
    return time_level_loss(nxt, stop_gradient(time_level(data, t + 1)))


def chained_data_loss(configuration, data, parts, *, scan) -> Float[Array, ""]:
    """The weighted data loss of consecutive chains: `parts` are `(stepper, num_steps,
    events)`, each continuing from the state the last left, every state compared with
    its data level (`configuration.time_level_weights` in the chains' order)."""
    state, offset, total = time_level(data, 0), 0, 0.0
    term = lambda t, prev, nxt: data_target_loss(configuration.time_level_loss, t, nxt, data)
    for stepper, num_steps, events in parts:
        loss, state = weighted_rollout(
            batched(stepper), state, configuration.time_level_weights[offset:offset + num_steps],
            term=term, scan=scan, time_offset=offset, events=events)
        total, offset = total + loss, offset + num_steps
    return total
