"""jax's threefry2x32 random draws, computed with NumPy on the host.

Why: in a fresh process the first `jax.random.split` / `jax.random.uniform` compiles
XLA programs for the threefry hash (0.1-0.9 s each on a 2-core CPU; the README
quickstart paid 0.8-1.1 s for its data's and its emulator's first draws), while the
library's own draws are a few dozen numbers. The functions here return the SAME bits
as jax, for concrete keys under jax's default settings; `host_key` says when that
holds, and every caller falls back to jax otherwise (a traced key, another PRNG
implementation, the non-partitionable threefry layout, a key committed to a device).
tests/test_host_random.py compares them bit for bit with jax.

The hash (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011):
Threefry-2x32 with 20 rounds, key schedule (k1, k2, k1 ^ k2 ^ 0x1BD11BDA), rotations
13 15 26 6 / 17 29 16 24, a key injection after every 4 rounds. jax's layout (the
"partitionable" one, its default): draw number i of a shape is the hash of the 64-bit
counter i split into (high, low) words; a split key is the hash's two output words, a
32-bit draw their exclusive or; a float32 uniform keeps the 23 high bits as mantissa
of a number in [1, 2), subtracts 1 and scales to [minval, maxval) (that last step in
a small compiled program, see `uniform`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

__all__ = ["host_key", "split", "uniform", "split_key", "uniform_draw"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def host_key(key: Any) -> np.ndarray | None:
    """The two uint32 words of `key` when jax would draw from it exactly as this module
    does; None when the caller must use jax.random.

    Arguments:
        key: a typed key (`jax.random.key`) or a raw `uint32[2]` key, or anything else
            (then None).

    Returns:
        `uint32[2]` words, or None for a traced key, a key array, another PRNG
        implementation, a key committed to a device, or jax settings under which its
        draws differ (`jax_threefry_partitionable` off, raw keys refused or warned about).
    """
    if isinstance(key, jax.core.Tracer) or not isinstance(key, (jax.Array, np.ndarray)):
        return None
    if not jax.config.jax_threefry_partitionable:
        return None
    if getattr(key, "committed", False):
        return None
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != () or str(jax.random.key_impl(key)) != "threefry2x32":
            return None
        words = jax.random.key_data(key)
    else:
        if key.shape != (2,) or key.dtype != np.uint32:
            return None
        if (jax.config.jax_default_prng_impl != "threefry2x32"
                or jax.config.jax_legacy_prng_key != "allow"
                or jax.config.jax_enable_custom_prng):
            return None
        words = key
    return np.asarray(words, np.uint32)


def _hash(k1, k2, x1, x2):
    """Threefry-2x32 of the counters (x1, x2) under the key (k1, k2), broadcasting."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    with np.errstate(over="ignore"):
        x1, x2 = x1 + ks[0], x2 + ks[1]
        for i in range(5):
            for r in _ROTATIONS[i % 2]:
                x1 = x1 + x2
                x2 = (x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r))
                x2 = x1 ^ x2
            x1 = x1 + ks[(i + 1) % 3]
            x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _draw(words: np.ndarray, shape: tuple[int, ...]):
    """The hash's two output words for the counters 0 .. prod(shape)-1 laid out in
    `shape`, for each key of `words` (`(*batch, 2)`): two arrays `(*batch, *shape)`."""
    words = np.asarray(words, np.uint32)
    batch = words.shape[:-1]
    counts = np.arange(math.prod(shape), dtype=np.uint64).reshape(shape)
    high, low = (counts >> np.uint64(32)).astype(np.uint32), counts.astype(np.uint32)
    pad = (1,) * len(shape)
    k1 = words[..., 0].reshape(batch + pad)
    k2 = words[..., 1].reshape(batch + pad)
    return _hash(k1, k2, high, low)


def split(words: np.ndarray, num: int | tuple[int, ...] = 2) -> np.ndarray:
    """`jax.random.split` of raw keys: `(*batch, 2)` words -> `(*batch, *num, 2)`."""
    shape = tuple(num) if isinstance(num, tuple) else (int(num),)
    a, b = _draw(words, shape)
    return np.stack([a, b], axis=-1)


def uniform(words: np.ndarray, shape: tuple[int, ...], minval: float = 0.0,
            maxval: float = 1.0) -> jax.Array:
    """`jax.random.uniform(key, shape, jnp.float32, minval, maxval)` for each key of
    `words` (`(*batch, 2)`): float32 `(*batch, *shape)`.

    The bits and the numbers in [0, 1) they make are exact on the host; the scaling
    `x * (maxval - minval) + minval` runs in a small compiled program of the same
    operations as jax's, because whether XLA fuses the product and the sum into one
    rounding (an FMA) depends on the backend and the processor.
    """
    a, b = _draw(words, tuple(shape))
    bits = ((a ^ b) >> np.uint32(9)) | np.uint32(0x3F800000)
    floats = bits.view(np.float32) - np.float32(1.0)
    return _scale(floats, np.float32(minval), np.float32(maxval))


@jax.jit
def _scale(floats, minval, maxval):
    return jax.lax.max(minval, floats * (maxval - minval) + minval)


def split_key(key: Any, num: int = 2) -> Any:
    """`jax.random.split(key, num)`, on the host when `host_key(key)` allows (then raw
    `uint32` keys `(num, 2)`, the same words jax's split returns)."""
    words = host_key(key)
    if words is None:
        return jax.random.split(key, num)
    return split(words, num)


def uniform_draw(key: Any, shape: tuple[int, ...], dtype: Any = None, minval: float = 0.0,
                 maxval: float = 1.0) -> jax.Array:
    """`jax.random.uniform(key, shape, dtype, minval, maxval)` (minval and maxval Python
    numbers), on the host when `host_key(key)` allows and the dtype is float32."""
    dtype = jax.dtypes.canonicalize_dtype(float if dtype is None else dtype)
    words = host_key(key)
    if words is None or dtype != np.float32:
        return jax.random.uniform(key, shape, dtype, minval, maxval)
    return uniform(words, tuple(shape), minval, maxval)
