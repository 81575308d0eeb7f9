"""Teacher forcing: a supervised rollout that is periodically reset to the data."""

from __future__ import annotations

from .._checks import check_int
from ._chain_fields import Weights, option, options, weights_option
from ._per_step import PerStepConfiguration
from ._terms import data_target_loss

__all__ = ["TeacherForcing"]


@options
class TeacherForcing(PerStepConfiguration):
    """Rollout against data with the chain reset to the data every `reset_every` steps.

    With u_0 = data[:, 0], R = num_rollout_steps, k = reset_every:

        for t in 0 .. R-1:
            if t > 0 and t % k == 0: u_t = data[:, t]        (teacher forcing)
            u_{t+1} = stepper(u_t)
            L += w[t] * loss(u_{t+1}, data[:, t+1])
            if cut_bptt and (t+1) % cut_bptt_every == 0: u_{t+1} = stop_gradient(u_{t+1})

    A reset discards the chain, so no gradient crosses it. k = 1 is one-step
    training on R consecutive pairs; k >= R is `Supervised`. Reads R+1 levels.

    Arguments:
        num_rollout_steps: R >= 1 network steps (default 1).
        reset_every: k >= 1 (default 1).
        time_level_loss, cut_bptt, cut_bptt_every, time_level_weights: keyword-only,
            as in `Supervised`.

    Raises:
        ValueError: R, k or cut_bptt_every < 1, or weights not of shape (R,).
        TypeError: time_level_loss is not a loss object, a flag is not a bool.
    """

    reset_every: int = option(1, check_int, positional=True)
    time_level_weights: Weights = weights_option(
        "num_rollout_steps", meaning="one weight per rollout step, num_rollout_steps")

    @property
    def num_time_levels(self) -> int:
        return self.num_rollout_steps + 1

    @property
    def _reset_every(self) -> int:
        return self.reset_every

    def _step_loss(self, t, prev, nxt, data, *, ref_stepper=None, residuum_fn=None):
        return data_target_loss(self.time_level_loss, t, nxt, data)
