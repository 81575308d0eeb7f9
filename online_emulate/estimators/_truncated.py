"""Truncated BPTT: gradients through windows of k steps, computed online."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._base import Estimator, first_level, online_spec_for, teacher_reset, weight_at

__all__ = ["TruncatedBPTT"]


class TruncatedBPTT(Estimator):
    """Reverse mode inside consecutive windows of `k` steps, the state cut between them.

    For windows W_j = {jk, ..., jk+k-1}: g = sum_j d/dtheta [sum_{t in W_j} w_t L_t]
    with u_{jk} treated as a constant. An outer scan runs over the windows and takes one
    `value_and_grad` per window, so memory is O(k) steps, independent of the rollout
    length. k >= num_steps is exact BPTT; k = 1 is the one-step (teacher-free) gradient.

    Arguments:
        k: window length (positive int).

    Raises:
        ValueError: if `k` is not a positive int.
    """

    online = True

    def __init__(self, k: int):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive int window length, got {k!r}")
        self._set(k=k)

    def _key(self):
        return (self.k,)

    def __repr__(self):
        return f"TruncatedBPTT({self.k})"

    def value_and_grad(self, configuration, apply, params, data, *, ref_stepper=None,
                       residuum_fn=None, emulator=None):
        """`(loss, truncated gradient)`; the loss is the exact full loss.

        Raises:
            ValueError: if the configuration has no per-step decomposition.
        """
        spec = online_spec_for(configuration, self, ref_stepper=ref_stepper,
                               residuum_fn=residuum_fn)
        R = spec.num_steps
        k = min(self.k, R)
        n_win = math.ceil(R / k)
        weights = jnp.asarray(spec.weights)
        wt = weight_at(spec)

        def window_loss(p, u, t_start):
            def body(u, i):
                t = t_start + i
                w = wt(t)
                u, _ = teacher_reset(spec, t, u, data)
                v = apply(p, u)
                term = spec.step_loss(t, u, v, data, ref_stepper=ref_stepper,
                                      residuum_fn=residuum_fn)
                return v, w * term

            u_end, terms = jax.lax.scan(body, u, jnp.arange(k))
            return jnp.sum(terms), u_end

        vg = jax.value_and_grad(window_loss, has_aux=True)

        def outer(carry, _):
            u, g_acc, l_acc, t_start = carry
            (l, u_end), g = vg(params, jax.lax.stop_gradient(u), t_start)
            g_acc = jax.tree_util.tree_map(jnp.add, g_acc, g)
            return (u_end, g_acc, l_acc + l, t_start + k), None

        u0 = first_level(data)
        u0 = jax.tree_util.tree_map(lambda a, b: a.astype(b.dtype), u0, jax.eval_shape(apply, params, u0))
        g0 = jax.tree_util.tree_map(jnp.zeros_like, params)
        l0 = jnp.zeros((), weights.dtype)
        # window starts are a counter in the carry: nothing of length T is materialised
        (_, grads, loss, _), _ = jax.lax.scan(outer, (u0, g0, l0, jnp.zeros((), jnp.int32)),
                                              None, length=n_win)
        return loss, grads
