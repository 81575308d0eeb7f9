"""Mean absolute error normalized by the target's mean magnitude."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import BaseNormalizedLoss

__all__ = ["NormalizedMAELoss"]


@dataclasses.dataclass(frozen=True, repr=False)
class NormalizedMAELoss(BaseNormalizedLoss):
    """Per sample `mean_{c,x} |pred - target| / mean_{c,x} |target|`.

    Arguments:
        batch_reduction: keyword-only reduction over the batch (default `jnp.mean`).

    Raises:
        ValueError: when called without a target.
    """

    def pointwise(self, difference: Float[Array, "batch ..."]) -> Float[Array, "batch ..."]:
        return jnp.abs(difference)
