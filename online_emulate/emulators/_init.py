"""Weight initialisation shared by the emulators."""

from __future__ import annotations

import math

import jax.numpy as jnp

from .._random import uniform_draw

__all__ = ["conv_kernel_init", "conv_bias_init"]


def conv_kernel_init(key, kernel_size, in_channels, out_channels, dtype=jnp.float32):
    """Uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)], fan_in = in_channels * prod(kernel).

    The same rule as equinox / PyTorch convolutions, so results are comparable to trainax.
    """
    fan_in = in_channels * math.prod(kernel_size)
    lim = 1.0 / math.sqrt(fan_in)
    shape = (*kernel_size, in_channels, out_channels)
    return uniform_draw(key, shape, dtype, -lim, lim)


def conv_bias_init(key, kernel_size, in_channels, out_channels, dtype=jnp.float32):
    """Uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)], as for the kernel."""
    fan_in = in_channels * math.prod(kernel_size)
    lim = 1.0 / math.sqrt(fan_in)
    return uniform_draw(key, (out_channels,), dtype, -lim, lim)
