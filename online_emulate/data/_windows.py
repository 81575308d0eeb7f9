"""Shuffled minibatches of trajectory windows, gathered by index inside jitted code."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Int, PyTree

from .._checks import check_int, key_data

__all__ = ["WindowSampler"]


@dataclasses.dataclass(frozen=True)
class WindowSampler:
    """The minibatch schedule over all windows of all trajectories.

    Every trajectory of `num_time_levels` levels yields `num_time_levels - window_length + 1`
    windows (one per offset; "sub-stacking"), or only the window at offset 0 when
    `sub_stacking=False`. Windows are numbered `w = sample * windows_per_trajectory +
    offset`. Each epoch visits all `num_windows` windows in a fresh random order
    `permutation(key, epoch)` (numpy's PCG64 seeded by the key words and the epoch),
    and the epochs are laid end to end into one
    stream; step `s` takes stream positions `s*B, ..., s*B + B - 1`. So every batch has
    exactly `batch_size` windows (no ragged last batch, no recompilation, no window
    dropped): when an epoch does not divide evenly, a batch wraps over into the next
    epoch's order. The schedule is a pure function of `(key, step)`, which makes resuming
    exact.

    Windows are never materialised: `gather` slices them out of the trajectories.

    Arguments:
        num_trajectories: number of trajectories S.
        num_time_levels: time levels per trajectory T+1.
        window_length: time levels per window L (the configuration's `num_time_levels`).
        batch_size: windows per step B (1 <= B <= num_windows).
        sub_stacking: use every offset (True) or only offset 0 (False).

    Raises:
        ValueError: if a window does not fit into a trajectory, or `batch_size` is not in
            [1, num_windows].
    """

    num_trajectories: int
    num_time_levels: int
    window_length: int
    batch_size: int
    sub_stacking: bool = True

    def __post_init__(self):
        if self.window_length > self.num_time_levels:
            raise ValueError(
                f"data: expected trajectories of at least {self.window_length} time levels "
                f"(the configuration's window), got {self.num_time_levels}; use longer "
                "trajectories or fewer rollout steps"
            )
        check_int(
            "batch_size", self.batch_size, maximum=self.num_windows,
            meaning=f"the number of training windows: {self.num_trajectories} trajectories "
                    f"x {self.windows_per_trajectory} offsets",
        )

    @property
    def windows_per_trajectory(self) -> int:
        if not self.sub_stacking:
            return 1
        return self.num_time_levels - self.window_length + 1

    @property
    def num_windows(self) -> int:
        return self.num_trajectories * self.windows_per_trajectory

    def epoch_of_step(self, step: int) -> float:
        """Fractional number of epochs completed after `step` steps."""
        return step * self.batch_size / self.num_windows

    def permutation(self, key: ArrayLike, epoch: int) -> np.ndarray:
        """The visiting order of all windows in `epoch` (host-side numpy, deterministic).

        Drawn on the host: a sort inside the jitted step costs about a second of XLA
        compile time on CPU, the host shuffle microseconds per epoch.
        """
        words = np.asarray(key_data(key), np.uint32)
        rng = np.random.default_rng([*words.ravel().tolist(), int(epoch)])
        return rng.permutation(self.num_windows).astype(np.int32)

    def epochs_spanned(self, first_step: int, num_steps: int) -> tuple[int, int]:
        """`(first_epoch, count)` of the epochs touched by steps [first_step, first_step + num_steps)."""
        b, w = self.batch_size, self.num_windows
        first = (first_step * b) // w
        last = ((first_step + num_steps) * b - 1) // w
        return first, last - first + 1

    def max_epochs_per_chunk(self, num_steps: int) -> int:
        """Upper bound of `epochs_spanned(...)[1]` for any chunk of `num_steps` steps."""
        return -(-num_steps * self.batch_size // self.num_windows) + 1

    def permutation_table(
        self,
        key: ArrayLike,
        first_step: int,
        num_steps: int,
        rows: int | None = None,
    ) -> tuple[int, np.ndarray]:
        """Stacked permutations of the epochs of a chunk, padded to `rows` rows."""
        first, count = self.epochs_spanned(first_step, num_steps)
        rows = count if rows is None else rows
        table = np.zeros((rows, self.num_windows), np.int32)
        for i in range(count):
            table[i] = self.permutation(key, first + i)
        return first, table

    def window_ids_from_table(
        self,
        step: ArrayLike,
        first_epoch: ArrayLike,
        table: ArrayLike,
    ) -> Int[Array, " batch"]:
        """Window numbers of the batch at `step` (jittable), given `permutation_table`."""
        positions = step * self.batch_size + jnp.arange(self.batch_size)
        epoch = positions // self.num_windows
        return table[epoch - first_epoch, positions % self.num_windows]

    def window_ids(self, key: ArrayLike, step: int) -> np.ndarray:
        """Window numbers of the batch at `step` (host-side reference of the schedule)."""
        first, table = self.permutation_table(key, step, 1)
        return np.asarray(self.window_ids_from_table(step, first, table))

    def gather(self, data: PyTree, window_ids: Int[Array, " batch"]) -> PyTree:
        """Slice windows `(batch, window_length, ...)` out of `(S, T+1, ...)` trajectories."""
        per = self.windows_per_trajectory
        samples = window_ids // per
        offsets = window_ids % per

        def one(leaf):
            def take(s, o):
                return jax.lax.dynamic_slice_in_dim(leaf[s], o, self.window_length, axis=0)

            return jax.vmap(take)(samples, offsets)

        return jax.tree_util.tree_map(one, data)
