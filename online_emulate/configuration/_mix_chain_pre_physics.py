"""Mix chain: reference-stepper steps first, then network steps, all compared to data."""

from __future__ import annotations

from .._checks import check_int
from .._rollout import Events
from ._chain_fields import ChainConfiguration, Weights, option, options, weights_option
from ._terms import chained_data_loss

__all__ = ["MixChainPrePhysics"]


@options
class MixChainPrePhysics(ChainConfiguration):
    """P reference steps from the initial condition, then R network steps.

    With u_0 = data[:, 0], P = num_pre_physics_steps, R = num_rollout_steps:

        for t in 0 .. P-1:                    (physics part)
            u_{t+1} = ref_stepper(u_t);  L += w[t] * loss(u_{t+1}, data[:, t+1])
        for i in 0 .. R-1, t = P + i:         (network part)
            u_{t+1} = stepper(u_t);  L += w[t] * loss(u_{t+1}, data[:, t+1])
            if cut_bptt and (i+1) % cut_bptt_every == 0: u_{t+1} = stop_gradient(u_{t+1})

    The network starts from a state the reference stepper produced (with its own
    error relative to the data), which exposes it to a distribution shift. The
    physics terms do not depend on the network; they enter the loss value only.
    The cut clock counts network steps. Reads P+R+1 time levels.

    Arguments:
        num_rollout_steps: R >= 1 (default 1).
        num_pre_physics_steps: P >= 1 (default 1).
        time_level_loss, cut_bptt, cut_bptt_every: keyword-only, as in `Supervised`.
        time_level_weights: keyword-only `(P+R,)` weights w (default ones).

    Raises:
        ValueError: R, P or cut_bptt_every < 1, or weights not of shape (P+R,).
        TypeError: time_level_loss is not a loss object, a flag is not a bool.
    """

    num_pre_physics_steps: int = option(1, check_int, positional=True)
    time_level_weights: Weights = weights_option(
        "num_rollout_steps", "num_pre_physics_steps",
        meaning="one weight per step, num_pre_physics_steps + num_rollout_steps")

    _needs_ref_stepper = True
    _ref_stepper_use = "it makes the first steps of the chain"

    @property
    def num_time_levels(self) -> int:
        return self.num_rollout_steps + self.num_pre_physics_steps + 1

    def _loss(self, stepper, data, *, ref_stepper, residuum_fn, scan):
        return chained_data_loss(self, data, [(ref_stepper, self.num_pre_physics_steps, Events()),
                                         (stepper, self.num_rollout_steps, self._cuts)], scan=scan)

    def _why_not_online(self) -> str:
        return (
            "its chain starts with reference-stepper steps, which the per-step online "
            "recursion (u_{t+1} = stepper(u_t) from data[:, 0]) does not describe."
        )
