"""Periodic convolution shared by every emulator, with a switch between the braintrace
ETP primitive (so ``braintrace.compile`` can build eligibility traces) and a plain
``jax.lax`` convolution (for vmap-heavy BPTT training and for K-FAC's graph matcher).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

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

    Inside `lax_ops()` a 1-D convolution also accepts its kernel in the height-1 2-D
    layout `(1, k, C_in, C_out)` (K-FAC's layout, see `online_emulate.optim`).
    """
    num_spatial_dims = x.ndim - 2
    if kernel.ndim == num_spatial_dims + 3 and num_spatial_dims == 1 and _USE_LAX.get():
        kernel_size = kernel.shape[1:2]  # (1, k, C_in, C_out): a height-1 2-D kernel
    else:
        kernel_size = kernel.shape[: kernel.ndim - 2]
    padded = periodic_pad(x, kernel_size)
    if _USE_LAX.get():
        return _lax_conv(padded, kernel, bias)
    # braintrace (and the scipy.stats it pulls in) loads on the first ETP evaluation, not
    # at import: BPTT training and metrics run under lax_ops() and never need it.
    import braintrace

    dimension_numbers = _DIMENSION_NUMBERS[num_spatial_dims]
    return braintrace.conv(
        padded,
        kernel,
        bias,
        strides=(1,) * num_spatial_dims,
        padding="VALID",
        dimension_numbers=dimension_numbers,
    )


def _lax_conv(padded, kernel, bias):
    """'VALID' channel-last convolution with plain ``jax.lax`` ops.

    A 1-D convolution with its native `(k, C_in, C_out)` kernel is evaluated as one
    matrix product of the `k` shifted views of the input (im2col) with the kernel
    reshaped to `(k * C_in, C_out)`. XLA:CPU runs convolutions inside a `while`/`scan`
    body (every training rollout, every trainer loop) without its fast convolution
    kernels, 5-10x slower than the same convolution at top level, while matrix
    products keep their speed there (benchmarks/RESULTS.md, "conv path"). The outputs
    equal the convolution's up to float rounding.

    A 1-D kernel in the height-1 2-D layout `(1, k, C_in, C_out)` (K-FAC's layout)
    and every 2-D/3-D kernel stay `lax.conv_general_dilated` in NHWC/HWIO: K-FAC's
    graph matcher only recognises 2-D NHWC/HWIO convolutions. The bias is added in
    the broadcast form of K-FAC's conv-with-bias pattern.
    """
    if padded.ndim == 3:
        if kernel.ndim == 3:
            y = _im2col_conv_1d(padded, kernel)
        else:
            return _lax_conv(padded[:, None], kernel, bias)[:, 0]
    else:
        num_spatial_dims = padded.ndim - 2
        y = jax.lax.conv_general_dilated(
            padded,
            kernel,
            (1,) * num_spatial_dims,
            "VALID",
            dimension_numbers=_DIMENSION_NUMBERS[num_spatial_dims],
        )
    if bias is not None:
        y = y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)
    return y


def _im2col_conv_1d(
    padded: Float[Array, "batch padded_width in_channels"],
    kernel: Float[Array, "k in_channels out_channels"],
) -> Float[Array, "batch width out_channels"]:
    """'VALID' 1-D channel-last convolution as one matrix product (see `_lax_conv`).

    cols[b, s, u * C_in + i] = padded[b, s + u, i], so
    y[b, s, o] = sum_{u, i} cols[b, s, u * C_in + i] * kernel[u, i, o].
    """
    k, c_in, c_out = kernel.shape
    width = padded.shape[1] - k + 1
    if k == 1:
        cols = padded
    else:
        cols = jnp.concatenate([padded[:, u : u + width] for u in range(k)], axis=-1)
    return jnp.dot(cols, kernel.reshape(k * c_in, c_out))
