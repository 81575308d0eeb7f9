"""Drop-in replacements of `jax.lax.scan` that trade compute for memory (exact results)."""

from __future__ import annotations

import functools
import logging
import math
from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from .._checks import check_positive_int

__all__ = ["step_checkpoint_scan", "sqrt_checkpoint_scan", "binomial_checkpoint_scan",
           "binomial_step_evaluations"]

tmap = jax.tree_util.tree_map


def _length(xs, length):
    leaves = jax.tree_util.tree_leaves(xs)
    if leaves:
        return leaves[0].shape[0]
    if length is None:
        raise ValueError("length: expected an int when xs is None, got None")
    return int(length)


def _flip(tree):
    return tmap(lambda x: jnp.flip(x, axis=0), tree)


def step_checkpoint_scan(
    f: Callable,
    init: PyTree,
    xs: PyTree | None = None,
    length: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
) -> tuple[PyTree, PyTree]:
    """`jax.lax.scan` with `jax.checkpoint` on the body: the backward pass recomputes
    each step's internals from the stored carry, so memory is T carries instead of
    T sets of step intermediates."""
    return jax.lax.scan(jax.checkpoint(f), init, xs, length=length, reverse=reverse,
                        unroll=unroll)


def sqrt_checkpoint_scan(
    f: Callable,
    init: PyTree,
    xs: PyTree | None = None,
    length: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
) -> tuple[PyTree, PyTree]:
    """`jax.lax.scan` with nested sqrt(T) checkpointing.

    The T steps are cut into floor(T / s) segments of s = ceil(sqrt(T)) steps (plus a
    remainder of fewer than s steps). Only the carries at segment boundaries are kept
    for the backward pass; a segment is recomputed when its gradient is needed, storing
    its s steps. Memory O(sqrt(T)) carries, compute about 2x the forward pass; the
    gradient is exact.

    `reverse` has `jax.lax.scan`'s meaning (steps run from the last element of `xs` to
    the first, `ys[i]` still belongs to `xs[i]`); `unroll` is handed to the scans over
    the steps inside a segment.
    """
    T = _length(xs, length)
    if xs is None:
        xs = jnp.zeros((T, 0))
        body = lambda c, x: f(c, None)  # noqa: E731
    else:
        body = f
    if reverse:
        # Run forward over the flipped inputs, then flip the outputs back: the same
        # step order and output layout as lax.scan(reverse=True).
        xs = _flip(xs)
    s = max(1, math.ceil(math.sqrt(T)))
    n_seg, rem = divmod(T, s)
    head = tmap(lambda x: x[: n_seg * s].reshape((n_seg, s) + x.shape[1:]), xs)
    tail = tmap(lambda x: x[n_seg * s:], xs)

    @jax.checkpoint
    def segment(carry, seg_xs):
        return jax.lax.scan(body, carry, seg_xs, unroll=unroll)

    carry, ys_head = jax.lax.scan(segment, init, head) if n_seg else (init, None)
    ys_parts = []
    if n_seg:
        ys_parts.append(tmap(lambda y: y.reshape((n_seg * s,) + y.shape[2:]), ys_head))
    if rem:
        carry, ys_tail = jax.lax.scan(body, carry, tail, unroll=unroll)
        ys_parts.append(ys_tail)
    if len(ys_parts) == 1:
        ys = ys_parts[0]
    else:
        ys = tmap(lambda *y: jnp.concatenate(y, axis=0), *ys_parts)
    return carry, (_flip(ys) if reverse else ys)


