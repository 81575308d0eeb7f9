"""Linear periodic stencil emulator: u_{t+1} = K * u_t (+ b)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike
from jaxtyping import Array, Float

from ._base import Emulator, as_key
from ._periodic_conv import PeriodicConv

__all__ = ["LinearStencil"]


class LinearStencil(Emulator):
    """A single periodic convolution, the simplest learnable time stepper.

    u_{t+1}[o, s] = sum_{i, k} w[k, i, o] * u_t[i, s + k - left] (+ b[o]), indices mod N,
    left = (kernel_size - 1) // 2 (an even kernel reaches one cell further right).

    The trainax quickstart model is `LinearStencil(1, 1, 1, kernel_size=2)`; its stencil
    for first-order upwind advection with CFL c < 0 is [1 + c, -c].

    Arguments:
        num_spatial_dims: 1, 2 or 3.
        in_channels, out_channels: channel counts.
        kernel_size: stencil width (int or one per spatial axis). Default 3.
        use_bias: add a learnable per-channel constant. Default False.
        key: int seed or PRNG key; the same key gives the same weights.
        dtype: parameter dtype (float32 by default; float64 needs jax_enable_x64).

    Raises:
        ValueError: for invalid dimensions, channel counts or kernel sizes.
        TypeError: for a key that is neither an int nor a PRNG key.
    """

    def __init__(
        self,
        num_spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int | tuple[int, ...] = 3,
        use_bias: bool = False,
        key: int | jax.Array = 0,
        dtype: DTypeLike = jnp.float32,
    ):
        super().__init__(num_spatial_dims, in_channels, out_channels)
        self.conv = PeriodicConv(
            num_spatial_dims,
            in_channels,
            out_channels,
            kernel_size,
            use_bias=use_bias,
            key=as_key(key),
            dtype=dtype,
        )

    @property
    def stencil(self) -> Float[Array, "out_channels in_channels *kernel"]:
        """The stencil in the conventional (out, in, *kernel) layout."""
        w = self.conv.weight.value
        d = self.num_spatial_dims
        return jnp.transpose(w, (d + 1, d, *range(d)))

    def _forward(self, x):
        return self.conv(x)
