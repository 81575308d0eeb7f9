"""Mix chain: network steps followed by reference-stepper steps, all compared to data."""

from __future__ import annotations

from .._checks import check_int
from .._rollout import Events
from ._chain_fields import ChainConfiguration, Weights, option, options, weights_option
from ._terms import chained_data_loss

__all__ = ["MixChainPostPhysics"]


@options
class MixChainPostPhysics(ChainConfiguration):
    """R network steps, then P reference steps continuing from the network state.

    With u_0 = data[:, 0], R = num_rollout_steps, P = num_post_physics_steps:

        for t in 0 .. R-1:                    (network part)
            u_{t+1} = stepper(u_t);  L += w[t] * loss(u_{t+1}, data[:, t+1])
            if cut_bptt and (t+1) % cut_bptt_every == 0: u_{t+1} = stop_gradient(u_{t+1})
        for t in R .. R+P-1:                  (physics part, never cut)
            u_{t+1} = ref_stepper(u_t);  L += w[t] * loss(u_{t+1}, data[:, t+1])

    Gradients of the physics terms flow back through the reference steps into the
    network chain. As upstream, a cut after the last network step (cut_bptt and
    R % cut_bptt_every == 0) also stops that flow. Reads R+P+1 time levels.

    Arguments:
        num_rollout_steps: R >= 1 (default 1).
        num_post_physics_steps: P >= 1 (default 1).
        time_level_loss, cut_bptt, cut_bptt_every: keyword-only, as in `Supervised`.
        time_level_weights: keyword-only `(R+P,)` weights w (default ones).

    Raises:
        ValueError: R, P or cut_bptt_every < 1, or weights not of shape (R+P,).
        TypeError: time_level_loss is not a loss object, a flag is not a bool.
    """

    num_post_physics_steps: int = option(1, check_int, positional=True)
    time_level_weights: Weights = weights_option(
        "num_rollout_steps", "num_post_physics_steps",
        meaning="one weight per step, num_rollout_steps + num_post_physics_steps")

    _needs_ref_stepper = True
    _ref_stepper_use = "it continues the chain after the network steps"

    @property
    def num_time_levels(self) -> int:
        return self.num_rollout_steps + self.num_post_physics_steps + 1

    def _loss(self, stepper, data, *, ref_stepper, residuum_fn, scan):
        return chained_data_loss(self, data, [(stepper, self.num_rollout_steps, self._cuts),
                                         (ref_stepper, self.num_post_physics_steps, Events())], scan=scan)

    def _why_not_online(self) -> str:
        return "its physics terms depend on the network state through later reference steps."
