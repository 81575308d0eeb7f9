"""Supervised rollout: the network chain compared to a precomputed trajectory."""

from __future__ import annotations

from ._chain_fields import Weights, options, weights_option
from ._per_step import PerStepConfiguration
from ._terms import data_target_loss

__all__ = ["Supervised"]


@options
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

    time_level_weights: Weights = weights_option(
        "num_rollout_steps", meaning="one weight per rollout step, num_rollout_steps")

    @property
    def num_time_levels(self) -> int:
        return self.num_rollout_steps + 1

    def _step_loss(self, t, prev, nxt, data, *, ref_stepper=None, residuum_fn=None):
        return data_target_loss(self.time_level_loss, t, nxt, data)
