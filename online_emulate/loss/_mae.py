"""Mean absolute error."""

import dataclasses

import jax.numpy as jnp

from ._base import BaseLoss

__all__ = ["MAELoss"]


@dataclasses.dataclass(frozen=True, repr=False)
class MAELoss(BaseLoss):
    """Mean absolute error, per sample `mean_{c,x} |pred - target|`.

    Arguments:
        batch_reduction: keyword-only reduction over the batch (default `jnp.mean`).
    """

    def pointwise(self, difference):
        return jnp.abs(difference)
