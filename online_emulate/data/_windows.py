"""Shuffled minibatches of trajectory windows, gathered by index inside jitted code."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Int, PRNGKeyArray

__all__ = ["WindowSampler"]


@dataclasses.dataclass(frozen=True)
class WindowSampler:
    """The minibatch schedule over all windows of all trajectories.

    Every trajectory of `num_time_levels` levels yields `num_time_levels - window_length + 1`
    windows (one per offset; "sub-stacking"), or only the window at offset 0 when
    `sub_stacking=False`. Windows are numbered `w = sample * windows_per_trajectory +
    offset`. Each epoch visits all `num_windows` windows in a fresh random order
    `permutation(fold_in(key, epoch))`, and the epochs are laid end to end into one
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
                f"data: the configuration needs windows of {self.window_length} time "
                f"levels but the trajectories have only {self.num_time_levels}; use longer "
                "trajectories or fewer rollout steps"
            )
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or not 1 <= self.batch_size <= self.num_windows
        ):
            raise ValueError(
                f"batch_size: expected an int in [1, {self.num_windows}] (the number of "
                f"training windows: {self.num_trajectories} trajectories x "
                f"{self.windows_per_trajectory} offsets), got {self.batch_size!r}"
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

    def permutation(self, key: PRNGKeyArray, epoch) -> Int[Array, " num_windows"]:
        return jax.random.permutation(jax.random.fold_in(key, epoch), self.num_windows)

    def window_ids(
        self, key: PRNGKeyArray, step, perm_lo=None, perm_hi=None
    ) -> Int[Array, " batch"]:
        """Window numbers of the batch at `step`.

        `perm_lo` / `perm_hi` may pass in the permutations of the epoch in which the batch
        starts and of the next one (cached by a training loop); otherwise they are drawn.
        """
        w, b = self.num_windows, self.batch_size
        positions = step * b + jnp.arange(b)
        epoch_lo = (step * b) // w
        if perm_lo is None:
            perm_lo = self.permutation(key, epoch_lo)
            perm_hi = self.permutation(key, epoch_lo + 1)
        within = positions - epoch_lo * w
        in_lo = within < w
        return jnp.where(
            in_lo,
            perm_lo[jnp.minimum(within, w - 1)],
            perm_hi[jnp.maximum(within - w, 0)],
        )

    def gather(self, data, window_ids: Int[Array, " batch"]):
        """Slice windows `(batch, window_length, ...)` out of `(S, T+1, ...)` trajectories."""
        per = self.windows_per_trajectory
        samples = window_ids // per
        offsets = window_ids % per

        def one(leaf):
            def take(s, o):
                return jax.lax.dynamic_slice_in_dim(leaf[s], o, self.window_length, axis=0)

            return jax.vmap(take)(samples, offsets)

        return jax.tree_util.tree_map(one, data)
