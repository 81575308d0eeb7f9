"""The rollout kernel: the one loop behind every rollout of the library.

Configurations (their BPTT losses), the online estimators' carries, K-FAC's curvature
model, the streaming trainer and the metrics all advance a state through this module:
a step function, a per-step output that is summed or stacked, and the two events a
rollout knows, both taking effect after a step (on the state that enters the next one):

* a **cut** (`cut_bptt`): the state keeps its value, but no gradient reaches the steps
  before it;
* a **reset** (teacher forcing): the state is replaced by a data level, which also ends
  the gradient path through the old state.

What a cut or a reset does to the state is the caller's choice (a `stop_gradient` on a
field, a restart of an estimator's carry), so one loop serves plain fields and carries.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Callable, Optional, TypeVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PyTree

__all__ = [
    "BatchStepper",
    "batched",
    "bind",
    "Events",
    "rollout",
    "weighted_rollout",
    "cut_where",
    "stop_gradient",
    "tree_add",
    "UNROLL_MAX_STEPS",
]

State = TypeVar("State")

# Rollouts of at most this many steps run fully unrolled when the scan is the plain
# `jax.lax.scan`. Measured on CPU through the trainer (9-layer conv net, Burgers N=160,
# batch 20; benchmarks/RESULTS.md, "rollout kernel"): unrolling cut the step time by
# 25-55% at 5, 10 and 20 steps, while the first call's compile time grew about 1 s per
# unrolled step under load (+10 s at 10 steps, +26 s at 20). Longer rollouts keep the
# loop, so their programs (and compile times) stay independent of the rollout length.
# brainstate's scan (the eligibility-trace estimators) unrolls by the same rule: an
# OnlineTrainer update of 5 D_RTRL steps then writes its traces once, not every step
# (stream step 27.9 -> 13.9 ms at APEBench's size, first call 5.9 -> 7.9 s;
# benchmarks/RESULTS.md, "Unrolled online updates").
UNROLL_MAX_STEPS = 10


def _unrollable(scan: Callable) -> bool:
    """Whether `scan` is jax's or brainstate's plain scan (both take `unroll=`)."""
    if scan is jax.lax.scan:
        return True
    brainstate = sys.modules.get("brainstate")  # loaded by whoever passes its scan
    return brainstate is not None and scan is brainstate.transform.scan


@dataclasses.dataclass(frozen=True)
class BatchStepper:
    """A stepper that advances a whole batch `(B, C, *N)` in one call.

    Configurations and metrics call a plain stepper on ONE state and `jax.vmap` it over
    the batch. A model that steps batches itself is faster called on the batch: the
    vmap of the built-in emulators' one-state path cost 7-17% of a BPTT update of the
    9-layer, 26-channel conv net on CPU (benchmarks/RESULTS.md). Wrapping a step in
    `BatchStepper` says that it takes batches; called on one state it must work too.

    Attributes:
        step: `step(u)` on a batch `(B, C, *N)` or on one state `(C, *N)`.
    """

    step: Callable

    def __call__(self, u: PyTree) -> PyTree:
        return self.step(u)


def batched(stepper: Callable) -> Callable:
    """The batch step of `stepper`: its own for a `BatchStepper`, else its `jax.vmap`."""
    return stepper.step if isinstance(stepper, BatchStepper) else jax.vmap(stepper)


def bind(apply: Callable, params: PyTree) -> Callable:
    """The stepper `u -> apply(params, u)`.

    A `BatchStepper` when `apply` says it steps batches (`apply.steps_batches`, set by
    the model adapters of `online_emulate.emulators`), a plain one-state stepper
    otherwise.
    """

    def step(u):
        return apply(params, u)

    return BatchStepper(step) if getattr(apply, "steps_batches", False) else step


def stop_gradient(tree: PyTree) -> PyTree:
    """`jax.lax.stop_gradient` on every leaf."""
    return jax.tree_util.tree_map(jax.lax.stop_gradient, tree)


def cut_where(flag: bool | Bool[Array, ""], cut: PyTree, keep: PyTree) -> PyTree:
    """Leafwise `where(flag, cut, keep)` with `cut` cast to `keep`'s dtype.

    With a traced `flag` this is a conditional stop_gradient / conditional reset: the
    value is `cut` where the flag holds, and cotangents reach `keep` only where it does
    not.
    """
    return jax.tree_util.tree_map(lambda c, k: jnp.where(flag, c.astype(k.dtype), k), cut, keep)


def tree_add(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise sum of two PyTrees of the same structure."""
    return jax.tree_util.tree_map(jnp.add, a, b)


