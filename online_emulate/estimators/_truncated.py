"""Truncated BPTT: gradients through windows of k steps, computed online."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from .._checks import check_int
from .._frozen import frozen
from .._rollout import UNROLL_MAX_STEPS
from ._base import Model, OnlineEstimator, model_apply

__all__ = ["TruncatedBPTT"]


def _sg(tree):
    return jax.tree_util.tree_map(jax.lax.stop_gradient, tree)


class _WindowOps:
    """The TruncatedBPTT carry: the current state and the open window.

    `(u, pending, prev_states (k, ...), inputs (k, ...), kept (k,), n)`: the states
    entering each step of the window and the step inputs, so that the window's reverse
    pass can be taken when it closes (after k steps, or at a `flush`). The window's
    forward pass is recomputed there; the stored states fix its values exactly and carry
    the gradient only between steps of the window. `kept[j]` is the share of the
    gradient that reaches step j's input from the step before it: 0 after a cut or reset
    (and at the window's first step), `1 - alpha` after a teacher-forcing mix, else 1;
    `pending` is that share for the next step.
    """

    jittable = True

    def __init__(self, apply, k):
        self.apply, self.k = apply, k

    def init(self, params, u0, x):
        out = jax.eval_shape(self.apply, params, u0)
        u0 = u0.astype(out.dtype)
        buf = lambda a: jnp.zeros((self.k,) + jnp.shape(a), jnp.asarray(a).dtype)  # noqa: E731
        return (u0, jnp.zeros((), u0.dtype), buf(u0), jax.tree_util.tree_map(buf, x),
                jnp.zeros((self.k,), u0.dtype), jnp.zeros((), jnp.int32))

    def reset(self, carry, where, u=None):
        state, pending, *rest = carry
        if u is not None:
            state = jnp.where(where, u.astype(state.dtype), state)
        return (state, jnp.where(where, jnp.zeros_like(pending), pending), *rest)

    def force(self, carry, alpha, u):
        state, pending, *rest = carry
        return ((1 - alpha) * state + alpha * u.astype(state.dtype),
                (1 - alpha) * pending, *rest)

    def step(self, params, carry, x, term):
        u, pending, prevs, xs, kept, n = carry
        v = self.apply(params, u)
        loss = term(u, v, x)
        prevs = prevs.at[n].set(u)
        xs = jax.tree_util.tree_map(lambda b, a: b.at[n].set(a), xs, x)
        kept = kept.at[n].set(jnp.where(n == 0, jnp.zeros_like(pending), pending))
        carry = (v, jnp.ones_like(pending), prevs, xs, kept, n + 1)
        if self.k == 1:  # every step closes its one-step window
            carry, g = self._close(params, carry, term, full=True)
            return carry, loss, g
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        carry, g = jax.lax.cond(n + 1 == self.k,
                                lambda c: self._close(params, c, term, full=True),
                                lambda c: (c, zeros), carry)
        return carry, loss, g

    def flush(self, params, carry, term):
        return self._close(params, carry, term, full=False)

    def holds(self, num_steps: int) -> bool:
        """Whether a flush `num_steps` steps after the last one can hold a gradient: the
        window closes by itself every k steps."""
        return num_steps % self.k != 0

    def _close(self, params, carry, term, *, full: bool):
        """The open window's gradient, and the carry with an empty window. `full` (static):
        the window holds all k steps, so no step is masked and it cannot be empty."""
        u, pending, prevs, xs, kept, n = carry
        apply = self.apply

        def window_loss(p):
            def body(u_c, j):
                stored = _sg(prevs[j])
                # the value is the stored state; the gradient flows along the window,
                # scaled by the share kept (0 where a cut or reset ended it)
                prev = stored + kept[j].astype(stored.dtype) * (u_c - jax.lax.stop_gradient(u_c))
                x = jax.tree_util.tree_map(lambda b: b[j], xs)

                def live(prev):
                    nxt = apply(p, prev)
                    return nxt, term(prev, nxt, x).astype(u.dtype)

                if full:
                    return live(prev)
                return jax.lax.cond(j < n, live, lambda prev: (prev, jnp.zeros((), u.dtype)),
                                    prev)

            _, losses = jax.lax.scan(body, _sg(prevs[0]), jnp.arange(self.k),
                                     unroll=self.k <= UNROLL_MAX_STEPS)
            return jnp.sum(losses)

        if full:
            g = jax.grad(window_loss)(params)
        else:
            # an empty window (a flush right after the window closed by itself) costs nothing
            g = jax.lax.cond(n > 0, jax.grad(window_loss),
                             lambda p: jax.tree_util.tree_map(jnp.zeros_like, p), params)
        return (u, jnp.zeros_like(pending), prevs, xs, kept, jnp.zeros((), jnp.int32)), g

    def state(self, carry):
        return carry[0]


@frozen
class TruncatedBPTT(OnlineEstimator):
    """Reverse mode inside consecutive windows of `k` steps, the state cut between them.

    For windows W_j = {jk, ..., jk+k-1}: g = sum_j d/dtheta [sum_{t in W_j} w_t L_t]
    with u_{jk} treated as a constant (and the configuration's own cuts and
    teacher-forcing resets applied inside the windows). The carry keeps the open window
    (its input states and step inputs, O(k) memory independent of the rollout length)
    and takes its reverse pass when it closes; a streaming trainer also closes it at
    every parameter update. k >= num_steps is exact BPTT; k = 1 is the one-step
    (teacher-free) gradient. The last window of a rollout may be shorter than k: only
    the rollout's own steps are run.

    Arguments:
        k: window length (positive int).

    Raises:
        ValueError: if `k` is not a positive int.
    """

    persist_carry: ClassVar[bool] = False
    k: int

    def __init__(self, k: int):
        k = check_int("k", k, meaning="the window length")
        self._set(k=k)

    def __repr__(self):
        return f"TruncatedBPTT({self.k})"

    def carry_ops(self, model: Model, state_shape: tuple[int, ...], *, horizon: int) -> _WindowOps:
        return _WindowOps(model_apply(model), min(self.k, horizon))
