"""Which state a trainer keeps when training diverges.

Every trainer (the optax chunk, the K-FAC host loop, seed-parallel training and the
streaming `OnlineTrainer`) evaluates step k's loss L_k at the state S_k it is about to
update, and stops when a loss, a gradient or the updated parameters are non-finite. It
then keeps the ANCHOR: the latest state S_k whose loss L_k and gradient were finite and
whose loss was sane,

    L_k <= divergence_factor * min(L_j, the finite losses of the RECENT steps before k),

with the optimizer state (and, when streaming, the stream's carry and position) it had.
The anchor's step count is k (its history holds L_0 .. L_{k-1}), and L_k is the loss the
kept parameters have on step k's windows, which the error reports. A state reached by a
finite but enormous update (a loss far above the recent ones) is never kept: from it,
no learning rate continues.

`advance` is the one finite-and-sane test; it runs traced inside the compiled chunks and
jitted once per step in the K-FAC host loop. It tracks which step the anchor is, not the
state itself: copying parameters and optimizer state at every step doubled the cost of
a cheap streaming update. The compiled chunks are deterministic, so the host rebuilds the
anchor's state after a divergence by running the chunk it lies in again from that
chunk's start, for exactly the steps up to the anchor (`AnchorSource`). The K-FAC loop
keeps a copy instead (`Anchor.state`): kfac-jax compiles its own steps, which are not
cheap to run again.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import numpy as np

from .._checks import check_real

__all__ = ["RECENT", "DEFAULT_DIVERGENCE_FACTOR", "Anchor", "AnchorSource", "start_anchor",
           "advance", "check_divergence_factor"]

#: how many steps back the "best recent loss" looks
RECENT = 100
#: how far above the best recent loss a kept state's loss may be
DEFAULT_DIVERGENCE_FACTOR = 1e3


class Anchor(NamedTuple):
    """Which state a divergence falls back to (a PyTree: it travels through compiled loops).

    Attributes:
        step: its step count (int32).
        loss: its loss on step `step`'s windows; NaN while no loss of it is known (the
            state a call started from).
        recent: the finite losses of the last `RECENT` steps, oldest first to be
            overwritten (+inf where there is none), shape (RECENT,).
        state: the state itself where a rule keeps it (K-FAC); None where the host
            rebuilds it (`AnchorSource`).
    """

    step: Any
    loss: Any
    recent: Any
    state: Any = None


class AnchorSource(NamedTuple):
    """How the host rebuilds a state of one chunk: `replay(k)` runs the chunk again from
    its start (step `step0`) for `k` steps and returns the state after them."""

    step0: int
    replay: Callable[[int], Any]


def check_divergence_factor(divergence_factor: float) -> float:
    """`divergence_factor` as a float.

    Raises:
        ValueError / TypeError: it is not a real number >= 1.
    """
    factor = check_real("divergence_factor", divergence_factor, positive=True)
    if factor < 1:
        raise ValueError(f"divergence_factor: expected a number >= 1, got {divergence_factor!r}")
    return factor


def recent_losses(history_loss: np.ndarray, dtype) -> np.ndarray:
    """The `recent` buffer of a chunk that follows the losses `history_loss`: the last
    `RECENT` finite ones, front-padded with +inf (slot i is the one a chunk's i-th step
    overwrites: the oldest)."""
    tail = np.asarray(history_loss, np.float64)[-RECENT:]
    tail = np.where(np.isfinite(tail), tail, np.inf)
    return np.concatenate([np.full(RECENT - tail.size, np.inf), tail]).astype(dtype)


def start_anchor(step: int, history_loss: np.ndarray, dtype) -> Anchor:
    """The anchor of a call's first chunk: the state it starts from (step `step`, its
    loss not known yet), after the losses `history_loss`."""
    return Anchor(np.int32(step), np.asarray(np.nan, dtype), recent_losses(history_loss, dtype))


def advance(anchor: Anchor, i, step, loss, usable, factor: float) -> Anchor:
    """The anchor after step `step` (the `i`-th of its chunk) evaluated `loss` at the
    state it was about to update.

    Arguments:
        anchor: the anchor before the step (its `state` is passed through).
        i: the step's index within its chunk (picks the ring-buffer slot of `recent`).
        step: the step count.
        loss: the step's loss (a scalar).
        usable: whether loss and gradient are finite (K-FAC, which does not show its
            gradient: whether loss and update are).
        factor: the divergence factor.
    """
    loss = jnp.asarray(loss).astype(anchor.recent.dtype)
    sane = usable & (loss <= factor * jnp.min(anchor.recent))
    recent = anchor.recent.at[jnp.asarray(i) % RECENT].set(jnp.where(usable, loss, jnp.inf))
    return Anchor(jnp.where(sane, jnp.asarray(step, jnp.int32), anchor.step),
                  jnp.where(sane, loss, anchor.loss), recent, anchor.state)
