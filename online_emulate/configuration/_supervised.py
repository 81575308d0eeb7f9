"""Supervised rollout: the network chain compared to a precomputed trajectory."""

from __future__ import annotations

from typing import Optional

from jaxtyping import Array, Float

from .._frozen import frozen
from ..loss import BaseLoss, MSELoss
from ._chain_fields import chain_options
from ._per_step import PerStepConfiguration
from ._terms import data_target_loss
from ._validation import check_weights

__all__ = ["Supervised"]


@frozen(eq=False)
class Supervised(PerStepConfiguration):
    """Supervised rollout training against reference data.

    With u_0 = data[:, 0] and R = num_rollout_steps:

        for t in 0 .. R-1:
            u_{t+1} = stepper(u_t)
            L += w[t] * loss(u_{t+1}, data[:, t+1])
            if cut_bptt and (t+1) % cut_bptt_every == 0: u_{t+1} = stop_gradient(u_{t+1})

    The cut is placed after the loss, so every step's own term still reaches the
    parameters. Reads R+1 time levels; needs neither `ref_stepper` nor `residuum_fn`.

    Arguments:
        num_rollout_steps: R >= 1 network steps (default 1).
        time_level_loss: keyword-only loss object (default `MSELoss()`).
        cut_bptt: keyword-only; stop gradients along the chain (default False).
        cut_bptt_every: keyword-only; cut after every k-th step (default 1).
        time_level_weights: keyword-only `(R,)` weights w (default ones).

    Raises:
        ValueError: R or cut_bptt_every < 1, or weights not of shape (R,).
        TypeError: time_level_loss is not a loss object, a flag is not a bool.
    """

    num_rollout_steps: int
    time_level_loss: BaseLoss
    cut_bptt: bool
    cut_bptt_every: int
    time_level_weights: Float[Array, "num_rollout_steps"]

    def __init__(
        self,
        num_rollout_steps: int = 1,
        *,
        time_level_loss: BaseLoss = MSELoss(),
        cut_bptt: bool = False,
        cut_bptt_every: int = 1,
        time_level_weights: Optional[Float[Array, "num_rollout_steps"]] = None,
    ):
        options = chain_options(num_rollout_steps, time_level_loss, cut_bptt, cut_bptt_every)
        self._set(
            **options,
            time_level_weights=check_weights(
                "time_level_weights", time_level_weights, options["num_rollout_steps"],
                "one weight per rollout step, num_rollout_steps",
            ),
        )

    @property
    def num_time_levels(self) -> int:
        return self.num_rollout_steps + 1

    def _step_loss(self, t, prev, nxt, data, *, ref_stepper=None, residuum_fn=None):
        return data_target_loss(self.time_level_loss, t, nxt, data)
