"""Argument checks shared across the package, so every error reads the same way:
`"name: expected ..., got ..."`, raised before anything is traced or compiled."""

from __future__ import annotations

import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ArgumentTypeError",
    "check_int",
    "check_positive_int",
    "check_real",
    "check_flag",
    "check_callable",
    "check_required",
    "check_key",
    "as_key",
    "key_data",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type, e.g. `1.5` or `True` where an int is expected.

    It is both a `TypeError` and a `ValueError`: the configuration and trainer
    checks have always raised `ValueError` for a non-integer count and the sample-data
    checks `TypeError`; one checker now serves both, and callers catching either keep
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
    meaning: str | None = None,
) -> int | None:
    """Return `value` as an `int` if it is an integer in `[minimum, maximum]`.

    Arguments:
        name: the argument's name, quoted in the error.
        value: the value to check; `bool` is rejected.
        minimum: smallest accepted value.
        maximum: largest accepted value (`None`: no upper bound).
        allow_none: return `None` for `None` instead of raising.
        meaning: what the bound stands for, quoted after it in the error
            (e.g. `"trajectories per rollout"`).

    Returns:
        `int(value)` (or `None`).

    Raises:
        ArgumentTypeError: (a `TypeError` and a `ValueError`) if `value` is not an
            integer.
        ValueError: if it is out of range.
    """
    if value is None and allow_none:
        return None
    bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if meaning:
        bound = f"{bound} ({meaning})"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name}: expected an int {bound}, got {_describe(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name}: expected an int {bound}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """`value` as an int >= 1 (or None when `allow_none`); see `check_int`."""
    return check_int(name, value, minimum=1, allow_none=allow_none)


def _interval(positive: bool, nonnegative: bool, maximum: float | None,
              maximum_inclusive: bool) -> str:
    """'a number > 0', 'a number in (0, 1]', ... for the error message."""
    if maximum is None:
        if positive:
            return "a number > 0"
        return "a number >= 0" if nonnegative else "a finite number"
    close = "]" if maximum_inclusive else ")"
    if positive or nonnegative:
        return f"a number in {'(' if positive else '['}0, {maximum:g}{close}"
    return f"a number {'<=' if maximum_inclusive else '<'} {maximum:g}"


def check_real(
    name: str,
    value: Any,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    maximum: float | None = None,
    maximum_inclusive: bool = True,
    allow_none: bool = False,
) -> float | None:
    """Return `value` as a finite `float`, optionally requiring a sign and an upper bound.

    Arguments:
        name: the argument's name, quoted in the error.
        value: the value to check; `bool` is rejected.
        positive: require `value > 0`.
        nonnegative: require `value >= 0`.
        maximum: require `value <= maximum` (`< maximum` unless `maximum_inclusive`).
        maximum_inclusive: whether `maximum` itself is accepted.
        allow_none: return `None` for `None` instead of raising.

    Returns:
        `float(value)` (or `None`).

    Raises:
        ArgumentTypeError: (a `TypeError` and a `ValueError`) if `value` is not a
            real number.
        ValueError: if it is not finite or out of range.
    """
    if value is None and allow_none:
        return None
    expected = _interval(positive, nonnegative, maximum, maximum_inclusive)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name}: expected a real number, got {_describe(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if (
        (positive and value <= 0.0)
        or (nonnegative and value < 0.0)
        or (maximum is not None and (value > maximum or (value == maximum and not maximum_inclusive)))
    ):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return value


def check_flag(name: str, value: Any, *, allow_none: bool = False) -> bool | None:
    """Return `value` as a `bool` (or `None` when `allow_none`).

    Raises:
        TypeError: for anything but a Python or NumPy boolean (`0`/`1` included).
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {_describe(value)}")
    return bool(value)


def check_callable(
    name: str, value: Any, *, expected: str = "a callable", allow_none: bool = False
) -> Callable | None:
    """Return `value` if it is callable (or `None` when `allow_none`).

    Arguments:
        name: the argument's name, quoted in the error.
        value: the value to check.
        expected: what the error says was expected, e.g. `"a callable on one state"`.
        allow_none: accept `None`.

    Raises:
        TypeError: if `value` is not callable (`None` included unless `allow_none`).
    """
    if value is None and allow_none:
        return None
    if not callable(value):
        raise TypeError(f"{name}: expected {expected}, got {_describe(value)}")
    return value


def check_required(name: str, value: Any, expected: str) -> Any:
    """Return `value` unless it is `None`: a missing argument that the caller needs.

    Arguments:
        name: the argument's name, quoted in the error.
        value: the value to check.
        expected: what should have been passed and why, e.g.
            `"a reference stepper (Residuum needs it for ...)"`.

    Raises:
        ValueError: if `value` is `None`.
    """
    if value is None:
        raise ValueError(f"{name}: expected {expected}, got None")
    return value


def _is_typed_key(key: Any) -> bool:
    return isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def check_key(name: str, key: Any) -> None:
    """Check that `key` is one JAX PRNG key (typed key or legacy `uint32[2]`).

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


def as_key(key: Any) -> jax.Array:
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


def key_data(key: Any) -> jax.Array:
    """The raw uint32 words of an int seed or a PRNG key (what checkpoints store)."""
    key = as_key(key)
    return jax.random.key_data(key) if _is_typed_key(key) else key
