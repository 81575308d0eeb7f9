"""Batched autoregressive rollout of a single-sample stepper."""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_int
from .._rollout import batched as batch_step
from .._rollout import rollout as kernel_rollout
from .._input_checks import check_ref_stepper
from ..emulators import as_stepper, lax_ops
from ._validation import shape_of


def rollout(
    stepper: Callable[[Float[Array, "channel *space"]], Float[Array, "channel *space"]],
    initial_states: Float[Array, "batch channel *space"],
    num_steps: int,
    *,
    include_init: bool = False,
) -> Float[Array, "batch time channel *space"]:
    """Roll a stepper out autoregressively from a batch of initial states.

    The stepper acts on ONE sample `(C, *N)` (the library-wide convention); it is
    `jax.vmap`-ed over the batch (a model, or a `BatchStepper`, steps the batch whole)
    and iterated with `jax.lax.scan`:

        u_0 = initial_states,   u_{t+1} = stepper(u_t)   for t = 0, ..., num_steps - 1.

    Any callable works (e.g. an exponax reference stepper), and so does every model
    kind the trainers accept (a brainstate module, an equinox module, an
    `(apply, params)` pair; see `online_emulate.emulators.adapt`), evaluated at its
    current parameters with plain `jax.lax` ops; models are only read, never written.

    Arguments:
        stepper: `stepper(u) -> u_next` mapping one state `(C, *N)` to the next state
            of the same shape and dtype, or a model (see above).
        initial_states: the batch of initial states, shape `(B, C, *N)`.
        num_steps: number of autoregressive steps `T` (an integer >= 0).
        include_init: if True, prepend the initial states, so the time axis holds
            `u_0, ..., u_T`; otherwise it holds `u_1, ..., u_T`.

    Returns:
        The trajectories, shape `(B, T, C, *N)` (`(B, T + 1, C, *N)` with
        `include_init=True`).

    Raises:
        ValueError: if `initial_states` has fewer than 2 axes (or, for an emulator
            exposing `num_spatial_dims`, not `num_spatial_dims + 2` axes), if
            `num_steps` is not a non-negative integer, or if the stepper does not
            return a state of the same shape as its input.
        TypeError: if `stepper` is neither callable nor a model.
    """
    stepper = as_stepper(stepper, states=shape_of(initial_states),
                         states_name="initial_states")
    num_steps = check_int("num_steps", num_steps, minimum=0)
    initial_states = jnp.asarray(initial_states)
    # the built-in emulators evaluate with plain jax.lax ops here (vmap-friendly,
    # identical outputs, and braintrace stays unloaded); other steppers ignore the switch
    with lax_ops():
        check_ref_stepper(stepper, initial_states.shape[1:], initial_states.dtype, name="stepper")
        return _scan_rollout(batch_step(stepper), initial_states, num_steps, include_init)


def _scan_rollout(batched, initial_states, num_steps, include_init):
    def step(u, t):
        u_next = batched(u).astype(u.dtype)
        return u_next, u_next

    _, states = kernel_rollout(step, initial_states, num_steps)
    # the kernel stacks along a leading time axis: (T, B, ...) -> (B, T, ...)
    states = jnp.swapaxes(states, 0, 1)
    if include_init:
        states = jnp.concatenate([initial_states[:, None], states], axis=1)
    return states
