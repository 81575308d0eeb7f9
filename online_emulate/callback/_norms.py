"""Gradient and weight norms during training."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from .._compile import jit
from .._rollout import bind
from ._base import Callback, CallbackContext
from ._evaluation_batch import evaluation_windows

__all__ = ["GradNormCallback", "WeightNormCallback"]


class GradNormCallback(Callback):
    """Global L2 norm of the training configuration's gradient (exact BPTT).

    Evaluated on a fixed set of up to `max_windows` training windows, so the values of
    different steps are comparable.
    """

    default_name = "grad_norm"

    def __init__(self, *, every: int, max_windows: int = 256, name: str | None = None):
        super().__init__(every=every, name=name)
        self.max_windows = max_windows

    def __call__(self, ctx: CallbackContext) -> float:
        def build():
            windows = evaluation_windows(ctx.sampler, ctx.data, self.max_windows)
            config, apply = ctx.configuration, ctx.apply

            def loss(params, windows):
                return config(
                    bind(apply, params), windows,
                    ref_stepper=ctx.ref_stepper, residuum_fn=ctx.residuum_fn,
                )

            norm = jit(lambda params, windows: optax.global_norm(jax.grad(loss)(params, windows)))
            # windows stay an argument: closed over, they would be compiled in as constants
            return functools.partial(norm, windows=windows)

        return float(self._cached(ctx, build)(ctx.params))


class WeightNormCallback(Callback):
    """Global L2 norm of the parameters."""

    default_name = "weight_norm"

    def __call__(self, ctx: CallbackContext) -> float:
        return float(jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(ctx.params))))
