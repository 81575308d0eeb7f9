"""Gradient and weight norms during training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ._base import Callback, CallbackContext
from ._evaluation_batch import evaluation_windows

__all__ = ["GradNormCallback", "WeightNormCallback"]


class GradNormCallback(Callback):
    """Global L2 norm of the training configuration's gradient (exact BPTT).

    Evaluated on a fixed set of up to `max_windows` training windows, so the values of
    different steps are comparable.
    """

    default_name = "grad_norm"

    def __init__(self, *, every: int, max_windows: int = 256, name=None):
        super().__init__(every=every, name=name)
        self.max_windows = max_windows
        self._cache = None

    def __call__(self, ctx: CallbackContext):
        if self._cache is None or self._cache[0] is not ctx.apply:
            windows = evaluation_windows(ctx.sampler, ctx.data, self.max_windows)
            config, apply = ctx.configuration, ctx.apply

            @jax.jit
            def norm(params, windows):
                grads = jax.grad(
                    lambda p: config(
                        lambda u: apply(p, u),
                        windows,
                        ref_stepper=ctx.ref_stepper,
                        residuum_fn=ctx.residuum_fn,
                    )
                )(params)
                return optax.global_norm(grads)

            self._cache = (ctx.apply, norm, windows)
        _, norm, windows = self._cache
        return float(norm(ctx.params, windows))


class WeightNormCallback(Callback):
    """Global L2 norm of the parameters."""

    default_name = "weight_norm"

    def __call__(self, ctx: CallbackContext):
        return float(jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(ctx.params))))
