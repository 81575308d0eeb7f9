"""Mean squared error."""

import dataclasses

import jax.numpy as jnp

from ._base import BaseLoss

__all__ = ["MSELoss"]


@dataclasses.dataclass(frozen=True, repr=False)
class MSELoss(BaseLoss):
    """Mean squared error, per sample `mean_{c,x} (pred - target)**2`.

    Arguments:
        batch_reduction: keyword-only reduction over the batch (default `jnp.mean`).
    """

    def pointwise(self, difference):
        return jnp.square(difference)
