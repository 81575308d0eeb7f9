"""Mix chain: network steps followed by reference-stepper steps, all compared to data."""

from __future__ import annotations

from typing import Optional

from jaxtyping import Array, Float

from .._frozen import frozen
from .._checks import check_int
from ..loss import BaseLoss, MSELoss
from ._chain_fields import ChainConfiguration, chain_options
from .._rollout import weighted_rollout
from ._terms import data_target_loss
from ._utils import batched, time_level
from ._validation import check_weights

__all__ = ["MixChainPostPhysics"]


@frozen(eq=False)
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

    num_rollout_steps: int
    num_post_physics_steps: int
    time_level_loss: BaseLoss
    cut_bptt: bool
    cut_bptt_every: int
    time_level_weights: Float[Array, "num_rollout_steps+num_post_physics_steps"]

    _needs_ref_stepper = True
    _ref_stepper_use = "it continues the chain after the network steps"

    def __init__(
        self,
        num_rollout_steps: int = 1,
        num_post_physics_steps: int = 1,
        *,
        time_level_loss: BaseLoss = MSELoss(),
        cut_bptt: bool = False,
        cut_bptt_every: int = 1,
        time_level_weights: Optional[Float[Array, "num_rollout_steps+num_post_physics_steps"]] = None,
    ):
        options = chain_options(num_rollout_steps, time_level_loss, cut_bptt, cut_bptt_every)
        physics = check_int("num_post_physics_steps", num_post_physics_steps)
        self._set(
            **options,
            num_post_physics_steps=physics,
            time_level_weights=check_weights(
                "time_level_weights", time_level_weights, options["num_rollout_steps"] + physics,
                "one weight per step, num_rollout_steps + num_post_physics_steps",
            ),
        )

    @property
    def num_time_levels(self) -> int:
        return self.num_rollout_steps + self.num_post_physics_steps + 1

    def _loss(self, stepper, data, *, ref_stepper, residuum_fn, scan):
        rollout = self.num_rollout_steps
        term = lambda t, prev, nxt: data_target_loss(self.time_level_loss, t, nxt, data)
        network_loss, state = weighted_rollout(
            batched(stepper), time_level(data, 0), self.time_level_weights[:rollout],
            term=term, scan=scan, events=self._cuts,
        )
        physics_loss, _ = weighted_rollout(
            batched(ref_stepper), state, self.time_level_weights[rollout:],
            term=term, scan=scan, time_offset=rollout,
        )
        return network_loss + physics_loss

    def _why_not_online(self) -> str:
        return "its physics terms depend on the network state through later reference steps."
