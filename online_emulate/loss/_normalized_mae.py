"""Mean absolute error normalized by the target's mean magnitude."""

import dataclasses

import jax.numpy as jnp

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

    def pointwise(self, difference):
        return jnp.abs(difference)
