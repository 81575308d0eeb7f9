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


def make_loss_and_grad(estimator, configuration, model, *, ref_stepper, residuum_fn,
                       sharding: NamedSharding | None = None) -> Callable[[Any, Any], tuple]:
    """`loss_and_grad(params, batch) -> (loss, grads)` of `configuration` by `estimator`.

    Arguments:
        estimator: how the gradient is computed.
        configuration: what the loss is.
        model: the estimator's model view (a `ModelAdapter`).
        ref_stepper, residuum_fn: as the configuration needs them.
        sharding: when given, each minibatch is constrained to it (data parallelism).
    """

    def loss_and_grad(params, batch):
        if sharding is not None:
            batch = jax.tree_util.tree_map(
                lambda x: jax.lax.with_sharding_constraint(x, sharding), batch
            )
        return estimator.value_and_grad(configuration, model, params, batch,
                                        ref_stepper=ref_stepper, residuum_fn=residuum_fn)

    return loss_and_grad
