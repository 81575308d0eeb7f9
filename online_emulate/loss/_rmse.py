"""Root mean squared error."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import BaseLoss

__all__ = ["RMSELoss"]


@dataclasses.dataclass(frozen=True, repr=False)
class RMSELoss(BaseLoss):
    """Root mean squared error, per sample `sqrt(mean_{c,x} (pred - target)**2)`.

    The square root is taken per sample (and per PyTree leaf) before the batch
    reduction, so the default reduction is the mean of per-sample RMSEs.

    Arguments:
        batch_reduction: keyword-only reduction over the batch (default `jnp.mean`).
    """

    def pointwise(self, difference: Float[Array, "batch ..."]) -> Float[Array, "batch ..."]:
        return jnp.square(difference)

    def finalize(self, per_sample: Float[Array, "batch"]) -> Float[Array, "batch"]:
        return jnp.sqrt(per_sample)
