"""Small PyTree helpers shared by the configurations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PyTree

__all__ = ["time_level", "stop_gradient", "cut_where", "batched"]


def time_level(
    data: PyTree[Float[Array, "batch time channel *space"]], t: int | Int[Array, ""]
) -> PyTree[Float[Array, "batch channel *space"]]:
    """`data[:, t]` on every leaf; `t` may be a traced integer (inside a scan)."""
    return jax.tree_util.tree_map(
        lambda leaf: jax.lax.dynamic_index_in_dim(leaf, t, axis=1, keepdims=False), data
    )


def stop_gradient(tree: PyTree) -> PyTree:
    """`jax.lax.stop_gradient` on every leaf."""
    return jax.tree_util.tree_map(jax.lax.stop_gradient, tree)


def cut_where(flag: bool | Array, cut: PyTree, keep: PyTree) -> PyTree:
    """Leafwise `where(flag, cut, keep)` with `cut` cast to `keep`'s dtype.

    Used with a traced `flag` inside scan bodies: the value is unchanged when both
    arguments agree numerically, and cotangents reach `keep` only where `flag` is
    False, which is exactly a conditional stop_gradient / conditional reset.
    """
    return jax.tree_util.tree_map(
        lambda c, k: jnp.where(flag, c.astype(k.dtype), k), cut, keep
    )


def batched(one_sample_fn):
    """vmap a function of one sample `(C, *N)` (or PyTree of such) over the batch axis."""
    return jax.vmap(one_sample_fn)
