"""Rollout error on held-out trajectories during training."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._compile import jit
from .._rollout import bind
from ..data import check_trajectories
from ..metrics import nrmse, rollout
from ._base import Callback, CallbackContext

__all__ = ["ValidationRolloutCallback"]


class ValidationRolloutCallback(Callback):
    """Mean nRMSE of an autoregressive rollout against held-out trajectories.

    nRMSE_t = ||pred_t - ref_t|| / ||ref_t|| per sample, averaged over samples and over the
    `num_steps` predicted steps, with pred_0 = ref_0 and pred_{t+1} = f(pred_t).

    Arguments:
        trajectories: held-out reference `(samples, time, C, *N)` (a single array).
        every: period in steps.
        num_steps: rollout length (default: all available levels - 1).
        name: history key. Default "val_nrmse".
    """

    default_name = "val_nrmse"

    def __init__(
        self,
        trajectories: jax.Array,
        *,
        every: int,
        num_steps: int | None = None,
        name: str | None = None,
    ):
        super().__init__(every=every, name=name)
        trajectories = check_trajectories(trajectories, name="trajectories")
        if not isinstance(trajectories, jax.Array):
            raise TypeError("trajectories: expected a single array, got a PyTree")
        available = trajectories.shape[1] - 1
        if num_steps is None:
            num_steps = available
        if not 1 <= num_steps <= available:
            raise ValueError(
                f"num_steps: expected an int in [1, {available}] (trajectory length - 1), "
                f"got {num_steps!r}"
            )
        self.trajectories = trajectories[:, : num_steps + 1]
        self.num_steps = num_steps

    def __call__(self, ctx: CallbackContext) -> float:
        def build():
            apply = ctx.apply

            @jit
            def error(params, ref):
                pred = rollout(bind(apply, params), ref[:, 0], ref.shape[1] - 1)
                return jnp.mean(nrmse(pred, ref[:, 1:]))

            return error

        return float(self._cached(ctx, build)(ctx.params, self.trajectories))
