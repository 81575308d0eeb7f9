"""Loss of another configuration during training."""

from __future__ import annotations

import functools

import jax

from .._compile import jit
from .._rollout import bind
from ..configuration import BaseConfiguration
from ..data import WindowSampler, trajectory_shape
from ._base import Callback, CallbackContext
from ._evaluation_batch import evaluation_windows

__all__ = ["LossCallback"]


class LossCallback(Callback):
    """Record the loss of `configuration` (e.g. a long rollout) every `every` steps.

    Evaluated on up to `max_windows` windows of the training data (or of `data`, if
    given), cut to that configuration's own window length.

    Arguments:
        configuration: any online_emulate configuration.
        every: period in steps.
        data: trajectories `(samples, time, C, *N)`; defaults to the trainer's data.
        max_windows: number of windows evaluated (spread evenly). Default 256.
        name: history key. Default "loss_<ConfigurationName>".
    """

    def __init__(
        self,
        configuration: BaseConfiguration,
        *,
        every: int,
        data: jax.Array | None = None,
        max_windows: int = 256,
        name: str | None = None,
    ):
        super().__init__(every=every, name=name or f"loss_{type(configuration).__name__}")
        self.configuration = configuration
        self.data = data
        self.max_windows = max_windows

    def __call__(self, ctx: CallbackContext) -> float:
        def build():
            data = ctx.data if self.data is None else self.data
            samples, levels = trajectory_shape(data, name="LossCallback.data")
            sampler = WindowSampler(samples, levels, self.configuration.num_time_levels, 1)
            windows = evaluation_windows(sampler, data, self.max_windows)
            config, apply = self.configuration, ctx.apply
            evaluate = jit(
                lambda params, windows: config(
                    bind(apply, params), windows,
                    ref_stepper=ctx.ref_stepper, residuum_fn=ctx.residuum_fn,
                )
            )
            # windows stay an argument: closed over, they would be compiled in as constants
            return functools.partial(evaluate, windows=windows)

        return float(self._cached(ctx, build)(ctx.params))