def _every(period: Optional[int], count) -> Bool[Array, ""]:
    if period is None:
        return jnp.asarray(False)
    count = jnp.asarray(count)
    return (count > 0) & (count % period == 0)


@dataclasses.dataclass(frozen=True)
class Events:
    """When a rollout cuts and resets its state.

    After local step i (0-based; global time t = time_offset + i) the state entering the
    next step is

    * cut when `cut_every` is set and `(cut_offset + i + 1) % cut_every == 0` (the cut
      clock counts the rollout's own steps, offset by `cut_offset`: a diverted branch
      continues the main chain's clock);
    * reset, i.e. replaced by data level t + 1, when `reset_every` is set and
      `(t + 1) % reset_every == 0`. A reset also ends the gradient path through the
      state it replaces.

    Attributes:
        cut_every: period of the gradient cuts (`cut_bptt_every` with `cut_bptt`), or None.
        reset_every: period of the teacher-forcing resets, or None.
    """

    cut_every: Optional[int] = None
    reset_every: Optional[int] = None

    def reset_after(self, t: int | Int[Array, ""]) -> Bool[Array, ""]:
        """Whether the state after global step `t` is replaced by data level `t + 1`."""
        return _every(self.reset_every, jnp.asarray(t) + 1)

    def cut_after(self, i: int | Int[Array, ""], cut_offset: int | Int[Array, ""] = 0) -> Bool[Array, ""]:
        """Whether the state after local step `i` is cut."""
        return _every(self.cut_every, jnp.asarray(cut_offset) + jnp.asarray(i) + 1)

    @property
    def any(self) -> bool:
        """Whether any event can happen."""
        return self.cut_every is not None or self.reset_every is not None


def _field_cut(state, where):
    return cut_where(where, stop_gradient(state), state)


def _field_reset(state, where, value):
    return cut_where(where, value, state)


def rollout(
    step: Callable[[State, Int[Array, ""]], tuple[State, PyTree]],
    init: State,
    num_steps: int,
    *,
    accumulate: Optional[PyTree] = None,
    events: Events = Events(),
    level: Optional[Callable[[Int[Array, ""]], Any]] = None,
    cut: Callable[[State, Bool[Array, ""]], State] = _field_cut,
    reset: Callable[[State, Bool[Array, ""], Any], State] = _field_reset,
    time_offset: int | Int[Array, ""] = 0,
    cut_offset: int | Int[Array, ""] = 0,
    scan: Callable = jax.lax.scan,
) -> tuple[State, PyTree]:
    """Advance `init` by `num_steps` steps of `step`, with cuts and resets.

    For local step i = 0 .. num_steps-1 and global time t = time_offset + i (see `Events`):

        state, out_i = step(state, t)
        if events.cut_after(i, cut_offset): state = cut(state, True)
        if events.reset_after(t):           state = reset(state, True, level(t + 1))

    (the flags are traced: `cut` and `reset` receive them and act conditionally). The
    outputs are summed into `accumulate` when it is given (its structure and dtypes),
    otherwise stacked along a new leading axis. The time index is a counter in the loop
    carry, so nothing of length `num_steps` is materialised besides stacked outputs.

    The loop runs through `scan` (signature of `jax.lax.scan(f, init, xs, length)`), so
    the traced program does not grow with `num_steps`, and gradient estimators can swap
    in checkpointed scans. The plain `jax.lax.scan` is fully unrolled for at most
    `UNROLL_MAX_STEPS` steps (same values, faster on CPU).

    Arguments:
        step: `step(state, t) -> (state, out)`.
        init: the initial state (any PyTree).
        num_steps: number of steps (a Python int >= 0).
        accumulate: the zero of the summed outputs; None stacks them.
        events: when to cut and reset (default: never).
        level: `level(t) -> value` of data level t, needed with `events.reset_every`.
        cut: `cut(state, where)`; default: stop_gradient on every leaf where `where`.
        reset: `reset(state, where, value)`; default: the value where `where`.
        time_offset: global time of the first step (may be traced).
        cut_offset: offset of the cut clock (may be traced).
        scan: scan implementation.

    Returns:
        `(final_state, outputs)`: the summed outputs, or the stacked `(num_steps, ...)` ones.

    Raises:
        ValueError: if `events` resets but no `level` is given.
    """
    if events.reset_every is not None and level is None:
        raise ValueError("level: expected the data levels (a rollout with teacher-forcing "
                         "resets needs them), got None")
    cuts = events.cut_every is not None
    resets = events.reset_every is not None

    def body(carry, _):
        state, total, i = carry
        t = time_offset + i
        state, out = step(state, t)
        if cuts:
            state = cut(state, events.cut_after(i, cut_offset))
        if resets:
            state = reset(state, events.reset_after(t), level(t + 1))
        if accumulate is None:
            return (state, total, i + 1), out
        return (state, tree_add(total, out), i + 1), None

    carry = (init, accumulate, jnp.zeros((), jnp.int32))
    if _unrollable(scan) and num_steps <= UNROLL_MAX_STEPS:
        scan = functools.partial(scan, unroll=True)
    (final, total, _), stacked = scan(body, carry, None, length=num_steps)
    return final, (stacked if accumulate is None else total)


