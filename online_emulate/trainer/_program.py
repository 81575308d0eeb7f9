"""The pieces a trainer's compiled program is built from."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["make_loss_and_grad", "all_finite", "tree_where", "batch_sharding"]


def all_finite(tree) -> jax.Array:
    """Whether every leaf of `tree` is finite everywhere (a traced bool)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def tree_where(pred, new, old):
    """Leafwise `where(pred, new, old)`."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def batch_sharding() -> NamedSharding:
    """Minibatches split over all local devices along the batch axis."""
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    return NamedSharding(mesh, PartitionSpec("batch"))


def make_loss_and_grad(bound, *, sharding: NamedSharding | None = None) -> Callable[[Any, Any], tuple]:
    """`loss_and_grad(params, batch) -> (loss, grads)` of a binding
    (`Estimator.bind`), each minibatch constrained to `sharding` when given (data
    parallelism)."""
    if sharding is None:
        return bound.loss_and_grad

    def loss_and_grad(params, batch):
        batch = jax.tree_util.tree_map(
            lambda x: jax.lax.with_sharding_constraint(x, sharding), batch
        )
        return bound.loss_and_grad(params, batch)

    return loss_and_grad
