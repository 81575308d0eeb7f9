"""The activations a stored description may name (a name selects one of these; nothing
else is ever looked up or called from a file)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "activation_name"]

ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh, "silu": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus, "elu": jax.nn.elu,
    "leaky_relu": jax.nn.leaky_relu,
}


def activation_name(fn: Callable) -> str | None:
    """The stored name of `fn` (None when it has none: a lambda, a user function)."""
    return next((name for name, f in ACTIVATIONS.items() if f is fn), None)
