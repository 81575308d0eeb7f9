"""Layouts of a convolution's operands, shared by the rewrites that compute a
convolution without its primitive (`_matmul_convs`, `_wrap_fusion`, `_lift`)."""

from __future__ import annotations

import itertools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["kernel_space_in_out", "channel_last", "from_channel_last", "shifted_slices"]


def kernel_space_in_out(rhs: jax.Array, rhs_spec) -> jax.Array:
    """A convolution kernel moved to `(*space, in, out)` (HWIO) order."""
    return jnp.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))


def channel_last(lhs: jax.Array, lhs_spec) -> jax.Array:
    """A convolution input moved to `(batch, *space, feature)`."""
    return jnp.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))


def from_channel_last(y: jax.Array, out_spec) -> jax.Array:
    """`y` in `(batch, *space, feature)` moved to the layout `out_spec` names."""
    return jnp.transpose(y, np.argsort((out_spec[0], *out_spec[2:], out_spec[1])))


def shifted_slices(x: jax.Array, padding: Sequence[tuple[int, int]], kernel: Sequence[int], *,
                   space_axes: Sequence[int], channel_axis: int) -> jax.Array:
    """The patches of a stride-1 convolution with a `kernel`-sized window: `x`
    zero-padded by `padding` on `space_axes`, its prod(kernel) shifted slices of the
    output's extent concatenated on `channel_axis`, offset major, channel minor.

        patches[..., s, (u, i)] = x_padded[..., s + u, i]
    """
    widths = [(0, 0, 0)] * x.ndim
    for a, (lo, hi) in zip(space_axes, padding):
        widths[a] = (lo, hi, 0)
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), widths)
    extent = [x.shape[a] - k + 1 for a, k in zip(space_axes, kernel)]
    copies = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        index = [slice(None)] * x.ndim
        for a, o, n in zip(space_axes, offset, extent):
            index[a] = slice(o, o + n)
        copies.append(x[tuple(index)])
    return copies[0] if len(copies) == 1 else jnp.concatenate(copies, axis=channel_axis)
