"""How a trainer turns gradients into parameter updates, chunk by chunk.

Both rules run `num_steps` steps from `step0` on the trainer's window schedule and
return `(params, opt_state, losses, good, bad, prev)`: `losses` the pre-update loss of
each step (a fixed-capacity buffer), `good` the number of steps whose state is kept,
`bad` whether a non-finite loss, gradient or update stopped the chunk, and `prev` the
state one step before the returned one (to fall back to if the next chunk's first step
is non-finite). On a non-finite step the kept state is the last one whose loss, gradient
and parameters are finite: the previous state when the loss or gradient is non-finite
(`good` can then be -1: one step before `step0`), the current one when only the update
overflows (a finite gradient can continue at a smaller learning rate).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._program import all_finite, tree_where

__all__ = ["UpdateRule", "OptaxRule", "KFACRule", "guarded_step", "kept_state"]

_all_finite_jit = jax.jit(all_finite)


def _step_key(key, step):
    return jax.random.fold_in(jax.random.fold_in(key, 0x5EED), step)


class UpdateRule(Protocol):
    """The protocol of `OptaxRule` and `KFACRule`."""

    def init(self, params, *, apply, configuration, ref_stepper, residuum_fn, key,
             first_batch) -> Any:
        """The optimizer state for `params`; `first_batch()` returns the first minibatch
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

    def __init__(self, transform: optax.GradientTransformation):
        self.transform = transform

    def init(self, params, **_) -> Any:
        return self.transform.init(params)

    def update(self, loss_and_grad: Callable) -> Callable:
        """`update(params, opt_state, batch) -> (params, opt_state, loss, finite, usable)`:
        one step; `usable` says the loss and gradient are finite, `finite` also the new
        parameters."""
        transform = self.transform

        def update(params, opt_state, batch):
            loss, grads = loss_and_grad(params, batch)
            if isinstance(transform, optax.GradientTransformationExtraArgs):
                updates, new_opt_state = transform.update(
                    grads, opt_state, params, value=loss, grad=grads, batch=batch
                )
            else:
                updates, new_opt_state = transform.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            # the update itself can overflow although loss and gradient are finite
            usable = jnp.isfinite(loss) & all_finite(grads)
            return new_params, new_opt_state, loss, usable & all_finite(new_params), usable

        return update

    def chunk(self, *, loss_and_grad, sampler, capacity,
              while_loop=jax.lax.while_loop) -> Callable:
        """The chunk, NOT yet compiled (seed-parallel training vmaps it first)."""
        update = self.update(loss_and_grad)

        def chunk(params, opt_state, data, key, step0, num_steps, first_epoch, table, prev=None):
            loss_dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
            losses = jnp.full((capacity,), jnp.nan, loss_dtype)
            if prev is None:
                prev = (params, opt_state, jnp.bool_(False))
            prev_params, prev_opt_state, has_prev = prev

            def keep_going(carry):
                i, *_, bad, _ = carry
                return (i < num_steps) & jnp.logical_not(bad)

            def body(carry):
                i, params, opt_state, prev_params, prev_opt_state, losses, bad, rollback = carry
                step = step0 + i
                batch = sampler.gather(data, sampler.window_ids_from_table(step, first_epoch, table))
                params, opt_state, prev_params, prev_opt_state, loss, bad, rollback = guarded_step(
                    update, params, opt_state, prev_params, prev_opt_state, batch,
                    (i > 0) | has_prev)
                losses = losses.at[i].set(loss.astype(loss_dtype))
                return (i + 1, params, opt_state, prev_params, prev_opt_state, losses, bad,
                        rollback)

            carry = (jnp.int32(0), params, opt_state, prev_params, prev_opt_state, losses,
                     jnp.bool_(False), jnp.bool_(False))
            i, params, opt_state, prev_params, prev_opt_state, losses, bad, rollback = while_loop(
                keep_going, body, carry
            )
            params, opt_state, good = kept_state(i, bad, rollback, params, opt_state,
                                                 prev_params, prev_opt_state)
            return params, opt_state, losses, good, bad, (prev_params, prev_opt_state, ~bad)

        return chunk


