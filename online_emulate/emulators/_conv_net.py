"""Periodic convolutional network emulator."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import check_callable, check_positive_int
from .._random import split_key
from ._base import Emulator, as_key
from ._hidden import hidden_state
from ._periodic_conv import PeriodicConv

__all__ = ["ConvNet"]


class ConvNet(Emulator):
    """A stack of `depth` periodic convolutions with an activation between them.

    h_0 = u; h_{l+1} = act(conv_l(h_l)) for l < depth - 1; f(u) = conv_{depth-1}(h_{depth-1});
    with `residual=True` the step is u_{t+1} = u_t + f(u_t).

    Arguments:
        num_spatial_dims: 1, 2 or 3.
        in_channels, out_channels: channel counts of the state.
        hidden_channels: width of the inner layers. Default 16.
        depth: number of convolution layers (>= 1). Default 2.
        kernel_size: per layer (int or one per spatial axis). Default 3.
        activation: elementwise nonlinearity between layers. Default `jax.nn.relu`.
        residual: add the input to the output (needs in_channels == out_channels).
        use_bias: biases in every layer. Default True.
        key: int seed or PRNG key; the same key gives the same weights.
        dtype: parameter dtype.

    Raises:
        ValueError: invalid sizes, or `residual=True` with in_channels != out_channels.
        TypeError: a non-callable activation or an invalid key.
    """

    def __init__(
        self,
        num_spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        hidden_channels: int = 16,
        depth: int = 2,
        kernel_size: int | tuple[int, ...] = 3,
        activation: Callable = jax.nn.relu,
        residual: bool = False,
        use_bias: bool = True,
        key: int | jax.Array = 0,
        dtype: DTypeLike = jnp.float32,
    ):
        super().__init__(num_spatial_dims, in_channels, out_channels)
        check_positive_int("hidden_channels", hidden_channels)
        check_positive_int("depth", depth)
        check_callable("activation", activation)
        if residual and in_channels != out_channels:
            raise ValueError(
                "residual: expected in_channels == out_channels (the input is added to "
                f"the output), got {in_channels} and {out_channels}"
            )
        self.hidden_channels = hidden_channels
        self.depth = depth
        self.activation = activation
        self.residual = residual
        widths = [in_channels] + [hidden_channels] * (depth - 1) + [out_channels]
        keys = split_key(as_key(key), depth)
        self.layers = [
            PeriodicConv(
                num_spatial_dims,
                widths[i],
                widths[i + 1],
                kernel_size,
                use_bias=use_bias,
                key=keys[i],
                dtype=dtype,
            )
            for i in range(depth)
        ]

    def _forward(self, x):
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < self.depth - 1:
                # a hidden state for ETrace, so that this layer's weight gets a trace
                h = self.activation(hidden_state(h, f"layers/{i}"))
        return x + h if self.residual else h
