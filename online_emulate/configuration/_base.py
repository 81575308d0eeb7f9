"""What every configuration shares: calling convention, validation, repr."""

from __future__ import annotations

import abc
import dataclasses
from typing import Callable, Optional

import jax
from jaxtyping import Array, Float, PyTree

from .._checks import check_callable, check_required
from .._frozen import Frozen, frozen
from ._online_spec import OnlineSpec
from ._validation import check_data

__all__ = ["BaseConfiguration"]

Data = PyTree[Float[Array, "batch time channel *space"]]
Stepper = Callable[[PyTree[Float[Array, "channel *space"]]], PyTree[Float[Array, "channel *space"]]]
ResiduumFn = Callable[[PyTree, PyTree], PyTree]

def _short(value) -> str:
    """repr that shows arrays as `f32[3]` instead of their values."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        kind = value.dtype.kind
        letter = {"f": "f", "i": "i", "u": "u", "b": "bool", "c": "c"}.get(kind, kind)
        size = value.dtype.itemsize * 8 if letter != "bool" else ""
        return f"{letter}{size}[{','.join(map(str, value.shape))}]"
    return repr(value)


@frozen(eq=False)
class BaseConfiguration(Frozen, abc.ABC):
    """A training configuration: how stepper, data and references make a loss.

    Subclasses are frozen dataclasses (`online_emulate._frozen`): their `__init__`
    validates the options and stores them through `_set`; they implement `_loss` and `num_time_levels`, and optionally `online_spec`.
    """

    _needs_ref_stepper = False
    _needs_residuum_fn = False
    #: why the reference stepper / residuum function is needed (error messages)
    _ref_stepper_use = ""
    _residuum_fn_use = ""

    def __repr__(self) -> str:
        # in the constructor's order: positional options first
        fields = sorted(dataclasses.fields(self), key=lambda f: f.kw_only is True)
        parts = ", ".join(f"{f.name}={_short(getattr(self, f.name))}" for f in fields)
        return f"{type(self).__name__}({parts})"

    @property
    @abc.abstractmethod
    def num_time_levels(self) -> int:
        """How many time levels of `data` (axis 1) the configuration reads."""

    @property
    def needs_ref_stepper(self) -> bool:
        """Whether `ref_stepper` must be given."""
        return self._needs_ref_stepper

    @property
    def needs_residuum_fn(self) -> bool:
        """Whether `residuum_fn` must be given."""
        return self._needs_residuum_fn

    def check_inputs(
        self,
        stepper: Stepper,
        data: Data,
        *,
        ref_stepper: Optional[Stepper] = None,
        residuum_fn: Optional[ResiduumFn] = None,
    ) -> None:
        """Validate the call arguments without tracing anything.

        Raises:
            ValueError: `data` is not an array / PyTree of arrays with >= 3 axes, has
                too few time levels, or a needed `ref_stepper` / `residuum_fn` is None.
            TypeError: `stepper` (or a needed helper) is not callable.
        """
        check_callable("stepper", stepper,
                       expected="a callable mapping one state (C, *N) to the next")
        for part in self._parts():
            check_data(data, part.num_time_levels, type(part).__name__)
        self.check_references(ref_stepper=ref_stepper, residuum_fn=residuum_fn)

    def check_references(
        self,
        *,
        ref_stepper: Optional[Stepper] = None,
        residuum_fn: Optional[ResiduumFn] = None,
    ) -> None:
        """Require the `ref_stepper` / `residuum_fn` the loss needs (each part of a sum
        names itself).

        Raises:
            ValueError: a needed function is None.
            TypeError: a needed function is not callable.
        """
        for part in self._parts():
            name = type(part).__name__
            helpers = []
            if part.needs_ref_stepper:
                helpers.append(("ref_stepper", ref_stepper, "a reference stepper on one "
                                "state (C, *N)", part._ref_stepper_use))
            if part.needs_residuum_fn:
                helpers.append(("residuum_fn", residuum_fn, "a residuum function on batches",
                                part._residuum_fn_use))
            for arg, fn, what, why in helpers:
                check_required(arg, fn, f"{what} ({name} needs it: {why})")
                check_callable(arg, fn, expected=f"a callable ({name} needs it: {why})")

    def _parts(self) -> tuple:
        """The configurations whose inputs are checked: itself (a sum: its terms)."""
        return (self,)

    def __call__(
        self,
        stepper: Stepper,
        data: Data,
        *,
        ref_stepper: Optional[Stepper] = None,
        residuum_fn: Optional[ResiduumFn] = None,
    ) -> Float[Array, ""]:
        """Evaluate the loss with `jax.lax.scan` (see `loss`)."""
        return self.loss(stepper, data, ref_stepper=ref_stepper, residuum_fn=residuum_fn)

    def loss(
        self,
        stepper: Stepper,
        data: Data,
        *,
        ref_stepper: Optional[Stepper] = None,
        residuum_fn: Optional[ResiduumFn] = None,
        scan: Callable = jax.lax.scan,
    ) -> Float[Array, ""]:
        """Evaluate the configuration's loss.

        Arguments:
            stepper: maps ONE state `(C, *N)` (or PyTree) to the next; vmapped here.
            data: `(batch, time, C, *N)` or a PyTree of such arrays; level 0 is the
                initial condition, later levels are targets where the configuration
                uses them (`num_time_levels` levels are read).
            ref_stepper: reference stepper acting on one state, when needed.
            residuum_fn: `residuum_fn(next, prev)` on batches, when needed.
            scan: scan implementation with the `jax.lax.scan(f, init, xs)`
                signature; every rollout loop of the configuration runs through it.

        Returns:
            The scalar loss.

        Raises:
            ValueError, TypeError: see `check_inputs`.
        """
        self.check_inputs(stepper, data, ref_stepper=ref_stepper, residuum_fn=residuum_fn)
        return self._loss(stepper, data, ref_stepper=ref_stepper, residuum_fn=residuum_fn, scan=scan)

    @abc.abstractmethod
    def _loss(self, stepper, data, *, ref_stepper, residuum_fn, scan) -> Float[Array, ""]:
        """The loss, on validated inputs."""

    def online_spec(self) -> OnlineSpec:
        """Per-step decomposition of the loss for online gradient estimators.

        Raises:
            ValueError: this configuration's loss is not a sum of per-step terms of
                the current state; it supports only BPTT estimators.
        """
        raise ValueError(
            "configuration: expected a loss that is a sum of per-step terms of the current "
            f"state (what online estimators need), got {type(self).__name__}, which only "
            f"the estimators that are not online (BPTT) support: {self._why_not_online()}"
        )

    def _why_not_online(self) -> str:
        return "its loss is not a sum of per-step terms of the current state."
