"""trainax loss objects used as online_emulate losses (for code ported unchanged)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
from jaxtyping import Array, Float

from ._base import BaseLoss

__all__ = ["TrainaxLoss", "as_loss"]


@dataclasses.dataclass(frozen=True, repr=False)
class TrainaxLoss(BaseLoss):
    """A trainax time-level loss (e.g. `trainax.loss.MSELoss()`) behind this library's
    loss interface: its `single_batch` is vmapped over the batch and reduced with its own
    `batch_reduction`, exactly as trainax's `multi_batch` does.

    Arguments:
        loss: the trainax loss object.
    """

    loss: Any = None

    def __init__(self, loss: Any):
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "batch_reduction", loss.batch_reduction)

    def __repr__(self):
        return f"TrainaxLoss({self.loss!r})"

    # unused: per_sample is the trainax loss's own
    def pointwise(self, difference: Float[Array, "batch ..."]) -> Float[Array, "batch ..."]:
        raise NotImplementedError

    def per_sample(
        self,
        prediction: Float[Array, "batch channel *space"],
        target: Optional[Float[Array, "batch channel *space"]] = None,
    ) -> Float[Array, "batch"]:
        if target is None:
            return jax.vmap(lambda p: self.loss.single_batch(p))(prediction)
        return jax.vmap(self.loss.single_batch)(prediction, target)


def as_loss(value: Any) -> Any:
    """`value` itself for an online_emulate loss; a `TrainaxLoss` for a trainax one;
    `value` unchanged otherwise (the caller reports the error)."""
    if isinstance(value, BaseLoss):
        return value
    if type(value).__module__.startswith("trainax.") and hasattr(value, "single_batch"):
        return TrainaxLoss(value)
    return value
