"""The on-device buffer of a streaming trainer: solver windows are written in, training
windows are drawn out, and nothing reaches the host.

The buffer holds `buffer_size` windows `(L, C, *N)` in one array. Windows are offered
one at a time, in order; the policy decides where an offered window goes:

* `"fifo"` (the default): the n-th window offered (0-based) goes to slot
  `n % buffer_size`, replacing the oldest one. Every window stays for exactly
  `buffer_size` writes, so with `w` windows written per training step and `B` drawn
  per step, every window is drawn `B / w` times in expectation, whenever it was made,
  and no window is older than `buffer_size / w` steps: the buffer follows the stream.
* `"reservoir"` (Vitter's algorithm R): the first `buffer_size` windows fill the
  slots; the n-th one after that replaces a uniformly drawn slot with probability
  `buffer_size / (n + 1)` and is dropped otherwise, so at any time the buffer is a
  uniform sample of EVERYTHING offered so far. The price is freshness: after `n`
  windows a new one enters with probability `buffer_size / n`, so a long run trains
  mostly on its oldest windows and most late ones are never drawn
  (`benchmarks/stream_buffer.py` measures both).

Drawing is uniform over the filled slots, with replacement (`draw`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

__all__ = ["BufferState", "POLICIES", "init_buffer", "offer", "draw_ids", "draw"]

POLICIES = ("fifo", "reservoir")


class BufferState(NamedTuple):
    """The buffer: `windows` `(buffer_size, L, C, *N)` and `count`, the number of
    windows offered so far (int32 scalar; the filled slots are `min(count,
    buffer_size)`)."""

    windows: Float[Array, "M L C ..."]
    count: Int[Array, ""]


def init_buffer(buffer_size: int, window_shape: tuple[int, ...], dtype) -> BufferState:
    """An empty buffer of `buffer_size` windows of shape `window_shape` `(L, C, *N)`."""
    return BufferState(jnp.zeros((buffer_size, *window_shape), dtype), jnp.int32(0))


def _slot(policy: str, n, size: int, key):
    """Where the n-th offered window goes (`size` and above: dropped)."""
    if policy == "fifo":
        return n % size
    replace = jax.random.randint(jax.random.fold_in(key, n), (), 0, jnp.maximum(n + 1, 1))
    return jnp.where(n < size, n, replace)


def offer(state: BufferState, windows: Float[Array, "K L C ..."], valid: Bool[Array, "K"],
          key: PRNGKeyArray, *, policy: str = "fifo") -> BufferState:
    """Offer `windows[k]` for every k with `valid[k]`, in the order of k.

    Arguments:
        state: the buffer.
        windows: candidate windows `(K, L, C, *N)`.
        valid: which of them are offered.
        key: the buffer's key (the reservoir draws the slot of the n-th window from
            `fold_in(key, n)`, so its writes are a function of the key and the count).
        policy: `"fifo"` or `"reservoir"` (see the module docstring).

    Returns:
        The new buffer state.
    """
    size = state.windows.shape[0]

    def one(carry, item):
        buffer, n = carry
        window, ok = item
        slot = _slot(policy, n, size, key)
        keep = ok & (slot < size)
        slot = jnp.minimum(slot, size - 1)
        # one slot is read and written back, never the whole buffer
        old = jax.lax.dynamic_index_in_dim(buffer, slot, axis=0, keepdims=False)
        new = jnp.where(keep, window.astype(buffer.dtype), old)
        buffer = jax.lax.dynamic_update_index_in_dim(buffer, new, slot, axis=0)
        return (buffer, n + ok.astype(n.dtype)), None

    (buffer, count), _ = jax.lax.scan(one, (state.windows, state.count), (windows, valid))
    return BufferState(buffer, count)


def draw_ids(state: BufferState, key: PRNGKeyArray, num: int) -> Int[Array, "num"]:
    """`num` slots drawn uniformly, with replacement, from the filled ones."""
    filled = jnp.minimum(state.count, state.windows.shape[0])
    return jax.random.randint(key, (num,), 0, jnp.maximum(filled, 1))


def draw(state: BufferState, key: PRNGKeyArray, num: int) -> Float[Array, "num L C ..."]:
    """`num` windows drawn by `draw_ids`: a minibatch `(num, L, C, *N)`."""
    return jnp.take(state.windows, draw_ids(state, key, num), axis=0)
