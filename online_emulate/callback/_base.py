"""The callback protocol of the trainers."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from .._checks import check_positive_int

__all__ = ["Callback", "CallbackContext"]


@dataclasses.dataclass
class CallbackContext:
    """What a callback sees, between two jitted chunks of training steps.

    Attributes:
        step: number of completed parameter updates.
        params: current parameters (the `get_params` dict layout).
        apply: the pure emulator function `apply(params, u)`.
        opt_state: the optimizer state.
        loss_history: pre-update losses of all steps so far (numpy).
        configuration, data, ref_stepper, residuum_fn: those of the trainer.
        sampler: the trainer's `WindowSampler`.
        trainer: the trainer itself (for checkpointing).
        stop_reason: set by `request_stop`.
    """

    step: int
    params: Any
    apply: Callable
    opt_state: Any
    loss_history: Any
    configuration: Any
    data: Any
    ref_stepper: Any
    residuum_fn: Any
    sampler: Any
    trainer: Any
    stop_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        """Ask the trainer to end training after this callback round."""
        self.stop_reason = reason


class Callback:
    """Base class: called every `every` completed updates (and at step 0).

    Subclasses implement `__call__(ctx) -> value`; a non-None value is recorded in the
    history under `name`. Work that needs JAX is jitted once per callback object and
    reused, so callbacks never force a per-step recompilation.

    Arguments:
        every: period in steps (positive int).
        name: key in the history (defaults to the class-specific name).
    """

    default_name = "callback"

    def __init__(self, *, every: int, name: str | None = None):
        self.every = check_positive_int("every", every)
        self.name = name or self.default_name
        self._cache = None

    def _cached(self, ctx: CallbackContext, build: Callable):
        """`build()` once per emulator function: the jitted evaluation is reused every call."""
        if self._cache is None or self._cache[0] is not ctx.apply:
            self._cache = (ctx.apply, build())
        return self._cache[1]

    def __call__(self, ctx: CallbackContext) -> Any:
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(every={self.every}, name={self.name!r})"
