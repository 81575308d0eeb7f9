"""The functional entry point: loss and gradient of a configuration for an emulator."""

from __future__ import annotations

from ..emulators import functional
from ._base import Estimator
from ._bptt import BPTT

__all__ = ["value_and_grad"]


def value_and_grad(configuration, emulator, data, *, estimator: Estimator = BPTT(),
                   ref_stepper=None, residuum_fn=None):
    """Loss of `configuration` for `emulator` on `data`, and its gradient by `estimator`.

    Arguments:
        configuration: an `online_emulate.configuration` object.
        emulator: a brainstate emulator (`online_emulate.emulators`).
        data: `(batch, time, C, *N)` with at least `configuration.num_time_levels` levels.
        estimator: `BPTT()` (default), `BPTT(checkpoint=...)`, `TruncatedBPTT(k)`,
            `ForwardRTRL()`, `ETrace(...)`.
        ref_stepper, residuum_fn: as the configuration needs them.

    Returns:
        `(loss, grads)`: scalar loss and gradients in the `get_params(emulator)` layout.

    Raises:
        TypeError: `estimator` is not an Estimator, or `emulator` not a brainstate module.
        ValueError: unsupported (configuration, estimator) pair, missing references,
            ForwardRTRL over its memory budget, ETrace parameter exclusion.
    """
    if not isinstance(estimator, Estimator):
        raise TypeError(
            "estimator: expected an online_emulate.estimators estimator (BPTT(), "
            f"TruncatedBPTT(k), ForwardRTRL(), ETrace(...)), got {type(estimator).__name__}"
        )
    apply, params = functional(emulator)
    return estimator.value_and_grad(configuration, apply, params, data, ref_stepper=ref_stepper,
                                    residuum_fn=residuum_fn, emulator=emulator)
