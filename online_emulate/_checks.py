"""Argument checks shared across the package, so every error reads the same way:
``"name: expected ..., got ..."``, raised before anything is traced or compiled."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ArgumentTypeError",
    "check_int",
    "check_positive_int",
    "check_real",
    "check_key",
    "as_key",
    "key_data",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type, e.g. ``1.5`` or ``True`` where an int is expected.

    It is both a ``TypeError`` and a ``ValueError``: the configuration and trainer
    checks have always raised ``ValueError`` for a non-integer count and the sample-data
    checks ``TypeError``; one checker now serves both, and callers catching either keep
    working.
    """


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """Return `value` as an ``int`` if it is an integer in ``[minimum, maximum]``.

    Arguments:
        name: the argument's name, quoted in the error.
        value: the value to check; ``bool`` is rejected.
        minimum: smallest accepted value.
        maximum: largest accepted value (``None``: no upper bound).
        allow_none: return ``None`` for ``None`` instead of raising.

    Returns:
        ``int(value)`` (or ``None``).

    Raises:
        ArgumentTypeError: (a ``TypeError`` and a ``ValueError``) if `value` is not an
            integer.
        ValueError: if it is out of range.
    """
    if value is None and allow_none:
        return None
    bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name}: expected an int {bound}, got {_describe(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name}: expected an int {bound}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """`value` as an int >= 1 (or None when `allow_none`); see :func:`check_int`."""
    return check_int(name, value, minimum=1, allow_none=allow_none)


def check_real(
    name: str, value: Any, *, positive: bool = False, nonnegative: bool = False
) -> float:
    """Return `value` as a finite ``float``, optionally requiring a sign.

    Raises:
        TypeError: if `value` is not a real number (``bool`` is rejected).
        ValueError: if it is not finite or violates the sign requirement.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {_describe(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if positive and value <= 0.0:
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")
    if nonnegative and value < 0.0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    return value


def _is_typed_key(key) -> bool:
    return isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def check_key(name: str, key: Any) -> None:
    """Check that `key` is one JAX PRNG key (typed key or legacy ``uint32[2]``).

    Raises:
        TypeError: otherwise.
    """
    if not isinstance(key, jax.Array):
        raise TypeError(
            f"{name}: expected a JAX PRNG key (jax.random.key(...) or "
            f"jax.random.PRNGKey(...)), got {type(key).__name__}"
        )
    if _is_typed_key(key):
        if key.shape != ():
            raise TypeError(
                f"{name}: expected a single PRNG key (shape ()), got a key array of "
                f"shape {key.shape}"
            )
        return
    if key.dtype != jnp.uint32 or key.shape != (2,):
        raise TypeError(
            f"{name}: expected a JAX PRNG key (typed key or uint32 array of shape (2,)), "
            f"got an array of dtype {key.dtype} and shape {key.shape}"
        )


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
