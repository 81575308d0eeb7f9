"""Diverted chain with branches of length one: one-step targets made on the fly."""

from __future__ import annotations

from typing import Optional

from .._checks import check_flag
from .._rollout import stop_gradient
from ._chain_fields import Weights, option, options, weights_option
from ._per_step import PerStepConfiguration
from ._utils import batched

__all__ = ["DivertedChainBranchOne"]


@options
class DivertedChainBranchOne(PerStepConfiguration):
    """Network chain whose every state is compared with one reference step from its predecessor.

    With u_0 = data[:, 0], R = num_rollout_steps and P = ref_stepper:

        for t in 0 .. R-1:
            r = P(u_t)                   (r = stop_gradient(P(u_t)) if cut_div_chain)
            u_{t+1} = stepper(u_t)
            L += w[t] * loss(u_{t+1}, r)
            if cut_bptt and (t+1) % cut_bptt_every == 0: u_{t+1} = stop_gradient(u_{t+1})

    Reads only the initial condition. Without `cut_div_chain` cotangents also flow
    through the reference step back into the chain (P must be differentiable).

    Arguments:
        num_rollout_steps: R >= 1 (default 1).
        time_level_loss, cut_bptt, cut_bptt_every, time_level_weights: keyword-only,
            as in `Supervised`.
        cut_div_chain: keyword-only; stop gradients through `ref_stepper` (default False).

    Raises:
        ValueError: R or cut_bptt_every < 1, or weights not of shape (R,).
        TypeError: time_level_loss is not a loss object, a flag is not a bool.
    """

    cut_div_chain: bool = option(False, check_flag)
    time_level_weights: Weights = weights_option(
        "num_rollout_steps", meaning="one weight per rollout step, num_rollout_steps")

    _needs_ref_stepper = True
    _ref_stepper_use = "it makes the one-step targets on the fly"

    @property
    def num_time_levels(self) -> int:
        return 1

    def _step_loss(self, t, prev, nxt, data, *, ref_stepper=None, residuum_fn=None):
        reference = batched(ref_stepper)(prev)
        if self.cut_div_chain:
            reference = stop_gradient(reference)
        return self.time_level_loss(nxt, reference)

    def _online_blocker(self) -> Optional[str]:
        if self.cut_div_chain:
            return None
        return (
            "with cut_div_chain=False the target P(u_t) carries gradient back into the "
            "chain state, so the loss is not a sum of terms with fixed targets; use "
            "cut_div_chain=True for online estimators."
        )
