"""Staggered starts of OnlineTrainer's batch: every member's stream of rollouts runs on a
clock of its own, shifted by a phase, so that one update's batch holds states of
spread-out trajectory times.

Member b with phase o_b is, at step p (0-based) of the trainer's rollout r, at step
(p + o_b) mod T of its trajectory j = r + (p + o_b) // T (T the rollout length).
Trajectory j of member b starts from member b of the batch of initial conditions of
rollout j, so the streams only shift the trajectories of the unstaggered run in time. A
member's trajectory ends (and the next one starts) at one of its re-anchor steps, where
the gradient path of every member is cut anyway: the estimators' carries are shared by
the batch, and so no carry needs a per-member reset.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Int

from .._checks import check_int

__all__ = ["allowed_phases", "check_stagger", "member_where", "restart_mask",
           "resolve_phases", "stored_index", "warm_up"]


def allowed_phases(rollout_length: int, reanchor_every: int) -> list[int]:
    """The phases o in [0, T) whose trajectories end on a re-anchor step: 0, and every o
    with (T - o) a positive multiple of K (the re-anchor clock restarts with a rollout)."""
    T, K = rollout_length, reanchor_every
    return sorted({0} | {T - j * K for j in range(1, T // K + 1) if T - j * K > 0})


def check_stagger(stagger: Any, *, rollout_length: int,
                  reanchor_every: int | None) -> bool | tuple[int, ...]:
    """The checked `stagger` option of OnlineTrainer: False, True or one phase per member.

    Raises:
        TypeError: for anything but a bool or a sequence of ints.
        ValueError: staggering without `reanchor_every`, with no phase but 0 to spread
            over, or a phase that is not allowed (see `allowed_phases`).
    """
    if isinstance(stagger, (bool, np.bool_)):
        value: bool | tuple[int, ...] = bool(stagger)
    elif isinstance(stagger, (str, bytes)) or not isinstance(stagger, (Sequence, np.ndarray)):
        raise TypeError("stagger: expected True, False or a sequence of ints (one phase per "
                        f"batch member), got {type(stagger).__name__}")
    else:
        value = tuple(check_int("stagger", o, minimum=0, maximum=rollout_length - 1,
                                meaning="steps of the rollout") for o in stagger)
        if not value:
            raise ValueError("stagger: expected one phase per batch member, got an empty "
                             "sequence")
    if value is False:
        return value
    if reanchor_every is None:
        raise ValueError("stagger: expected reanchor_every with it (a member's trajectory "
                         "ends at one of its re-anchor steps, where the gradient path of "
                         f"the whole batch is cut), got stagger={stagger!r} with "
                         "reanchor_every=None")
    allowed = allowed_phases(rollout_length, reanchor_every)
    if len(allowed) == 1:
        raise ValueError(f"stagger: expected reanchor_every < rollout_length (there is no "
                         f"phase but 0 to spread over), got reanchor_every={reanchor_every} "
                         f"with rollout_length={rollout_length}")
    if value is not True:
        wrong = [o for o in value if o not in allowed]
        if wrong:
            raise ValueError(f"stagger: expected phases in {allowed} (0, or rollout_length "
                             f"minus a multiple of reanchor_every), got {wrong[0]}")
    return value


def resolve_phases(stagger: bool | tuple[int, ...], batch: int, rollout_length: int,
                   reanchor_every: int | None) -> np.ndarray | None:
    """Member b's phase, `(B,)` int32: with `True` the allowed phases spread evenly over the
    batch (member b takes the (b * n // B)-th of the n allowed phases); None unstaggered.

    Raises:
        ValueError: an explicit sequence whose length is not the batch size.
    """
    if stagger is False:
        return None
    if stagger is True:
        allowed = allowed_phases(rollout_length, reanchor_every)
        picks = (np.arange(batch) * len(allowed)) // batch
        return np.asarray(allowed, np.int32)[picks]
    if len(stagger) != batch:
        raise ValueError(f"stagger: expected one phase per batch member ({batch}), got "
                         f"{len(stagger)}")
    return np.asarray(stagger, np.int32)


def stored_index(phases: np.ndarray, rollout: int, positions: np.ndarray, *,
                 samples: int, rollout_length: int) -> tuple[np.ndarray, np.ndarray]:
    """`(rows, levels)`, each `(B, len(positions))`: the stored trajectory and time level
    member b is at before rollout step p (trajectory j of member b is row
    (j * B + b) mod samples, as unstaggered rollout j's member b)."""
    B, T = phases.shape[0], rollout_length
    total = positions[None, :] + phases[:, None]
    trajectory = rollout + total // T
    return (trajectory * B + np.arange(B)[:, None]) % samples, total % T


def restart_mask(phases: Int[Array, "B"], position: Int[Array, ""],
                 rollout_length: int) -> Bool[Array, "B"]:
    """Members whose trajectory ends after rollout step `position` inside the rollout
    (phase 0 members end with the rollout, where every member is reset)."""
    return ((position + 1 + phases) % rollout_length == 0) & (phases > 0)


def member_where(mask: Bool[Array, "B"], a: Array, b: Array) -> Array:
    """`a` for the members in `mask`, else `b` (batched states `(B, C, *N)`)."""
    return jnp.where(mask.reshape((-1,) + (1,) * (b.ndim - 1)), a.astype(b.dtype), b)


def warm_up(ref_stepper: Callable) -> Callable:
    """`fn(u0 (B, C, *N), phases (B,)) -> u`: member b advanced by phases[b] solver steps
    (the state its first trajectory is at when the run starts), jitted."""
    step = jax.vmap(ref_stepper)

    def run(u0, phases):
        def body(s, u):
            return member_where(s < phases, step(u), u)
        return jax.lax.fori_loop(0, jnp.max(phases), body, u0)

    return jax.jit(run)