def guarded_step(update: Callable, params, opt_state, prev_params, prev_opt_state, batch,
                 can_roll_back) -> tuple:
    """One step of `update` (`OptaxRule.update`) with the divergence bookkeeping of a
    compiled chunk; shared by every trainer whose chunk is a while loop of updates.

    Arguments:
        update: `update(params, opt_state, batch) -> (params, opt_state, loss, finite,
            usable)`.
        params, opt_state: the state before the step.
        prev_params, prev_opt_state: the state one step before that.
        batch: the step's minibatch.
        can_roll_back: whether a state one step back exists (traced bool).

    Returns:
        `(params, opt_state, prev_params, prev_opt_state, loss, bad, rollback)`: the
        state after the step (unchanged where the update is non-finite), the state one
        step before it, the pre-update loss, whether the chunk must stop, and whether the
        kept state is the one step back (a non-finite loss or gradient cannot continue at
        any learning rate).
    """
    new_params, new_opt_state, loss, finite, usable = update(params, opt_state, batch)
    prev_params = tree_where(finite, params, prev_params)
    prev_opt_state = tree_where(finite, opt_state, prev_opt_state)
    params = tree_where(finite, new_params, params)
    opt_state = tree_where(finite, new_opt_state, opt_state)
    return params, opt_state, prev_params, prev_opt_state, loss, ~finite, ~usable & can_roll_back


def kept_state(i, bad, rollback, params, opt_state, prev_params, prev_opt_state) -> tuple:
    """After a chunk's loop of `guarded_step`s (`i` steps run): `(params, opt_state,
    good)`, the state to keep and the number of steps whose state is kept."""
    good = i - bad.astype(i.dtype) - rollback.astype(i.dtype)
    params = tree_where(rollback, prev_params, params)
    opt_state = tree_where(rollback, prev_opt_state, opt_state)
    return params, opt_state, good


class KFACRule:
    """Updates by `online_emulate.optim.KFAC`. kfac-jax compiles its own step, so the
    chunk is a host loop over steps on the same window schedule (one jitted gather per
    step), with the same returns as the optax chunk."""

    def __init__(self, kfac):
        self.kfac = kfac

    def init(self, params, *, apply, configuration, ref_stepper, residuum_fn, key,
             first_batch) -> Any:
        self.kfac.build(apply, configuration, ref_stepper=ref_stepper, residuum_fn=residuum_fn)
        return self.kfac.init(params, key, first_batch())

    def chunk(self, *, loss_and_grad=None, sampler, capacity, while_loop=None) -> Callable:
        gather = jax.jit(lambda data, step, first, table: sampler.gather(
            data, sampler.window_ids_from_table(step, first, table)))
        kfac = self.kfac

        def chunk(params, opt_state, data, key, step0, num_steps, first_epoch, table, prev=None):
            prev_params, prev_state, has_prev = prev if prev is not None else (params, opt_state, False)
            losses = np.full((capacity,), np.nan, np.float32)
            for i in range(int(num_steps)):
                step = step0 + i
                batch = gather(data, step, first_epoch, table)
                # kfac donates the state it is given: keep a copy to fall back to
                kept = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), opt_state)
                new_params, new_state, loss = kfac.step(params, opt_state, batch, _step_key(key, step))
                losses[i] = float(loss)
                if not (np.isfinite(losses[i]) and bool(_all_finite_jit(new_params))):
                    # kfac does not show its gradient: a non-finite update may come from
                    # one, so fall back one step as for a non-finite loss
                    if i > 0 or bool(has_prev):
                        return prev_params, prev_state, losses, i - 1, True, None
                    return params, kept, losses, i, True, None
                prev_params, prev_state, has_prev = params, kept, True
                params, opt_state = new_params, new_state
            return params, opt_state, losses, int(num_steps), False, (prev_params, prev_state, has_prev)

        return chunk
