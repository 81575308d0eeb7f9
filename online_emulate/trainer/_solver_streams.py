"""A pool of reference-solver streams: each advances the solver from a fresh initial
condition and starts again from a new one when it has run its length."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .._rollout import batched

__all__ = ["StreamState", "SolverStreams"]


class StreamState(NamedTuple):
    """The pool.

    Attributes:
        window: `(S, L, C, *N)`, the last L levels of every stream (`window[:, -1]` the
            current state; levels before the initial condition are copies of it).
        age: `(S,)` solver steps since each stream's initial condition.
        left: `(S,)` solver steps each stream takes before it restarts.
        tick: how many times the pool has been advanced (the initial conditions of
            tick t come from `fold_in(key, t)`; the first ones are tick 0).
    """

    window: Float[Array, "S L C ..."]
    age: Int[Array, "S"]
    left: Int[Array, "S"]
    tick: Int[Array, ""]


class SolverStreams:
    """`num_streams` streams of `ref_stepper`, each of `stream_length` steps per initial
    condition, seen through windows of `window_length` levels.

    One tick advances every stream by one solver step, or, for a stream that has taken
    its `stream_length` steps, replaces its state by a new initial condition (so a
    trajectory has `stream_length + 1` levels). A stream's window is complete once it
    holds `window_length` levels of its current trajectory (`complete`). The first
    trajectory of stream j is cut `j * stream_length // num_streams` steps short, so
    that the streams restart at evenly spread ticks and the pool never holds only young
    or only old states.

    Arguments:
        ref_stepper: the solver on ONE state `(C, *N)` (vmapped) or a `BatchStepper`.
        ic_sampler: `ic_sampler(key, num) -> (num, C, *N)` initial conditions; traced
            inside the training program.
        num_streams: S.
        stream_length: solver steps per initial condition.
        window_length: L, the levels of one training window.
    """

    def __init__(self, ref_stepper: Callable, ic_sampler: Callable, *, num_streams: int,
                 stream_length: int, window_length: int):
        self.step = batched(ref_stepper)
        self.ic_sampler = ic_sampler
        self.num_streams = num_streams
        self.stream_length = stream_length
        self.window_length = window_length

    def _fresh(self, key, tick):
        return jnp.asarray(self.ic_sampler(jax.random.fold_in(key, tick), self.num_streams))

    def _as_window(self, u):
        return jnp.broadcast_to(u[:, None], (u.shape[0], self.window_length, *u.shape[1:]))

    def init(self, key: PRNGKeyArray) -> StreamState:
        """Every stream at its first initial condition (tick 0)."""
        S, T = self.num_streams, self.stream_length
        u0 = self._fresh(key, 0)
        left = T - (jnp.arange(S, dtype=jnp.int32) * T) // S
        return StreamState(self._as_window(u0), jnp.zeros((S,), jnp.int32), left, jnp.int32(1))

    def complete(self, state: StreamState) -> Bool[Array, "S"]:
        """Which streams' windows hold `window_length` levels of one trajectory."""
        return state.age >= self.window_length - 1

    def advance(self, state: StreamState, key: PRNGKeyArray) -> StreamState:
        """One tick (see the class docstring)."""
        restart = state.left <= 0
        current = state.window[:, -1]
        fresh = jax.lax.cond(
            jnp.any(restart),
            lambda: self._fresh(key, state.tick).astype(current.dtype),
            lambda: jnp.zeros_like(current),
        )
        nxt = self.step(current).astype(current.dtype)
        shifted = jnp.concatenate([state.window[:, 1:], nxt[:, None]], axis=1)
        where = restart.reshape((-1,) + (1,) * (shifted.ndim - 1))
        window = jnp.where(where, self._as_window(fresh), shifted)
        age = jnp.where(restart, 0, state.age + 1)
        left = jnp.where(restart, self.stream_length, state.left - 1)
        return StreamState(window, age, left, state.tick + 1)
