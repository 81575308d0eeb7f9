"""Exact forward-mode real-time recurrent learning."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.typing import DTypeLike
from jaxtyping import PyTree

from .._checks import check_positive_int
from .._frozen import frozen
from ._base import Model, OnlineEstimator, model_apply

__all__ = ["ForwardRTRL", "rtrl_memory_bytes"]


def rtrl_memory_bytes(params: PyTree, state_shape: tuple[int, ...], dtype: DTypeLike) -> int:
    """Bytes ForwardRTRL holds: the sensitivity dU/dtheta (B * H * P numbers, H = C *
    prod(N)), its update, and the P x P identity that seeds the parameter directions."""
    P = sum(int(math.prod(jnp.shape(x))) for x in jax.tree_util.tree_leaves(params))
    itemsize = jnp.dtype(dtype).itemsize
    return (2 * int(math.prod(state_shape)) * P + P * P) * itemsize


class _RTRLOps:
    """The ForwardRTRL carry: `(u, J)` with J = du/dtheta of shape `(*u.shape, P)`."""

    jittable = True

    def __init__(self, apply):
        self.apply = apply

    def init(self, params, u0, x):
        flat, _ = ravel_pytree(params)
        out = jax.eval_shape(self.apply, params, u0)
        return (u0.astype(out.dtype), jnp.zeros(out.shape + (flat.size,), out.dtype))

    def reset(self, carry, where, u=None):
        state, J = carry
        if u is not None:
            state = jnp.where(where, u.astype(state.dtype), state)
        # a reset state does not depend on theta
        return (state, jnp.where(where, jnp.zeros_like(J), J))

    def force(self, carry, alpha, u):
        state, J = carry
        # the forced state (1 - alpha) state + alpha u depends on theta through its first
        # part only
        return ((1 - alpha) * state + alpha * u.astype(state.dtype), (1 - alpha) * J)

    def step(self, params, carry, x, term):
        u, J = carry
        flat, unravel = ravel_pytree(params)
        eye = jnp.eye(flat.size, dtype=flat.dtype)
        v, lin = jax.linearize(lambda th, s: self.apply(unravel(th), s), flat, u)
        # J_{t+1} = df/dtheta + df/du J_t, one forward-mode product per parameter
        J_next = jax.vmap(lin, in_axes=(0, -1), out_axes=-1)(eye, J)
        loss, (gp, gn) = jax.value_and_grad(term, argnums=(0, 1))(u, v, x)
        axes = tuple(range(v.ndim))
        g = jnp.tensordot(gn, J_next, axes=(axes, axes)) + jnp.tensordot(gp, J, axes=(axes, axes))
        return (v, J_next), loss, unravel(g.astype(flat.dtype))

    def flush(self, params, carry, term):
        return carry, jax.tree_util.tree_map(jnp.zeros_like, params)

    def holds(self, num_steps: int) -> bool:
        return False

    def state(self, carry):
        return carry[0]


@frozen
class ForwardRTRL(OnlineEstimator):
    """Real-time recurrent learning: carry J_t = d u_t / d theta forward in time.

    J_{t+1} = (d f / d u)(u_t) J_t + (d f / d theta)(u_t)     (J = 0 after a reset or cut)
    g      = sum_t w_t [ (dL_t/du_{t+1}) J_{t+1} + (dL_t/du_t) J_t ]

    The Jacobian products are forward-mode (`jax.linearize`, vmapped over the P parameter
    directions). The gradient is exact, also with `cut_bptt` cuts and teacher-forcing
    resets (both set J to zero); memory is about 2 * B * H * P + P * P numbers,
    independent of the rollout length T, and the compute is about P forward steps per
    step, so it is practical only for small parameter counts P. In a streaming trainer
    the carry (u, J) persists across parameter updates by default.

    Arguments:
        memory_budget_bytes: refuse (before allocating anything) when
            `rtrl_memory_bytes(...)` exceeds this. Default 1 GiB.

    Raises:
        ValueError: if `memory_budget_bytes` is not a positive int.
    """

    memory_budget_bytes: int

    def __init__(self, *, memory_budget_bytes: int = 2**30):
        memory_budget_bytes = check_positive_int("memory_budget_bytes", memory_budget_bytes)
        self._set(memory_budget_bytes=memory_budget_bytes)

    def __repr__(self):
        return f"ForwardRTRL(memory_budget_bytes={self.memory_budget_bytes})"

    def check(self, params: PyTree, state_shape: tuple[int, ...], dtype: DTypeLike) -> None:
        """Raise if the sensitivity would exceed the memory budget.

        Raises:
            ValueError: naming both numbers, before anything is allocated.
        """
        size = rtrl_memory_bytes(params, state_shape, dtype)
        if size > self.memory_budget_bytes:
            P = sum(int(math.prod(jnp.shape(x))) for x in jax.tree_util.tree_leaves(params))
            raise ValueError(
                f"memory_budget_bytes: expected >= {size} bytes, what ForwardRTRL's "
                f"sensitivity dU/dtheta and the identity need: (2*B*H*P + P*P)*itemsize = "
                f"{size} bytes (state {tuple(state_shape)}, P = {P} parameters, "
                f"{jnp.dtype(dtype)}), got memory_budget_bytes = {self.memory_budget_bytes}. Use fewer parameters or a smaller batch, raise "
                f"the budget, or use BPTT(checkpoint='binomial', num_checkpoints=n) (exact, fixed memory) or ETrace (approximate)."
            )

    def carry_ops(self, model: Model, state_shape: tuple[int, ...], *, horizon: int) -> _RTRLOps:
        return _RTRLOps(model_apply(model))
