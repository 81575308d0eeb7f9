"""Residuum training: penalize a residual between consecutive network states."""

from __future__ import annotations

from typing import Optional

from .._checks import check_flag
from .._rollout import stop_gradient
from ._chain_fields import Weights, option, options, weights_option
from ._per_step import PerStepConfiguration

__all__ = ["Residuum"]


@options
class Residuum(PerStepConfiguration):
    """Network chain penalized by `residuum_fn(next, prev)` against zero.

    With u_0 = data[:, 0] and R = num_rollout_steps:

        for t in 0 .. R-1:
            u_{t+1} = stepper(u_t)
            p = stop_gradient(u_t) if cut_prev else u_t
            n = stop_gradient(u_{t+1}) if cut_next else u_{t+1}
            L += w[t] * loss(residuum_fn(n, p))             (loss against zero)
            if cut_bptt and (t+1) % cut_bptt_every == 0: u_{t+1} = stop_gradient(u_{t+1})

    `residuum_fn` acts on batches `(B, C, *N)`. Reads only the initial condition.
    With residuum_fn(n, p) = n - P(p) and cut_prev=True this is exactly
    `DivertedChainBranchOne(cut_div_chain=True)` in loss and gradient.

    Arguments:
        num_rollout_steps: R >= 1 (default 1).
        time_level_loss, cut_bptt, cut_bptt_every, time_level_weights: keyword-only,
            as in `Supervised`.
        cut_prev, cut_next: keyword-only; stop gradients into the previous / next
            state inside the residuum (default False).

    Raises:
        ValueError: R or cut_bptt_every < 1, or weights not of shape (R,).
        TypeError: time_level_loss is not a loss object, a flag is not a bool.
    """

    cut_prev: bool = option(False, check_flag)
    cut_next: bool = option(False, check_flag)
    time_level_weights: Weights = weights_option(
        "num_rollout_steps", meaning="one weight per rollout step, num_rollout_steps")

    _needs_residuum_fn = True
    _residuum_fn_use = "its loss is the residuum between consecutive states"

    @property
    def num_time_levels(self) -> int:
        return 1

    def _step_loss(self, t, prev, nxt, data, *, ref_stepper=None, residuum_fn=None):
        if self.cut_prev:
            prev = stop_gradient(prev)
        if self.cut_next:
            nxt = stop_gradient(nxt)
        return self.time_level_loss(residuum_fn(nxt, prev))

    def _online_blocker(self) -> Optional[str]:
        if self.cut_prev and not self.cut_next:
            return None
        return (
            "online estimators need each term to depend on the parameters only through the "
            "new state u_{t+1}, i.e. cut_prev=True and cut_next=False; got "
            f"cut_prev={self.cut_prev}, cut_next={self.cut_next}."
        )
