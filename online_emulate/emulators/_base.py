"""Common behaviour of every emulator: layout handling and validation."""

from __future__ import annotations

import brainstate
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import as_key, check_positive_int

__all__ = ["Emulator", "as_key"]


class Emulator(brainstate.nn.Module):
    """Base class: an autoregressive step u_{t+1} = f(u_t) on channel-first states.

    Subclasses implement `_forward(x)` on a channel-last batch `(B, *N, C)`; this class
    accepts one sample `(C, *N)` or a batch `(B, C, *N)` and moves the channel axis.

    Attributes:
        num_spatial_dims: 1, 2 or 3.
        in_channels: channels of the input state.
        out_channels: channels of the output state.
    """

    def __init__(self, num_spatial_dims: int, in_channels: int, out_channels: int):
        super().__init__()
        if num_spatial_dims not in (1, 2, 3):
            raise ValueError(
                f"num_spatial_dims: expected 1, 2 or 3, got {num_spatial_dims!r}"
            )
        self.num_spatial_dims = num_spatial_dims
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)

    def _forward(self, x: Float[Array, "batch *space channel"]):
        raise NotImplementedError

    def __call__(
        self, u: Float[Array, "*state"]
    ) -> Float[Array, "*state"]:  # (channel, *space) or (batch, channel, *space)
        d = self.num_spatial_dims
        if u.ndim == d + 1:
            return self.__call__(u[None])[0]
        if u.ndim != d + 2:
            raise ValueError(
                f"u: expected one state (channel, *space) with {d + 1} axes or a batch "
                f"(batch, channel, *space) with {d + 2} axes for a {d}-D emulator, "
                f"got shape {tuple(u.shape)}"
            )
        if u.shape[1] != self.in_channels:
            raise ValueError(
                f"u: expected {self.in_channels} channel(s) on axis 1 of the batch "
                f"(batch, channel, *space), got shape {tuple(u.shape)}"
            )
        x = jnp.moveaxis(u, 1, -1)
        y = self._forward(x)
        return jnp.moveaxis(y, -1, 1)
