"""Drop-in replacements of `jax.lax.scan` that trade compute for memory (exact results)."""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["step_checkpoint_scan", "sqrt_checkpoint_scan"]


def _length(xs, length):
    leaves = jax.tree_util.tree_leaves(xs)
    if leaves:
        return leaves[0].shape[0]
    if length is None:
        raise ValueError("length: expected an int when xs is None, got None")
    return int(length)


def step_checkpoint_scan(f: Callable, init, xs=None, length=None, **kwargs):
    """`jax.lax.scan` with `jax.checkpoint` on the body: the backward pass recomputes
    each step's internals from the stored carry, so memory is T carries instead of
    T sets of step intermediates."""
    return jax.lax.scan(jax.checkpoint(f), init, xs, length=length, **kwargs)


def sqrt_checkpoint_scan(f: Callable, init, xs=None, length=None, **kwargs):
    """`jax.lax.scan` with nested sqrt(T) checkpointing.

    The T steps are cut into floor(T / s) segments of s = ceil(sqrt(T)) steps (plus a
    remainder of fewer than s steps). Only the carries at segment boundaries are kept
    for the backward pass; a segment is recomputed when its gradient is needed, storing
    its s steps. Memory O(sqrt(T)) carries, compute about 2x the forward pass; the
    gradient is exact.
    """
    T = _length(xs, length)
    if xs is None:
        xs = jnp.zeros((T, 0))
        body = lambda c, x: f(c, None)  # noqa: E731
    else:
        body = f
    s = max(1, math.ceil(math.sqrt(T)))
    n_seg, rem = divmod(T, s)
    head = jax.tree_util.tree_map(lambda x: x[: n_seg * s].reshape((n_seg, s) + x.shape[1:]), xs)
    tail = jax.tree_util.tree_map(lambda x: x[n_seg * s:], xs)

    @jax.checkpoint
    def segment(carry, seg_xs):
        return jax.lax.scan(body, carry, seg_xs)

    carry, ys_head = jax.lax.scan(segment, init, head) if n_seg else (init, None)
    ys_parts = []
    if n_seg:
        ys_parts.append(
            jax.tree_util.tree_map(lambda y: y.reshape((n_seg * s,) + y.shape[2:]), ys_head)
        )
    if rem:
        carry, ys_tail = jax.lax.scan(body, carry, tail)
        ys_parts.append(ys_tail)
    if len(ys_parts) == 1:
        ys = ys_parts[0]
    else:
        ys = jax.tree_util.tree_map(lambda *y: jnp.concatenate(y, axis=0), *ys_parts)
    return carry, ys
