"""Argument checks shared by the sample-data generators (raise before any tracing)."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np


def check_int(name: str, value, *, minimum: int) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum``.

    Raises:
        TypeError: if ``value`` is not an integer (``bool`` is rejected).
        ValueError: if ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an int >= {minimum}, got {type(value).__name__} {value!r}"
        )
    if value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_real(
    name: str, value, *, positive: bool = False, nonnegative: bool = False
) -> float:
    """Return ``value`` as a finite ``float``, optionally requiring a sign.

    Raises:
        TypeError: if ``value`` is not a real number.
        ValueError: if it is not finite or violates the sign requirement.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a real number, got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    if positive and value <= 0.0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}")
    if nonnegative and value < 0.0:
        raise ValueError(f"`{name}` must be >= 0, got {value!r}")
    return value


def check_key(name: str, key) -> None:
    """Check that ``key`` is one JAX PRNG key (typed key or legacy ``uint32[2]``).

    Raises:
        TypeError: otherwise.
    """
    if not isinstance(key, jax.Array):
        raise TypeError(
            f"`{name}` must be a JAX PRNG key (jax.random.key(...) or "
            f"jax.random.PRNGKey(...)), got {type(key).__name__}"
        )
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise TypeError(
                f"`{name}` must be a single PRNG key (shape ()), got a key array "
                f"of shape {key.shape}"
            )
        return
    if key.dtype != jnp.uint32 or key.shape != (2,):
        raise TypeError(
            f"`{name}` must be a JAX PRNG key (typed key or uint32 array of shape "
            f"(2,)), got an array of dtype {key.dtype} and shape {key.shape}"
        )


def check_band_limit(highest_init_mode: int, num_points: int) -> None:
    """Require ``2 * highest_init_mode < num_points`` (modes strictly below Nyquist).

    Raises:
        ValueError: otherwise.
    """
    if 2 * highest_init_mode >= num_points:
        raise ValueError(
            "`highest_init_mode` must satisfy 2 * highest_init_mode < num_points so "
            "the initial condition is resolved below the Nyquist mode; got "
            f"highest_init_mode={highest_init_mode}, num_points={num_points}"
        )
