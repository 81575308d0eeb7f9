"""Mean squared error normalized by the target's mean square."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import BaseNormalizedLoss

__all__ = ["NormalizedMSELoss"]


@dataclasses.dataclass(frozen=True, repr=False)
class NormalizedMSELoss(BaseNormalizedLoss):
    """Per sample `mean_{c,x} (pred - target)**2 / mean_{c,x} target**2`.

    Arguments:
        batch_reduction: keyword-only reduction over the batch (default `jnp.mean`).

    Raises:
        ValueError: when called without a target.
    """

    def pointwise(self, difference: Float[Array, "batch ..."]) -> Float[Array, "batch ..."]:
        return jnp.square(difference)
