"""Periodic convolution shared by every emulator, with a switch between the braintrace
ETP primitive (so ``braintrace.compile`` can build eligibility traces) and a plain
``jax.lax`` convolution (for vmap-heavy BPTT training and for K-FAC's graph matcher).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import braintrace
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["lax_ops", "using_lax_ops", "periodic_conv"]

_USE_LAX = contextvars.ContextVar("online_emulate_use_lax_ops", default=False)

# Channel-last layouts: braintrace's ES_D_RTRL handles a conv bias only channel-last
# (NOTES.md section 2), and K-FAC matches NHWC/HWIO convolutions.
_DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}


@contextlib.contextmanager
def lax_ops() -> Iterator[None]:
    """Evaluate emulators with plain ``jax.lax`` convolutions inside this block.

    The outputs are identical to the braintrace ETP path; only the primitive that
    appears in the traced program differs.
    """
    token = _USE_LAX.set(True)
    try:
        yield
    finally:
        _USE_LAX.reset(token)


def using_lax_ops() -> bool:
    """Whether emulators currently evaluate with plain ``jax.lax`` ops."""
    return _USE_LAX.get()


def periodic_pad(x: Float[Array, "batch *space channel"], kernel_size: tuple[int, ...]):
    """Wrap-pad the spatial axes of a channel-last batch for a 'same' periodic conv.

    An even kernel gets the extra cell on the right, as equinox/PyTorch ``'SAME'``
    circular padding does (the trainax quickstart's kernel-2 stencil relies on it).
    """
    widths = [(0, 0)]
    for k in kernel_size:
        left = (k - 1) // 2
        widths.append((left, k - 1 - left))
    widths.append((0, 0))
    return jnp.pad(x, widths, mode="wrap")


def periodic_conv(
    x: Float[Array, "batch *space in_channels"],
    kernel: Float[Array, "*kernel in_channels out_channels"],
    bias: Float[Array, " out_channels"] | None = None,
) -> Float[Array, "batch *space out_channels"]:
    """Periodic 'same' convolution (cross-correlation) of a channel-last batch.

    y[b, s, o] = sum_{u, i} x[b, (s + u - left) mod N, i] * kernel[u, i, o] + bias[o]
    """
    num_spatial_dims = kernel.ndim - 2
    padded = periodic_pad(x, kernel.shape[:num_spatial_dims])
    dimension_numbers = _DIMENSION_NUMBERS[num_spatial_dims]
    strides = (1,) * num_spatial_dims
    if _USE_LAX.get():
        y = jax.lax.conv_general_dilated(
            padded, kernel, strides, "VALID", dimension_numbers=dimension_numbers
        )
        if bias is not None:
            y = y + bias
        return y
    return braintrace.conv(
        padded,
        kernel,
        bias,
        strides=strides,
        padding="VALID",
        dimension_numbers=dimension_numbers,
    )
