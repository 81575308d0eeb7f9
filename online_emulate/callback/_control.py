"""Callbacks that act on the run: checkpointing and early stopping."""

from __future__ import annotations

import math
import os

from .._checks import check_positive_int
from ._base import Callback, CallbackContext

__all__ = ["CheckpointCallback", "EarlyStopping"]


class CheckpointCallback(Callback):
    """Write a resumable checkpoint (`.npz` + JSON, no pickle) every `every` steps (atomically).

    Arguments:
        path: file to write; `{step}` in the name is replaced by the step count, so
            `"run/ckpt_{step}.npz"` keeps every checkpoint and `"run/last.npz"` only the last.
        every: period in steps.
    """

    default_name = "checkpoint"

    def __init__(self, path: str | os.PathLike, *, every: int, name: str | None = None):
        super().__init__(every=every, name=name)
        self.path = os.fspath(path)

    def __call__(self, ctx: CallbackContext) -> str | None:
        if ctx.step == 0:
            return None
        return ctx.trainer.save_checkpoint(self.path.format(step=ctx.step))


class EarlyStopping(Callback):
    """Stop when a monitored value has not improved for `patience` checks.

    Arguments:
        every: period in steps between checks.
        monitor: "loss" (mean training loss over the last `every` steps) or the history
            name of another callback that runs at the same steps and comes earlier in
            the callbacks list (e.g. "val_nrmse").
        patience: checks without improvement before stopping.
        min_delta: an improvement must lower the best value by more than this.
    """

    default_name = "early_stopping"

    def __init__(
        self,
        *,
        every: int,
        monitor: str = "loss",
        patience: int = 5,
        min_delta: float = 0.0,
        name: str | None = None,
    ):
        super().__init__(every=every, name=name)
        if min_delta < 0:
            raise ValueError(f"min_delta: expected a non-negative float, got {min_delta!r}")
        self.monitor = monitor
        self.patience = check_positive_int("patience", patience)
        self.min_delta = min_delta
        self.best = math.inf
        self.bad_checks = 0

    def reset(self) -> None:
        self.best = math.inf
        self.bad_checks = 0

    def _current(self, ctx: CallbackContext):
        if self.monitor == "loss":
            recent = ctx.loss_history[-self.every :]
            return float(recent.mean()) if len(recent) else None
        records = ctx.trainer.history.records.get(self.monitor)
        if not records:
            raise ValueError(
                f"monitor: expected the name of a callback that has recorded a value, got "
                f"{self.monitor!r}; list it "
                "before EarlyStopping with the same `every`"
            )
        return float(records[-1][1])

    def __call__(self, ctx: CallbackContext) -> float | None:
        if ctx.step == 0:
            return None
        value = self._current(ctx)
        if value is None:
            return None
        if value < self.best - self.min_delta:
            self.best = value
            self.bad_checks = 0
        else:
            self.bad_checks += 1
            if self.bad_checks >= self.patience:
                ctx.request_stop(
                    f"early stopping: {self.monitor} did not improve on {self.best:.6g} for "
                    f"{self.patience} checks (step {ctx.step})"
                )
        return value
