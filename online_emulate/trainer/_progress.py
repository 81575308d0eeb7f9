"""A tqdm progress bar (console or notebook) showing step, epoch, loss and steps/s."""

from __future__ import annotations

import math

import jax
from tqdm.auto import tqdm

__all__ = ["ProgressBar"]


class ProgressBar:
    """Thin wrapper so the trainers update the bar once per jitted chunk.

    tqdm itself shows the step count and the rate (steps/s); the postfix adds the epoch
    and the latest pre-update training loss. `enabled=False` prints nothing.
    """

    def __init__(self, *, total: int, initial: int, enabled: bool, epochs_per_step: float, desc="train"):
        self.epochs_per_step = epochs_per_step
        self.step = initial
        self.bar = None
        # one bar per job: in a multi-process run only process 0 draws it
        if enabled and jax.process_index() == 0:
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def advance(self, num_steps: int, loss) -> None:
        self.step += num_steps
        if self.bar is None:
            return
        postfix = {"epoch": f"{self.step * self.epochs_per_step:.2f}"}
        if loss is not None and math.isfinite(float(loss)):
            postfix["loss"] = f"{float(loss):.4g}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(num_steps)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
