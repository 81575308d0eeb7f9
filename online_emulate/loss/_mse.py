"""Mean squared error."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import BaseLoss

__all__ = ["MSELoss"]


@dataclasses.dataclass(frozen=True, repr=False)
class MSELoss(BaseLoss):
    """Mean squared error, per sample `mean_{c,x} (pred - target)**2`.

    Arguments:
        batch_reduction: keyword-only reduction over the batch (default `jnp.mean`).
    """

    def pointwise(self, difference: Float[Array, "batch ..."]) -> Float[Array, "batch ..."]:
        return jnp.square(difference)
