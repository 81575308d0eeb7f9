"""Argument checks shared across the package, so every error reads the same way."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_positive_int", "as_key", "key_data"]


def check_positive_int(name: str, value, *, allow_none: bool = False):
    """`value` as an int >= 1 (or None when `allow_none`).

    Raises:
        ValueError: naming `name`, for anything else (bools included).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def _is_typed_key(key) -> bool:
    return isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def as_key(key) -> jax.Array:
    """Turn an int seed or a PRNG key (typed, or raw uint32 of shape (2,)) into a PRNG key.

    Raises:
        TypeError: if `key` is neither an int nor a JAX PRNG key.
    """
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key))
    if _is_typed_key(key):
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.shape == (2,):
        return jnp.asarray(key)
    raise TypeError(
        f"key: expected an int seed or a jax PRNG key, got {type(key).__name__}"
        f"{getattr(key, 'shape', '')}"
    )


def key_data(key) -> jax.Array:
    """The raw uint32 words of an int seed or a PRNG key (what checkpoints store)."""
    key = as_key(key)
    return jax.random.key_data(key) if _is_typed_key(key) else key
