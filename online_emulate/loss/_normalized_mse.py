"""Mean squared error normalized by the target's mean square."""

import dataclasses

import jax.numpy as jnp

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

    def pointwise(self, difference):
        return jnp.square(difference)
