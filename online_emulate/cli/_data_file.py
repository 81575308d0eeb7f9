"""`online-emulate train --data FILE`: a user's own trajectories in place of a problem's.

What a file run takes from where:

* the file: the trajectories `(samples, time, C, *N)`, so the number of spatial axes,
  channels and grid of the emulator; the last `--test-samples` trajectories are held
  out for the evaluation, rolled out over `min(--test-horizon, time - 1)` steps;
* `--problem`: only the reference stepper, for the configurations that need one (the
  diverted and mix chains, residuum), built on the file's grid; its states must have
  the file's shape. The other configurations use no problem at all.

The file is memory-mapped (`data.load_trajectories`) and checked, a block at a time,
before anything compiles; the trainer copies the training trajectories to the device
once (its windows are gathered inside the compiled loop), and the held-out ones are read
only for the evaluation.
"""

from __future__ import annotations

import dataclasses
import os

import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from .._input_checks import check_time_levels
from ..data import load_trajectories
from ..data._files import split_member
from ..sample_data import Problem
from ._factories import make_problem

__all__ = ["DataFile", "open_data_file", "check_same_file", "absolute"]


@dataclasses.dataclass(frozen=True, eq=False)
class DataFile:
    """The trajectories of a file run and, when its configuration needs one, the problem
    whose reference stepper it uses (a stand-in for a `Problem` in a run)."""

    path: str
    array: np.ndarray
    num_test: int
    stepper_problem: Problem | None

    @property
    def num_spatial_dims(self) -> int:
        return self.array.ndim - 3

    @property
    def num_channels(self) -> int:
        return int(self.array.shape[2])

    @property
    def num_train(self) -> int:
        return int(self.array.shape[0]) - self.num_test

    @property
    def horizon(self) -> int:
        return int(self.array.shape[1]) - 1

    @property
    def ref_stepper(self):
        return None if self.stepper_problem is None else self.stepper_problem.ref_stepper

    def description(self) -> dict:
        """What config.json records of the file (a resumed run must find it again)."""
        return {"shape": list(self.array.shape), "dtype": str(self.array.dtype)}

    def train(self):
        """The training trajectories: the mapped slice itself when it is float32 (the
        trainer's copy to the device is then the only read), else a float32 copy."""
        part = self.array[: self.num_train]
        return part if part.dtype == np.float32 else np.asarray(part, np.float32)

    def test(self, test_horizon: int):
        """The held-out trajectories, `test_horizon + 1` levels, as a float32 jax array."""
        part = self.array[self.num_train:, : test_horizon + 1]
        return jnp.asarray(np.asarray(part, np.float32))


def open_data_file(run: dict, configuration, *, needs_stepper: bool) -> DataFile:
    """Open and check `run["data"]` for `configuration` (its window, the held-out split and,
    with `needs_stepper`, `run["problem"]`'s stepper on the file's grid).

    Raises:
        TypeError / ValueError: naming `--data`, `--test-samples` or `--problem`.
    """
    path = run["data"]
    array = load_trajectories(path, name="--data")
    shape = tuple(array.shape)
    check_time_levels(shape, configuration.num_time_levels, name="--data",
                      why=f" (the window of --configuration {run['configuration']} with "
                          f"--rollout-steps {run['rollout_steps']})")
    num_test = check_int(
        "--test-samples", run["test_samples"], maximum=shape[0] - 1,
        meaning=f"the last trajectories of --data are held out for the evaluation, and it "
                f"holds {shape[0]}")
    problem = None
    if needs_stepper:
        problem = make_problem(run["problem"], shape[3])
        if problem.state_shape != shape[2:]:
            raise ValueError(
                f"--problem: expected a problem whose states have the shape (C, *N) = "
                f"{shape[2:]} of --data (its reference stepper serves --configuration "
                f"{run['configuration']}), got {run['problem']} with states "
                f"{problem.state_shape}"
            )
    return DataFile(path=path, array=array, num_test=num_test, stepper_problem=problem)


def absolute(path: str) -> str:
    """`path` made absolute, a `FILE.npz:NAME` member name kept."""
    file, member = split_member(path)
    return os.path.abspath(file) + ("" if member is None else ":" + member)


def check_same_file(stored: dict, found: dict, path: str) -> None:
    """Refuse a resumed or evaluated run whose file is no longer what it was trained on.

    Raises:
        ValueError: naming `--data`, the stored and the found shape and dtype.
    """
    if stored != found:
        raise ValueError(
            f"--data: expected the trajectories the run was trained on (shape "
            f"{tuple(stored.get('shape', ()))}, {stored.get('dtype')}), got {path!r} with "
            f"shape {tuple(found['shape'])}, {found['dtype']}"
        )
