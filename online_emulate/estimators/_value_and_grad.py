"""The functional entry point: loss and gradient of a configuration for an emulator."""

from __future__ import annotations

from typing import Any, Callable

import jax
from jaxtyping import Array, Float, PyTree

from .._input_checks import check_emulator_data
from ..configuration import BaseConfiguration
from ..emulators import adapt
from ._base import Estimator
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
    if not isinstance(estimator, Estimator):
        raise TypeError(
            "estimator: expected an online_emulate.estimators estimator (BPTT(), "
            f"TruncatedBPTT(k), ForwardRTRL(), ETrace(...)), got {type(estimator).__name__}"
        )
    data = check_emulator_data(
        emulator, data, min_levels=getattr(configuration, "num_time_levels", 1),
        allow_nonfinite=allow_nonfinite, configuration=configuration,
    )
    adapter = _adapt(emulator, estimator, data)
    return estimator.value_and_grad(configuration, adapter, adapter.params, data,
                                    ref_stepper=ref_stepper, residuum_fn=residuum_fn)


def _adapt(emulator, estimator, data):
    """The model's adapter, checked against the estimator (shared with gradient_fidelity)."""
    leaves = jax.tree_util.tree_leaves(data)
    state_ndim = leaves[0].ndim - 2 if len(leaves) == 1 else None
    adapter = adapt(emulator, state_ndim=state_ndim)
    if not estimator.jittable:
        # raises for a model braintrace cannot trace, or whose ops cannot be lifted
        shape = (leaves[0].shape[0], *leaves[0].shape[2:]) if len(leaves) == 1 else None
        adapter.recurrent_module(shape)
    return adapter