def weighted_rollout(
    step: Callable[[State], State],
    init: State,
    weights: Float[Array, "num_steps"],
    *,
    term: Callable[[Int[Array, ""], State, State], Float[Array, ""]],
    scan: Callable = jax.lax.scan,
    events: Events = Events(),
    level: Optional[Callable[[Int[Array, ""]], State]] = None,
    cut_offset: int | Int[Array, ""] = 0,
    time_offset: int = 0,
    cut: Callable[[State], State] = stop_gradient,
) -> tuple[Float[Array, ""], State]:
    """The weighted loss of a field rollout: `L = sum_i weights[i] * term(t, u_t, u_{t+1})`.

    `u_{t+1} = step(u_t)`, with the cuts and resets of `events` (see `rollout`); the
    length of `weights` is the number of steps, `t = time_offset + i`.

    Arguments:
        step: batched state -> next batched state (any PyTree).
        init: the initial batched state; promoted to the dtypes `step` returns.
        weights: `(num_steps,)` per-step weights.
        term: `term(t, prev, nxt) -> scalar`, the unweighted loss of the step.
        scan: scan implementation.
        events, level, cut_offset, time_offset: as in `rollout`.
        cut: what a cut does to the state (default: stop_gradient on every leaf; a
            diverted branch cuts only its network half).

    Returns:
        `(loss, final_state)`.

    Raises:
        ValueError: if `step` changes the structure or shapes of the state.
    """
    out = jax.eval_shape(step, init)
    structure = jax.tree_util.tree_structure(init)
    if jax.tree_util.tree_structure(out) != structure or any(
        o.shape != i.shape
        for o, i in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(init))
    ):
        raise ValueError(
            "stepper: expected a map from a state to a state of the same structure and "
            f"shapes, got {jax.tree_util.tree_map(lambda x: x.shape, init)} -> "
            f"{jax.tree_util.tree_map(lambda x: x.shape, out)}"
        )
    # the carry keeps one type across iterations: promote the initial state to what
    # the stepper returns (e.g. float32 data through float64 parameters)
    init = jax.tree_util.tree_map(lambda i, o: jnp.asarray(i).astype(o.dtype), init, out)
    loss_dtype = jnp.result_type(weights.dtype, *[o.dtype for o in jax.tree_util.tree_leaves(out)])
    weights = jnp.asarray(weights)
    base = time_offset

    def one(state, t):
        nxt = step(state)
        return nxt, (weights[t - base] * term(t, state, nxt)).astype(loss_dtype)

    final, loss = rollout(
        one, init, weights.shape[0], accumulate=jnp.zeros((), loss_dtype), events=events,
        level=level, cut=lambda s, where: cut_where(where, cut(s), s),
        time_offset=time_offset, cut_offset=cut_offset, scan=scan,
    )
    return loss, final
