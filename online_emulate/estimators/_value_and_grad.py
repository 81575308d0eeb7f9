"""The functional entry point: loss and gradient of a configuration for an emulator."""

from __future__ import annotations

from typing import Any, Callable

import jax
from jaxtyping import Array, Float, PyTree

from .._input_checks import check_emulator_data
from ..configuration import BaseConfiguration
from ..emulators import ModelAdapter, adapt
from ._base import Estimator, check_estimator
from ._bind import Bound
from ._bptt import BPTT

__all__ = ["value_and_grad"]


def value_and_grad(
    configuration: BaseConfiguration,
    emulator: Any,
    data: jax.Array,
    *,
    estimator: Estimator = BPTT(),
    ref_stepper: Callable | None = None,
    residuum_fn: Callable | None = None,
    allow_nonfinite: bool = False,
) -> tuple[Float[Array, ""], PyTree]:
    """Loss of `configuration` for `emulator` on `data`, and its gradient by `estimator`.

    The problem is bound once (`Estimator.bind`) and its gradient compiled once; later
    calls with equal problems reuse it. Traceable by an outer `jax.jit` (all estimators
    but ETrace): the data's shape and dtype are checked at trace time, its values only
    when they are concrete.

    Arguments:
        configuration: an `online_emulate.configuration` object.
        emulator: a brainstate Module, an equinox Module or an `(apply, params)` pair
            (see `online_emulate.emulators.adapt`; ETrace needs a brainstate module).
        data: `(batch, time, C, *N)` with at least `configuration.num_time_levels` levels.
        estimator: `BPTT()` (default), `BPTT(checkpoint=...)`, `TruncatedBPTT(k)`,
            `ForwardRTRL()`, `ETrace(...)`.
        ref_stepper, residuum_fn: as the configuration needs them.
        allow_nonfinite: compute on data holding NaN/inf instead of refusing it.

    Returns:
        `(loss, grads)`: scalar loss and gradients shaped like the model's parameters
            (`get_params(emulator)` for a brainstate module, the
            `equinox.partition(model, equinox.is_inexact_array)` arrays for an equinox
            module, `params` for a pair).

    Raises:
        TypeError: `estimator` is not an Estimator, `emulator` is no accepted kind, or
            ETrace was asked for a model it cannot trace.
        ValueError: data of the wrong shape or dtype (integer data is cast) or holding
            NaN/inf; unsupported (configuration, estimator) pair, missing references,
            ForwardRTRL over its memory budget, ETrace parameter exclusion.
    """
    check_estimator(estimator)
    data = check_emulator_data(
        emulator, data, min_levels=getattr(configuration, "num_time_levels", 1),
        allow_nonfinite=allow_nonfinite, configuration=configuration,
    )
    bound, adapter = bind_to_data(estimator, configuration, emulator, data,
                                  ref_stepper=ref_stepper, residuum_fn=residuum_fn)
    return bound.value_and_grad(adapter.params, data)


def bind_to_data(estimator, configuration, emulator, data, *, ref_stepper=None,
                 residuum_fn=None) -> tuple[Bound, ModelAdapter]:
    """`estimator.bind` for the states of `data` `(batch, time, C, *N)` (PyTree data
    binds without a state shape), and the adapter holding `emulator`'s parameters
    (shared with gradient_fidelity)."""
    leaves = jax.tree_util.tree_leaves(data)
    one = leaves[0] if len(leaves) == 1 else None
    adapter = adapt(emulator, state_ndim=None if one is None else one.ndim - 2)
    bound = estimator.bind(configuration, adapter,
                           state_shape=None if one is None else one.shape[2:],
                           dtype=None if one is None else one.dtype,
                           ref_stepper=ref_stepper, residuum_fn=residuum_fn)
    return bound, adapter
