"""What a training run records."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["TrainingHistory", "TrainingDiverged"]


@dataclasses.dataclass
class TrainingHistory:
    """Loss per step and callback records of a training run.

    It behaves as the loss array trainax returns: `np.asarray(history)`, `len(history)`,
    `history[i]`, `history[a:b]`, iteration and arithmetic through numpy all see
    `history.loss`; `history["name"]` gives a callback's records.

    Attributes:
        loss: `loss[i]` is the training loss of the minibatch of step i evaluated with the
            parameters BEFORE that step's update (the pre-update loss, as trainax records).
        records: callback name -> list of `(step, value)`; `step` counts completed updates.
        stopped_early: the reason if a callback (e.g. early stopping) ended the run.
    """

    loss: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.float32))
    records: dict[str, list[tuple[int, Any]]] = dataclasses.field(default_factory=dict)
    stopped_early: str | None = None

    def __getitem__(self, index):
        if isinstance(index, str):
            if index == "loss":
                return self.loss
            return self.records[index]
        return self.loss[index]

    def __len__(self) -> int:
        return int(self.loss.shape[0])

    def __iter__(self):
        return iter(self.loss)

    def __array__(self, dtype=None, copy=None):
        out = self.loss if dtype is None else self.loss.astype(dtype)
        return out.copy() if copy else out

    @property
    def shape(self) -> tuple[int, ...]:
        return self.loss.shape

    def copy(self) -> "TrainingHistory":
        """An independent copy (loss array and record lists are not shared)."""
        return TrainingHistory(
            self.loss.copy(), {k: list(v) for k, v in self.records.items()}, self.stopped_early
        )

    def extend_loss(self, values: np.ndarray) -> None:
        values = np.asarray(values)
        self.loss = values.copy() if self.loss.size == 0 else np.concatenate([self.loss, values])

    def record(self, name: str, step: int, value: Any) -> None:
        self.records.setdefault(name, []).append((int(step), value))

    def as_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss.tolist(),
            "records": {k: [(s, _plain(v)) for s, v in v_] for k, v_ in self.records.items()},
            "stopped_early": self.stopped_early,
        }


def _plain(value):
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if hasattr(value, "tolist"):
        return np.asarray(value).tolist()
    return value


class TrainingDiverged(RuntimeError):
    """Training met a non-finite loss, gradient or updated parameters and stopped.

    The trainer keeps the last state whose loss, gradient and parameters are finite,
    with its optimizer state: when a loss or gradient is non-finite that is the state one
    step earlier (the update that led there is undone), when only an update overflows it
    is the state before that update. `emulator` carries its parameters, and a checkpoint
    is written when the trainer has a `checkpoint_path`; resuming from it with a smaller
    learning rate continues the run.

    Attributes:
        step: the step count of the kept state (training failed to continue from it or
            from the state one step later).
        last_finite_loss: the last recorded finite training loss (None if none).
        emulator: an emulator holding the kept parameters.
        history: the history up to the kept state (`len(history.loss) == step`).
        checkpoint: path of the checkpoint written, or None.
    """

    def __init__(
        self,
        step: int,
        last_finite_loss: float | None,
        emulator: Any,
        history: TrainingHistory,
        checkpoint: str | None = None,
    ):
        self.step = step
        self.last_finite_loss = last_finite_loss
        self.emulator = emulator
        self.history = history
        self.checkpoint = checkpoint
        where = f"; state saved to {checkpoint}" if checkpoint else ""
        super().__init__(
            f"training diverged: non-finite loss, gradient or parameters right after step "
            f"{step} (last finite loss {last_finite_loss}); kept the last finite state, "
            f"step {step}{where}. Lower the learning rate or set clip_grad_norm."
        )

    @classmethod
    def from_trainer(cls, trainer: Any, adapter: Any) -> "TrainingDiverged":
        """The error for `trainer`'s kept state (its `params`, `step` and `history`),
        writing the trainer's checkpoint first when it has a `checkpoint_path`."""
        finite = trainer.history.loss[np.isfinite(trainer.history.loss)]
        last = float(finite[-1]) if finite.size else None
        checkpoint = trainer.save_checkpoint() if trainer.checkpoint_path else None
        return cls(trainer.step, last, adapter.merge(trainer.params), trainer.history,
                   checkpoint)
