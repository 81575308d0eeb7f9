"""How a trainer turns gradients into parameter updates, chunk by chunk.

Both rules run `num_steps` steps from `step0` on the trainer's window schedule, starting
from `anchor` (`_guard.Anchor`: which state to fall back to), and return
`(params, opt_state, losses, done, bad, anchor)`: `losses` the pre-update loss of each
step (a fixed-capacity buffer), `done` the number of steps whose update was applied,
`bad` whether a non-finite loss, gradient or update stopped the chunk, and `anchor` the
state a divergence keeps (see `_guard`: the latest state whose loss and gradient were
finite and whose loss was sane). The optax chunk is deterministic: run again from its
start for `anchor.step - step0` steps, it returns the anchor's state. The K-FAC loop
keeps that state in `anchor.state`.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._guard import DEFAULT_DIVERGENCE_FACTOR, advance
from ._program import all_finite

__all__ = ["UpdateRule", "OptaxRule", "KFACRule", "apply_update"]

_all_finite_jit = jax.jit(all_finite)
_advance_jit = jax.jit(advance, static_argnames="factor")


def _copy(tree):
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), tree)


def _step_key(key, step):
    return jax.random.fold_in(jax.random.fold_in(key, 0x5EED), step)


class UpdateRule(Protocol):
    """The protocol of `OptaxRule` and `KFACRule`."""

    def init(self, params, *, bound, key, first_batch) -> Any:
        """The optimizer state for `params` of the problem `bound` (`Estimator.bind`);
        `first_batch()` returns the first minibatch
        (a callable: gathering it costs a dozen small compilations, and only a rule that
        needs an example batch should pay them)."""

    def chunk(self, *, loss_and_grad: Callable, sampler, capacity: int, while_loop) -> Callable:
        """The function that runs a chunk of steps (see the module docstring)."""


class OptaxRule:
    """Updates by an optax transformation; gathering, gradient and update of a whole chunk
    run inside one compiled `while_loop` (Python is visited between chunks only).

    Transforms with extra arguments (`optax.GradientTransformationExtraArgs`) receive the
    loss (`value=`, for `optax.contrib.reduce_on_plateau`), the gradient (`grad=`) and the
    minibatch (`batch=`, for the K-FAC preconditioner).
    """

    def __init__(self, transform: optax.GradientTransformation, *,
                 divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR):
        self.transform = transform
        self.divergence_factor = divergence_factor

    def init(self, params, **_) -> Any:
        return self.transform.init(params)

    def update(self, loss_and_grad: Callable) -> Callable:
        """`update(params, opt_state, batch) -> (params, opt_state, loss, finite, usable)`:
        one step; `usable` says the loss and gradient are finite, `finite` also the new
        parameters."""
        transform = self.transform

        def update(params, opt_state, batch):
            loss, grads = loss_and_grad(params, batch)
            new_params, new_opt_state, finite, usable = apply_update(
                transform, params, opt_state, loss, grads, value=loss, grad=grads, batch=batch)
            return new_params, new_opt_state, loss, finite, usable

        return update

    def chunk(self, *, loss_and_grad, sampler, capacity,
              while_loop=jax.lax.while_loop) -> Callable:
        """The chunk, NOT yet compiled (seed-parallel training vmaps it first)."""
        update = self.update(loss_and_grad)
        factor = self.divergence_factor

        def chunk(params, opt_state, data, key, step0, num_steps, first_epoch, table, anchor):
            loss_dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
            losses = jnp.full((capacity,), jnp.nan, loss_dtype)

            def keep_going(carry):
                i, *_, bad = carry
                return (i < num_steps) & jnp.logical_not(bad)

            def body(carry):
                i, params, opt_state, anchor, losses, _ = carry
                step = step0 + i
                batch = sampler.gather(data, sampler.window_ids_from_table(step, first_epoch, table))
                new_params, new_opt_state, loss, finite, usable = update(params, opt_state, batch)
                anchor = advance(anchor, i, step, loss, usable, factor)
                losses = losses.at[i].set(loss.astype(loss_dtype))
                # a bad step ends the loop: what it leaves in params is never used
                return i + 1, new_params, new_opt_state, anchor, losses, ~finite

            carry = (jnp.int32(0), params, opt_state, anchor, losses, jnp.bool_(False))
            i, params, opt_state, anchor, losses, bad = while_loop(keep_going, body, carry)
            return params, opt_state, losses, i - bad.astype(i.dtype), bad, anchor

        return chunk


def apply_update(transform: optax.GradientTransformation, params, opt_state, loss, grads,
                 **extra) -> tuple:
    """The one finite-guarded update of every optax trainer: `transform` applied to
    `grads`, and whether the step may be kept.

    Arguments:
        transform: the optax transformation.
        params, opt_state: the state the loss and gradient were evaluated at.
        loss, grads: the step's loss and gradient.
        extra: keyword arguments for a `GradientTransformationExtraArgs` (ignored by
            other transformations).

    Returns:
        `(new_params, new_opt_state, finite, usable)`: `usable` says the loss and the
        gradient are finite (the state they were evaluated at may be kept), `finite`
        also the new parameters (the run may go on from them; an update can overflow
        although loss and gradient are finite).
    """
    if extra and isinstance(transform, optax.GradientTransformationExtraArgs):
        updates, new_opt_state = transform.update(grads, opt_state, params, **extra)
    else:
        updates, new_opt_state = transform.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    usable = jnp.isfinite(loss) & all_finite(grads)
    return new_params, new_opt_state, usable & all_finite(new_params), usable


class KFACRule:
    """Updates by `online_emulate.optim.KFAC`. kfac-jax compiles its own step, so the
    chunk is a host loop over steps on the same window schedule (one jitted gather per
    step), with the same returns as the optax chunk."""

    def __init__(self, kfac, *, divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR):
        self.kfac = kfac
        self.divergence_factor = divergence_factor

    def init(self, params, *, bound, key, first_batch) -> Any:
        self.kfac.build(bound)
        return self.kfac.init(params, key, first_batch())

    def chunk(self, *, loss_and_grad=None, sampler, capacity, while_loop=None) -> Callable:
        gather = jax.jit(lambda data, step, first, table: sampler.gather(
            data, sampler.window_ids_from_table(step, first, table)))
        kfac, factor = self.kfac, self.divergence_factor

        def chunk(params, opt_state, data, key, step0, num_steps, first_epoch, table, anchor):
            losses = np.full((capacity,), np.nan, np.float32)
            if anchor.state is None:  # the state the call started from
                anchor = anchor._replace(state=(params, _copy(opt_state)))
            for i in range(int(num_steps)):
                step = step0 + i
                batch = gather(data, step, first_epoch, table)
                # kfac donates the state it is given: the anchor needs a copy of its own
                kept = _copy(opt_state)
                new_params, new_state, loss = kfac.step(params, opt_state, batch, _step_key(key, step))
                losses[i] = float(loss)
                # kfac does not show its gradient: a finite loss with a non-finite update
                # may come from a non-finite gradient, so such a state is not kept
                usable = bool(np.isfinite(losses[i])) and bool(_all_finite_jit(new_params))
                state, anchor = anchor.state, anchor._replace(state=None)
                anchor = _advance_jit(anchor, i, step, losses[i], usable, factor=factor)
                anchor = anchor._replace(state=(params, kept) if int(anchor.step) == step else state)
                if not usable:
                    return params, kept, losses, i, True, anchor
                params, opt_state = new_params, new_state
            return params, opt_state, losses, int(num_steps), False, anchor

        return chunk
