"""Small PyTree helpers shared by the configurations."""

from __future__ import annotations

import jax
from jaxtyping import Array, Float, Int, PyTree

# a stepper of one state is vmapped over the batch, a BatchStepper steps it whole
from .._rollout import batched

__all__ = ["time_level", "batched"]


def time_level(
    data: PyTree[Float[Array, "batch time channel *space"]], t: int | Int[Array, ""]
) -> PyTree[Float[Array, "batch channel *space"]]:
    """`data[:, t]` on every leaf; `t` may be a traced integer (inside a scan)."""
    return jax.tree_util.tree_map(
        lambda leaf: jax.lax.dynamic_index_in_dim(leaf, t, axis=1, keepdims=False), data
    )


