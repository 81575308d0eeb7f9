"""Per-step description of a loss, for gradient estimators that run forward in time."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._rollout import Events

__all__ = ["OnlineSpec"]


@dataclasses.dataclass(frozen=True, eq=False)
class OnlineSpec:
    """How a configuration's loss splits into one term per network step.

    With `u_0 = data[:, 0]`, `u_{t+1} = vmap(stepper)(u_t)` (after the optional
    teacher-forcing reset of `u_t`), the configuration's loss is

        L = sum_{t=0}^{num_steps-1} weights[t] * step_loss(t, u_t, u_{t+1}, data, ...)

    Attributes:
        num_steps: number of network steps `R`.
        weights: `(num_steps,)` weights of the per-step terms.
        reset_every: teacher forcing; when not None, before every step `t > 0` with
            `t % reset_every == 0` the state is replaced by `data[:, t]` (and the
            gradient path through the old state ends).
        cut_every: gradient cuts (`cut_bptt`); when not None, before every step `t > 0`
            with `t % cut_every == 0` the state keeps its value but carries no
            gradient from earlier steps (a `stop_gradient` on `u_t`).
        uses_data_targets: whether `step_loss` reads `data` beyond the first level.
        uses_ref_stepper: whether `step_loss` calls `ref_stepper`.
        uses_residuum_fn: whether `step_loss` calls `residuum_fn`.
        step_loss: `step_loss(t, prev, nxt, data, *, ref_stepper=None,
            residuum_fn=None) -> scalar` on batches `(B, C, *N)` (or PyTrees); `t`
            (0-based) may be a traced integer. It is the UNWEIGHTED term of step `t`;
            its targets carry no gradient (stop_gradient applied), while `prev` and
            `nxt` enter as the configuration implies. `ref_stepper` acts on one
            sample and is vmapped inside; `residuum_fn` acts on batches.
    """

    num_steps: int
    weights: Float[Array, "num_steps"]
    reset_every: Optional[int]
    uses_data_targets: bool
    uses_ref_stepper: bool
    uses_residuum_fn: bool
    step_loss: Callable[..., Float[Array, ""]]
    cut_every: Optional[int] = None

    @property
    def events(self) -> Events:
        """The cuts and resets as the rollout kernel's `Events` (after step t-1 = before step t)."""
        return Events(cut_every=self.cut_every, reset_every=self.reset_every)

    def reset_at(self, t: int | Int[Array, ""]) -> Bool[Array, ""]:
        """Whether the state is replaced by `data[:, t]` before step `t` (teacher forcing)."""
        return _every(self.reset_every, t)

    def cut_at(self, t: int | Int[Array, ""]) -> Bool[Array, ""]:
        """Whether the gradient path ends before step `t`: a teacher reset or a cut."""
        return self.reset_at(t) | _every(self.cut_every, t)


def _every(period: Optional[int], t) -> Bool[Array, ""]:
    if period is None:
        return jnp.asarray(False)
    t = jnp.asarray(t)
    return (t > 0) & (t % period == 0)