def binomial_checkpoint_scan(
    f: Callable,
    init: PyTree,
    xs: PyTree | None = None,
    length: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    *,
    checkpoints: int,
) -> tuple[PyTree, PyTree]:
    """`jax.lax.scan` whose reverse-mode derivative stores at most `checkpoints` carries.

    Built on `equinox.internal.while_loop(..., kind="checkpointed")`, equinox's online
    binomial ("treeverse") checkpointing (Stumm and Walther 2010; Wang, Moin and
    Iaccarino 2009), the scheme behind diffrax's `RecursiveCheckpointAdjoint`. The
    backward pass recomputes the steps between checkpoints; the gradient is exact.

    Memory: `checkpoints` copies of the carry plus one step's intermediates, whatever
    the length. Per-step outputs `ys` are written into a preallocated `(T, ...)` buffer
    (equinox's write-only loop buffers, never copied into checkpoints): that buffer is
    O(T), which is negligible for the scalar or `None` outputs of the configurations'
    rollouts but not for full states; scan over states only if you need them.

    Compute: with `checkpoints >= T` every step runs twice (forward, then once more in
    the backward pass); fewer checkpoints recompute more. equinox's online schedule is
    near the binomial optimum while T <= (checkpoints + 1)(checkpoints + 2) / 2 and
    degrades beyond it (see `binomial_step_evaluations`).

    Arguments:
        f, init, xs, length, reverse: as `jax.lax.scan`.
        unroll: accepted for signature compatibility; a while loop is not unrolled
            (it changes speed only, never results).
        checkpoints: the number of stored carries (positive int).

    Returns:
        `(final_carry, ys)` as `jax.lax.scan`.

    Raises:
        ValueError: `checkpoints` is not a positive int; `length` missing with `xs=None`.
    """
    checkpoints = check_positive_int("checkpoints", checkpoints)
    del unroll
    T = _length(xs, length)
    if T == 0:
        return jax.lax.scan(f, init, xs, length=0)

    def x_at(i):
        return tmap(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), xs)

    _, y_struct = jax.eval_shape(f, init, x_at(0))
    ys0 = tmap(lambda s: jnp.zeros((T,) + s.shape, s.dtype), y_struct)
    has_ys = bool(jax.tree_util.tree_leaves(ys0))

    def body(val):
        k, carry, ys = val
        i = T - 1 - k if reverse else k
        carry, y = f(carry, x_at(i))
        # mapped over `y`: inside the loop the buffer leaves are equinox buffer objects
        ys = tmap(lambda v, buf: buf.at[i].set(v), y, ys)
        return k + 1, carry, ys

    # equinox (0.1 s to import) loads with the first binomial scan, not with the package
    import equinox.internal as eqxi

    _, carry, ys = eqxi.while_loop(
        lambda val: val[0] < T, body, (jnp.asarray(0, jnp.int32), init, ys0),
        max_steps=T, kind="checkpointed", checkpoints=checkpoints,
        buffers=(lambda val: val[2]) if has_ys else None,
    )
    return carry, ys


class _CountLimit(Exception):
    pass


def binomial_step_evaluations(num_steps: int, checkpoints: int, *,
                              limit: int | None = None) -> int | None:
    """How many times `binomial_checkpoint_scan` runs its step when differentiated.

    Counted, not modelled: a scalar loop of `num_steps` steps with the same
    `checkpoints` is differentiated and every step evaluation (the forward pass, the
    recomputations and the step re-run for its derivative) ticks a host counter. The
    schedule depends only on `(num_steps, checkpoints)`, so this is the count of any
    model. It costs about 40 us per evaluation on a CPU.

    Arguments:
        num_steps: the loop length T (positive int).
        checkpoints: the number of checkpoints (positive int).
        limit: stop counting (return None) after this many evaluations.

    Returns:
        The number of step evaluations (2 * T when `checkpoints >= T`), or None when
        `limit` was reached.

    Raises:
        ValueError: `num_steps`, `checkpoints` or `limit` not a positive int.
    """
    return _count_evaluations(check_positive_int("num_steps", num_steps),
                              check_positive_int("checkpoints", checkpoints),
                              check_positive_int("limit", limit, allow_none=True))


@functools.lru_cache(maxsize=256)
def _count_evaluations(num_steps, checkpoints, limit):
    count = [0]

    def tick(_):
        count[0] += 1
        if limit is not None and count[0] > limit:
            raise _CountLimit()

    def body(c, _):
        jax.debug.callback(tick, c)  # an operand, so it cannot be hoisted out of the loop
        return c * 1.0001, None

    def loss(c):
        final, _ = binomial_checkpoint_scan(body, c, None, length=num_steps,
                                            checkpoints=checkpoints)
        return final

    # jax logs an exception raised in a debug callback before re-raising it; the
    # one raised at the limit is expected, so that log is silenced meanwhile
    logger = logging.getLogger("jax._src.debugging")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        jax.block_until_ready(jax.jit(jax.grad(loss))(jnp.ones(())))
    except Exception:  # the limit aborts the computation from inside the callback
        if limit is not None and count[0] > limit:
            return None
        raise
    finally:
        logger.setLevel(level)
    return count[0]
