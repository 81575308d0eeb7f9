"""The single rollout loop that every configuration is built from."""

from __future__ import annotations

import functools
from typing import Callable, Optional, TypeVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ._utils import cut_where, stop_gradient

__all__ = ["weighted_rollout", "UNROLL_MAX_STEPS"]

State = TypeVar("State")

# Rollouts of at most this many steps run fully unrolled when the scan is the plain
# `jax.lax.scan`. Measured on CPU through the trainer (9-layer conv net, Burgers N=160,
# batch 20; benchmarks/RESULTS.md, "rollout kernel"): unrolling cut the step time by
# 25-55% at 5, 10 and 20 steps, while the first call's compile time grew about 1 s per
# unrolled step under load (+10 s at 10 steps, +26 s at 20). Longer rollouts keep the
# loop, so their programs (and compile times) stay independent of the rollout length.
UNROLL_MAX_STEPS = 10


def weighted_rollout(
    step: Callable[[State], State],
    init: State,
    weights: Float[Array, "num_steps"],
    *,
    term: Callable[[Int[Array, ""], State, State], Float[Array, ""]],
    scan: Callable,
    cut_bptt: bool = False,
    cut_bptt_every: int = 1,
    cut_offset: int | Int[Array, ""] = 0,
    time_offset: int = 0,
    cut: Callable[[State], State] = stop_gradient,
    reset: Optional[Callable[[Int[Array, ""], State], State]] = None,
) -> tuple[Float[Array, ""], State]:
    """Roll `step` out from `init` and accumulate weighted per-step terms.

    For local step i = 0 .. len(weights)-1, with global time t = time_offset + i:

        u = reset(t, u)                       (if `reset` is given)
        v = step(u)
        L += weights[i] * term(t, u, v)
        u = cut(v) if cut_bptt and (cut_offset + i + 1) % cut_bptt_every == 0 else v

    The loop runs through `scan` (the `jax.lax.scan(f, init, xs)` signature), so the
    traced program does not grow with the number of steps, and estimators can swap
    in checkpointed scans. The plain `jax.lax.scan` is fully unrolled for at most
    `UNROLL_MAX_STEPS` steps (same values; faster on CPU, see `UNROLL_MAX_STEPS`). `cut_offset` may be traced (a branch starting at a traced
    main-chain time), hence the cut is a select, not a Python branch.

    Arguments:
        step: batched state -> next batched state (any PyTree).
        init: the initial batched state.
        weights: `(num_steps,)` per-step weights; its length is the number of steps.
        term: `term(t, prev, nxt) -> scalar`, the unweighted loss of the step.
        scan: scan implementation.
        cut_bptt, cut_bptt_every, cut_offset: when to cut the gradient after a step.
        time_offset: added to the local index to give the `t` seen by term/reset.
        cut: what a cut does to the state (default: stop_gradient on every leaf;
            a diverted branch cuts only its network half).
        reset: optional `reset(t, state) -> state` applied before each step.

    Returns:
        `(loss, final_state)`.

    Raises:
        ValueError: if `step` changes the structure or shapes of the state.
    """
    num_steps = weights.shape[0]
    # The carry must keep one type across iterations: promote the initial state to
    # what the stepper returns (e.g. float32 data through float64 parameters).
    out = jax.eval_shape(step, init)
    init_struct = jax.tree_util.tree_structure(init)
    if jax.tree_util.tree_structure(out) != init_struct or any(
        o.shape != i.shape
        for o, i in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(init))
    ):
        raise ValueError(
            "`stepper` must map a state to a state of the same structure and shapes; got "
            f"{jax.tree_util.tree_map(lambda x: x.shape, init)} -> "
            f"{jax.tree_util.tree_map(lambda x: x.shape, out)}."
        )
    init = jax.tree_util.tree_map(lambda i, o: jnp.asarray(i).astype(o.dtype), init, out)
    total_dtype = jnp.result_type(weights.dtype, *[o.dtype for o in jax.tree_util.tree_leaves(out)])

    def body(carry, xs):
        state, total = carry
        i, weight = xs
        t = time_offset + i
        if reset is not None:
            state = reset(t, state)
        nxt = step(state)
        total = total + (weight * term(t, state, nxt)).astype(total_dtype)
        if cut_bptt:
            nxt = cut_where((cut_offset + i + 1) % cut_bptt_every == 0, cut(nxt), nxt)
        return (nxt, total), None

    carry = (init, jnp.zeros((), total_dtype))
    if scan is jax.lax.scan and num_steps <= UNROLL_MAX_STEPS:
        scan = functools.partial(jax.lax.scan, unroll=True)
    (final, total), _ = scan(body, carry, (jnp.arange(num_steps), weights))
    return total, final
