"""What every gradient estimator shares: validation of the configuration pairing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Int, PyTree

__all__ = ["Estimator", "online_spec_for", "first_level", "teacher_reset", "BPTT_NAMES"]

BPTT_NAMES = "BPTT(), BPTT(checkpoint='step'), BPTT(checkpoint='sqrt')"
ONLINE_NAMES = "TruncatedBPTT(k), ForwardRTRL(), ETrace('d_rtrl'), ETrace('es_d_rtrl', decay=...)"


class Estimator:
    """Base class of gradient estimators (immutable; options are keyword-only).

    Subclasses implement
    `value_and_grad(configuration, apply, params, data, *, ref_stepper, residuum_fn, emulator)`
    returning `(loss, grads)` with `grads` shaped like `params`.

    Attributes:
        online: whether the estimator runs forward in time from `configuration.online_spec()`.
        jittable: whether `value_and_grad` may be called inside `jax.jit` / `jax.grad`
            (pure in `params` and `data`).
    """

    online: bool = False
    jittable: bool = True

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _set(self, **kwargs) -> None:
        for k, v in kwargs.items():
            object.__setattr__(self, k, v)

    def __eq__(self, other):
        return type(self) is type(other) and self._key() == other._key()

    def __hash__(self):
        return hash((type(self).__name__, self._key()))

    def _key(self) -> tuple:
        return ()

    def value_and_grad(self, configuration, apply, params, data, *, ref_stepper=None,
                       residuum_fn=None, emulator=None):
        raise NotImplementedError


def online_spec_for(configuration, estimator, *, ref_stepper, residuum_fn):
    """`configuration.online_spec()`, or a ValueError naming what the pair supports.

    Raises:
        ValueError: if the configuration has no per-step decomposition (listing the
            estimators it supports), or a reference stepper / residuum function that
            the per-step loss needs is missing.
        TypeError: if `configuration` has no `online_spec` method.
    """
    if not hasattr(configuration, "online_spec"):
        raise TypeError(
            f"configuration: expected an online_emulate configuration with an "
            f"online_spec() method, got {type(configuration).__name__}"
        )
    try:
        spec = configuration.online_spec()
    except ValueError as err:
        raise ValueError(
            f"estimator: {estimator!r} runs forward in time and needs a loss that is a sum "
            f"of per-step terms of the current state, but {configuration!r} is not one. "
            f"This configuration supports only the exact reverse-mode estimators: "
            f"{BPTT_NAMES}. The online estimators ({ONLINE_NAMES}) support Supervised, "
            f"DivertedChainBranchOne(cut_div_chain=True), Residuum(cut_prev=True) and "
            f"TeacherForcing. (configuration said: {err})"
        ) from None
    if spec.uses_ref_stepper and ref_stepper is None:
        raise ValueError(f"ref_stepper: {configuration!r} needs a reference stepper, got None")
    if spec.uses_residuum_fn and residuum_fn is None:
        raise ValueError(f"residuum_fn: {configuration!r} needs a residuum function, got None")
    return spec


def first_level(data: PyTree) -> PyTree:
    """`data[:, 0]` on every leaf: the initial batched state."""
    return jax.tree_util.tree_map(lambda x: x[:, 0], data)


def teacher_reset(spec, t: Int[Array, ""], u: PyTree, data: PyTree) -> tuple[PyTree, Array]:
    """Teacher-forcing reset before step t: `(u or data[:, t], whether it was reset)`."""
    if spec.reset_every is None:
        return u, jnp.asarray(False)
    hit = (t > 0) & (t % spec.reset_every == 0)
    target = jax.tree_util.tree_map(
        lambda x: jax.lax.dynamic_index_in_dim(x, t, axis=1, keepdims=False), data
    )
    return (
        jax.tree_util.tree_map(lambda a, b: jnp.where(hit, b.astype(a.dtype), a), u, target),
        hit,
    )


def weight_at(spec):
    """`t -> weights[t]` (t may be traced and >= num_steps, giving 0). Uniform weights
    become a scalar constant, so no length-T array enters the compiled loop (which
    would make memory grow with T)."""
    import numpy as np

    R = spec.num_steps
    try:
        w = np.asarray(spec.weights)
        uniform = bool(np.all(w == w[0]))
    except Exception:  # traced weights
        w, uniform = None, False
    if uniform:
        w0 = w[0]
        return lambda t: jnp.where(t < R, jnp.asarray(w0), jnp.zeros((), w.dtype))
    weights = jnp.asarray(spec.weights)
    return lambda t: jnp.where(t < R, weights[jnp.minimum(t, R - 1)], 0.0).astype(weights.dtype)
