"""Mean absolute error."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import BaseLoss

__all__ = ["MAELoss"]


@dataclasses.dataclass(frozen=True, repr=False)
class MAELoss(BaseLoss):
    """Mean absolute error, per sample `mean_{c,x} |pred - target|`.

    Arguments:
        batch_reduction: keyword-only reduction over the batch (default `jnp.mean`).
    """

    def pointwise(self, difference: Float[Array, "batch ..."]) -> Float[Array, "batch ..."]:
        return jnp.abs(difference)
