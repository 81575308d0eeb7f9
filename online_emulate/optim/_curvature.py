"""The one-step loss whose curvature K-FAC estimates.

A window of data `(B, T, C, *N)` is turned into a batch of one-step problems with
time folded into the batch: inputs are the levels `0..T-2` and targets the levels
`1..T-1` (with `T == 1` the single level is the input and the target is the model's own
prediction, held constant: curvature estimated from the model distribution needs no
target). The prediction is registered with kfac as a squared-error loss scaled like a
mean over channel and space, times `curvature_scale`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["fold_window", "folded_batch_size", "make_curvature_loss"]


def _check_window(batch) -> None:
    if not hasattr(batch, "ndim") or batch.ndim < 4:
        raise ValueError(
            "batch: expected one data window, an array (batch, time, channel, *space) "
            f"with at least 4 axes, got {getattr(batch, 'shape', type(batch).__name__)}"
        )


def fold_window(batch):
    """`(B, T, C, *N)` -> (inputs, targets or None), each `(B * T', C, *N)`."""
    _check_window(batch)
    b, t = batch.shape[:2]
    rest = batch.shape[2:]
    if t == 1:
        return batch.reshape((b,) + rest), None
    inputs = batch[:, :-1].reshape((b * (t - 1),) + rest)
    targets = batch[:, 1:].reshape((b * (t - 1),) + rest)
    return inputs, targets


def folded_batch_size(batch) -> int:
    """Number of one-step problems in a window: `B * max(T - 1, 1)`."""
    _check_window(batch)
    return batch.shape[0] * max(batch.shape[1] - 1, 1)


def make_curvature_loss(
    apply: Callable, *, curvature_scale: float = 1.0
) -> Callable[[Any, jax.Array], jax.Array]:
    """Build `loss(params, batch)`: the registered one-step loss over a window.

    Arguments:
        apply: `apply(params, u)` on a batch of states `(B, C, *N)`, with plain lax ops
            (e.g. from `online_emulate.emulators.functional`).
        curvature_scale: factor on the registered loss (e.g. the total step weight of a
            rollout loss, so the curvature matches the gradient's scale).

    Returns:
        `loss(params, batch) -> scalar`, the mean squared one-step error times
        `curvature_scale`, with the prediction registered via
        `kfac_jax.register_squared_error_loss`.
    """
    from ._compat import import_kfac

    kfac_jax = import_kfac()

    def loss(params, batch):
        inputs, targets = fold_window(batch)
        pred = apply(params, inputs)
        flat_pred = pred.reshape((pred.shape[0], -1))
        if targets is None:
            flat_targets = jax.lax.stop_gradient(flat_pred)
        else:
            flat_targets = targets.reshape(flat_pred.shape)
        per_sample = flat_pred.shape[1]
        kfac_jax.register_squared_error_loss(
            flat_pred, flat_targets, weight=curvature_scale / per_sample
        )
        return curvature_scale * jnp.mean((flat_pred - flat_targets) ** 2)

    return loss
