"""The shared machinery of every time-level loss."""

from __future__ import annotations

import abc
import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

__all__ = ["BaseLoss", "BaseNormalizedLoss"]


def _mean_per_sample(x: Float[Array, "batch ..."]) -> Float[Array, "batch"]:
    """Mean over every axis except the leading batch axis."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def _leaves(tree: PyTree, name: str) -> list:
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError(f"{name}: expected an array or a PyTree of arrays, got an empty PyTree")
    for leaf in leaves:
        if not (hasattr(leaf, "shape") and hasattr(leaf, "ndim")) or leaf.ndim < 1:
            raise ValueError(
                f"{name}: expected arrays with a leading batch axis, "
                f"got a leaf {leaf!r:.80}"
            )
    return leaves


@dataclasses.dataclass(frozen=True)
class BaseLoss(abc.ABC):
    """A time-level loss between a batch of predictions and a batch of targets.

    The loss of one sample is computed per PyTree leaf by `pointwise` followed by
    a mean over the channel and spatial axes (and `finalize`), then summed over
    leaves; the per-sample values are reduced over the batch by `batch_reduction`:

        loss(pred, target) = batch_reduction_b( sum_leaves finalize(mean_{c,x} g(pred - target)) )

    Without a target the prediction is compared against zero.

    Arguments:
        batch_reduction: keyword-only; maps the per-sample values `(B,)` to a
            scalar. Defaults to `jnp.mean`.
    """

    batch_reduction: Callable[[Float[Array, "batch"]], Float[Array, ""]] = dataclasses.field(
        default=jnp.mean, kw_only=True
    )

    def __repr__(self) -> str:
        reduction = getattr(self.batch_reduction, "__name__", None) or repr(self.batch_reduction)
        return f"{type(self).__name__}(batch_reduction={reduction})"

    @abc.abstractmethod
    def pointwise(self, difference: Float[Array, "batch ..."]) -> Float[Array, "batch ..."]:
        """The elementwise discrepancy `g(d)` (e.g. `d**2` for the MSE)."""

    def finalize(self, per_sample: Float[Array, "batch"]) -> Float[Array, "batch"]:
        """Map the per-sample mean of `g` to the per-sample loss (identity by default)."""
        return per_sample

    def _leaf_per_sample(self, prediction, target):
        difference = prediction if target is None else prediction - target
        return self.finalize(_mean_per_sample(self.pointwise(difference)))

    def per_sample(
        self,
        prediction: PyTree[Float[Array, "batch channel *space"]],
        target: Optional[PyTree[Float[Array, "batch channel *space"]]] = None,
    ) -> Float[Array, "batch"]:
        """The loss of every sample of the batch, before the batch reduction.

        Arguments:
            prediction: array `(B, C, *N)` or a PyTree of such arrays.
            target: same structure and shapes as `prediction`, or None to compare
                against zero.

        Returns:
            Array `(B,)`: per sample, the sum over leaves of the leaf loss.

        Raises:
            ValueError: if an input is not an array / PyTree of arrays with a batch
                axis, or if `prediction` and `target` have different structures.
        """
        _leaves(prediction, "prediction")
        if target is None:
            values = jax.tree_util.tree_map(lambda p: self._leaf_per_sample(p, None), prediction)
        else:
            _leaves(target, "target")
            values = jax.tree_util.tree_map(self._leaf_per_sample, prediction, target)
        return sum(jax.tree_util.tree_leaves(values))

    def __call__(
        self,
        prediction: PyTree[Float[Array, "batch channel *space"]],
        target: Optional[PyTree[Float[Array, "batch channel *space"]]] = None,
    ) -> Float[Array, ""]:
        """Evaluate the loss of a batch: the scalar
        `batch_reduction(per_sample(prediction, target))`; arguments and errors as in
        `per_sample`."""
        return self.batch_reduction(self.per_sample(prediction, target))


@dataclasses.dataclass(frozen=True, repr=False)
class BaseNormalizedLoss(BaseLoss):
    """A loss divided, sample by sample and leaf by leaf, by the target's own loss.

        per_sample = sum_leaves  mean_{c,x} g(pred - target) / mean_{c,x} g(target)

    The target is required: a normalized loss against zero is undefined.
    """

    def _leaf_per_sample(self, prediction, target):
        numerator = _mean_per_sample(self.pointwise(prediction - target))
        denominator = _mean_per_sample(self.pointwise(target))
        return self.finalize(numerator / denominator)

    def per_sample(
        self,
        prediction: PyTree[Float[Array, "batch channel *space"]],
        target: Optional[PyTree[Float[Array, "batch channel *space"]]] = None,
    ) -> Float[Array, "batch"]:
        """Per-sample normalized loss.

        Arguments:
            prediction: array `(B, C, *N)` or a PyTree of such arrays.
            target: same structure as `prediction`; required.

        Returns:
            Array `(B,)`.

        Raises:
            ValueError: if `target` is None (normalization needs a target) or on
                malformed inputs.
        """
        if target is None:
            raise ValueError(
                f"target: expected an array or PyTree ({type(self).__name__} divides by the "
                "target's own loss, which is undefined for a loss against zero), got None"
            )
        return super().per_sample(prediction, target)
