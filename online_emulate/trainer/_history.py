"""What a training run records."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._guard import RECENT

__all__ = ["TrainingHistory", "TrainingDiverged", "SeedsDiverged"]


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

    The trainer keeps the latest state whose loss and gradient were finite and whose
    loss was sane (at most `divergence_factor` times the best loss of the `RECENT` = 100 steps
    before it; see `online_emulate.trainer._guard`), with its optimizer state: the state
    that loss was evaluated at, before its update. A state reached by a finite but
    enormous update is never kept. `emulator` carries its parameters, and a checkpoint
    is written when the trainer has a `checkpoint_path`; resuming from it with a smaller
    learning rate continues the run.

    Attributes:
        step: the step count of the kept state (`len(history.loss) == step`).
        last_finite_loss: the kept parameters' loss on the windows of step `step` (the
            loss the next step of a resumed run evaluates again first); None when no
            finite, sane loss of the kept state was seen (the state the call started from).
        failed_step: the step whose loss, gradient or update was non-finite.
        emulator: an emulator holding the kept parameters.
        history: the history up to the kept state.
        checkpoint: path of the checkpoint written, or None.
    """

    def __init__(
        self,
        step: int,
        last_finite_loss: float | None,
        emulator: Any,
        history: TrainingHistory,
        checkpoint: str | None = None,
        *,
        failed_step: int | None = None,
        divergence_factor: float | None = None,
    ):
        self.step = step
        self.last_finite_loss = last_finite_loss
        self.failed_step = step if failed_step is None else failed_step
        self.emulator = emulator
        self.history = history
        self.checkpoint = checkpoint
        where = f"; state saved to {checkpoint}" if checkpoint else ""
        rule = "" if divergence_factor is None else (
            f" and at most {divergence_factor:g}x the best of the {RECENT} steps before it")
        if last_finite_loss is None:
            kept = (f"kept the state the run started from, step {step} (its loss was "
                    f"not finite{rule and ' or not sane'})")
        else:
            kept = (f"kept the state at step {step}, the last whose loss was finite{rule} "
                    f"(loss {last_finite_loss:.6g} on step {step}'s windows)")
        super().__init__(
            f"training diverged: non-finite loss, gradient or parameters at step "
            f"{self.failed_step}; {kept}{where}. Lower the learning rate or set "
            f"clip_grad_norm."
        )

    @classmethod
    def from_trainer(cls, trainer: Any, adapter: Any) -> "TrainingDiverged":
        """The error for `trainer`'s kept state (its `params`, `step`, `history` and
        `_divergence = (failed_step, kept_loss)`), writing the trainer's checkpoint first
        when it has a `checkpoint_path`."""
        failed, loss = trainer._divergence
        checkpoint = trainer.save_checkpoint() if trainer.checkpoint_path else None
        return cls(trainer.step, loss, adapter.merge(trainer.params), trainer.history,
                   checkpoint, failed_step=failed,
                   divergence_factor=getattr(trainer, "divergence_factor", None))


class SeedsDiverged(ValueError):
    """Seed-parallel training (`GeneralTrainer.train_seeds`) met a non-finite loss,
    gradient or update in one or more seeds.

    Attributes:
        emulators: one model per seed: a diverged seed's kept state (the one a single
            run would keep, see `TrainingDiverged`), the others' state at the end of the
            chunk in which the divergence happened.
        steps: the step count of each seed's model.
        last_finite_losses: diverged seed -> its kept parameters' loss on the windows of
            its kept step (None when no finite, sane loss of it was seen).
        histories: each seed's pre-update losses up to its kept step.
    """

    def __init__(self, message: str, *, emulators: list, steps: list[int],
                 last_finite_losses: dict[int, float | None], histories: list[np.ndarray]):
        super().__init__(message)
        self.emulators = emulators
        self.steps = steps
        self.last_finite_losses = last_finite_losses
        self.histories = histories
