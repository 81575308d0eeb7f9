"""Weighted sum of several configurations evaluated on the same data."""

from __future__ import annotations

from typing import Optional, Sequence

import jax.numpy as jnp
from jaxtyping import Array, Float

from .._frozen import frozen
from ._base import BaseConfiguration
from ._validation import check_weights

__all__ = ["Composite"]


@frozen(eq=False)
class Composite(BaseConfiguration):
    """`L = sum_i weights[i] * configurations[i](stepper, data, ...)`.

    Every part sees the same data, stepper, `ref_stepper`, `residuum_fn` and
    `scan`; the data must have `max_i configurations[i].num_time_levels` levels.

    Arguments:
        configurations: a non-empty sequence of configurations.
        weights: `(len(configurations),)` weights (default ones).

    Raises:
        TypeError: an entry of `configurations` is not a configuration.
        ValueError: `configurations` is empty, or `weights` has the wrong shape.
    """

    configurations: tuple
    weights: Float[Array, "num_configurations"]

    def __init__(
        self,
        configurations: Sequence[BaseConfiguration],
        weights: Optional[Float[Array, "num_configurations"]] = None,
    ):
        configurations = tuple(configurations)
        if not configurations:
            raise ValueError("configurations: expected at least one configuration, got none")
        for index, part in enumerate(configurations):
            if not isinstance(part, BaseConfiguration):
                raise TypeError(
                    f"configurations[{index}]: expected a configuration (BaseConfiguration), "
                    f"got {part!r} of type {type(part).__name__}"
                )
        self._set(
            configurations=configurations,
            weights=check_weights(
                "weights", weights, len(configurations), "one weight per configuration"
            ),
        )

    def __repr__(self) -> str:
        parts = ", ".join(map(repr, self.configurations))
        return f"Composite(configurations=({parts}), weights={self.weights.tolist()})"

    @property
    def num_time_levels(self) -> int:
        return max(part.num_time_levels for part in self.configurations)

    @property
    def needs_ref_stepper(self) -> bool:
        return any(part.needs_ref_stepper for part in self.configurations)

    @property
    def needs_residuum_fn(self) -> bool:
        return any(part.needs_residuum_fn for part in self.configurations)

    def _parts(self) -> tuple:
        return tuple(q for part in self.configurations for q in part._parts())

    def _loss(self, stepper, data, *, ref_stepper, residuum_fn, scan):
        total = jnp.zeros(())
        for weight, part in zip(self.weights, self.configurations):
            total = total + weight * part._loss(
                stepper, data, ref_stepper=ref_stepper, residuum_fn=residuum_fn, scan=scan
            )
        return total

    def _why_not_online(self) -> str:
        return "it sums several configurations; estimate the gradient of each part separately."
