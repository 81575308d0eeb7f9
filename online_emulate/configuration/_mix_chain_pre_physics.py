"""Mix chain: reference-stepper steps first, then network steps, all compared to data."""

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

__all__ = ["MixChainPrePhysics"]


@frozen(eq=False)
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

    num_rollout_steps: int
    num_pre_physics_steps: int
    time_level_loss: BaseLoss
    cut_bptt: bool
    cut_bptt_every: int
    time_level_weights: Float[Array, "num_pre_physics_steps+num_rollout_steps"]

    _needs_ref_stepper = True
    _ref_stepper_use = "it makes the first steps of the chain"

    def __init__(
        self,
        num_rollout_steps: int = 1,
        num_pre_physics_steps: int = 1,
        *,
        time_level_loss: BaseLoss = MSELoss(),
        cut_bptt: bool = False,
        cut_bptt_every: int = 1,
        time_level_weights: Optional[Float[Array, "num_pre_physics_steps+num_rollout_steps"]] = None,
    ):
        options = chain_options(num_rollout_steps, time_level_loss, cut_bptt, cut_bptt_every)
        physics = check_int("num_pre_physics_steps", num_pre_physics_steps)
        self._set(
            **options,
            num_pre_physics_steps=physics,
            time_level_weights=check_weights(
                "time_level_weights", time_level_weights, options["num_rollout_steps"] + physics,
                "one weight per step, num_pre_physics_steps + num_rollout_steps",
            ),
        )

    @property
    def num_time_levels(self) -> int:
        return self.num_rollout_steps + self.num_pre_physics_steps + 1

    def _loss(self, stepper, data, *, ref_stepper, residuum_fn, scan):
        physics = self.num_pre_physics_steps
        term = lambda t, prev, nxt: data_target_loss(self.time_level_loss, t, nxt, data)
        physics_loss, state = weighted_rollout(
            batched(ref_stepper), time_level(data, 0), self.time_level_weights[:physics],
            term=term, scan=scan,
        )
        network_loss, _ = weighted_rollout(
            batched(stepper), state, self.time_level_weights[physics:],
            term=term, scan=scan, time_offset=physics,
            events=self._cuts,
        )
        return physics_loss + network_loss

    def _why_not_online(self) -> str:
        return (
            "its chain starts with reference-stepper steps, which the per-step online "
            "recursion (u_{t+1} = stepper(u_t) from data[:, 0]) does not describe."
        )
