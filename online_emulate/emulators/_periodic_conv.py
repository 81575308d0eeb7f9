"""A single periodic convolution layer: the building block of every emulator."""

from __future__ import annotations

import brainstate
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike
from jaxtyping import Array, Float

from .._random import split_key
from ._init import conv_bias_init, conv_kernel_init
from ._ops import periodic_conv

__all__ = ["PeriodicConv", "normalize_kernel_size"]


def normalize_kernel_size(kernel_size, num_spatial_dims: int) -> tuple[int, ...]:
    """An int or a tuple of `num_spatial_dims` positive ints -> tuple of ints.

    Raises:
        ValueError: for non-positive sizes or a tuple of the wrong length.
    """
    if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
        kernel_size = (kernel_size,) * num_spatial_dims
    kernel_size = tuple(kernel_size)
    if len(kernel_size) != num_spatial_dims or not all(
        isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in kernel_size
    ):
        raise ValueError(
            f"kernel_size: expected a positive int or {num_spatial_dims} positive ints, "
            f"got {kernel_size!r}"
        )
    return kernel_size


class PeriodicConv(brainstate.nn.Module):
    """Periodic 'same' convolution on channel-last batches `(B, *N, C_in) -> (B, *N, C_out)`.

    The kernel is a `brainstate.ParamState` of shape `(*kernel_size, C_in, C_out)`, the
    optional bias one of shape `(C_out,)`. Both enter through braintrace's ETP conv
    (or plain lax inside `lax_ops()`), so eligibility traces see them.

    Arguments:
        num_spatial_dims: 1, 2 or 3.
        in_channels, out_channels: channel counts.
        kernel_size: int or tuple per spatial axis.
        use_bias: whether to add a per-channel bias.
        key: PRNG key for the initialisation.
        dtype: parameter dtype.
    """

    def __init__(
        self,
        num_spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        *,
        use_bias: bool,
        key: jax.Array,
        dtype: DTypeLike = jnp.float32,
    ):
        super().__init__()
        self.kernel_size = normalize_kernel_size(kernel_size, num_spatial_dims)
        kkey, bkey = split_key(key)
        self.weight = brainstate.ParamState(
            conv_kernel_init(kkey, self.kernel_size, in_channels, out_channels, dtype)
        )
        self.bias = (
            brainstate.ParamState(
                conv_bias_init(bkey, self.kernel_size, in_channels, out_channels, dtype)
            )
            if use_bias
            else None
        )

    def __call__(self, x: Float[Array, "batch *space c_in"]) -> Float[Array, "batch *space c_out"]:
        bias = None if self.bias is None else self.bias.value
        return periodic_conv(x, self.weight.value, bias)
