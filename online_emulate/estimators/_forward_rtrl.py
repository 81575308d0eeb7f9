"""Exact forward-mode real-time recurrent learning."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ._base import Estimator, first_level, online_spec_for, teacher_reset, weight_at

__all__ = ["ForwardRTRL", "rtrl_memory_bytes"]


def rtrl_memory_bytes(params, state_shape, dtype) -> int:
    """Bytes of the sensitivity dU/dtheta: B * H * P * itemsize (H = C * prod(N))."""
    P = sum(int(math.prod(jnp.shape(x))) for x in jax.tree_util.tree_leaves(params))
    return int(math.prod(state_shape)) * P * jnp.dtype(dtype).itemsize


class ForwardRTRL(Estimator):
    """Real-time recurrent learning: carry J_t = d u_t / d theta forward in time.

    J_{t+1} = (d f / d u)(u_t) J_t + (d f / d theta)(u_t)     (J = 0 after a reset)
    g      = sum_t w_t [ (dL_t/du_{t+1}) J_{t+1} + (dL_t/du_t) J_t ]

    The Jacobian products are forward-mode (`jax.linearize`, vmapped over the P parameter
    directions). The gradient is exact; memory is B * H * P numbers for J, independent of
    the rollout length T, and the compute is about P forward steps per step, so it is
    practical only for small parameter counts P.

    Arguments:
        memory_budget_bytes: refuse (before allocating anything) when
            B * H * P * itemsize exceeds this. Default 1 GiB.

    Raises:
        ValueError: if `memory_budget_bytes` is not a positive int.
    """

    online = True

    def __init__(self, *, memory_budget_bytes: int = 2**30):
        if isinstance(memory_budget_bytes, bool) or not isinstance(memory_budget_bytes, int) \
                or memory_budget_bytes < 1:
            raise ValueError(
                f"memory_budget_bytes: expected a positive int, got {memory_budget_bytes!r}"
            )
        self._set(memory_budget_bytes=memory_budget_bytes)

    def _key(self):
        return (self.memory_budget_bytes,)

    def __repr__(self):
        return f"ForwardRTRL(memory_budget_bytes={self.memory_budget_bytes})"

    def value_and_grad(self, configuration, apply, params, data, *, ref_stepper=None,
                       residuum_fn=None, emulator=None):
        """`(loss, exact gradient)` by forward-mode RTRL.

        Raises:
            ValueError: unsupported configuration, or B*H*P*itemsize over the budget
                (raised before any allocation; the message names both numbers).
        """
        spec = online_spec_for(configuration, self, ref_stepper=ref_stepper,
                               residuum_fn=residuum_fn)
        u0 = first_level(data)
        if not isinstance(u0, jax.Array) and not hasattr(u0, "shape"):
            raise TypeError("data: ForwardRTRL expects an array (batch, time, C, *N), not a PyTree")
        flat, unravel = ravel_pytree(params)
        out = jax.eval_shape(apply, params, u0)
        size = rtrl_memory_bytes(params, out.shape, out.dtype)
        if size > self.memory_budget_bytes:
            raise ValueError(
                f"ForwardRTRL: the sensitivity dU/dtheta needs B*H*P*itemsize = {size} bytes "
                f"(state {tuple(out.shape)}, P = {flat.size} parameters, {out.dtype}), over "
                f"memory_budget_bytes = {self.memory_budget_bytes}. Use fewer parameters or a "
                f"smaller batch, raise the budget, or use BPTT(checkpoint='sqrt') (exact) or "
                f"ETrace (approximate)."
            )
        P = flat.size
        u0 = u0.astype(out.dtype)
        eye = jnp.eye(P, dtype=flat.dtype)
        f = lambda th, u: apply(unravel(th), u)  # noqa: E731

        weights = jnp.asarray(spec.weights)
        wt = weight_at(spec)

        def body(carry, _):
            u, J, g, loss, t = carry
            w = wt(t)
            u, hit = teacher_reset(spec, t, u, data)
            J = jnp.where(hit, jnp.zeros_like(J), J)
            v, lin = jax.linearize(f, flat, u)
            J_next = jax.vmap(lin, in_axes=(0, -1), out_axes=-1)(eye, J)

            def term(prev, nxt):
                return spec.step_loss(t, prev, nxt, data, ref_stepper=ref_stepper,
                                      residuum_fn=residuum_fn)

            l, (gp, gn) = jax.value_and_grad(term, argnums=(0, 1))(u, v)
            axes = tuple(range(v.ndim))
            dg = jnp.tensordot(gn, J_next, axes=(axes, axes)) + jnp.tensordot(gp, J, axes=(axes, axes))
            return (v, J_next, g + w * dg, loss + w * l, t + 1), None

        J0 = jnp.zeros(out.shape + (P,), out.dtype)
        init = (u0, J0, jnp.zeros_like(flat), jnp.zeros((), jnp.result_type(weights, out.dtype)),
                jnp.zeros((), jnp.int32))
        # a counter in the carry, not xs = arange(T): nothing of length T is materialised
        (_, _, g, loss, _), _ = jax.lax.scan(body, init, None, length=spec.num_steps)
        return loss, unravel(g)
