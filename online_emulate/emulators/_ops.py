"""Periodic convolution shared by every emulator, with a switch between the braintrace
ETP primitive (so `braintrace.compile` can build eligibility traces) and a plain
`jax.lax` convolution (for vmap-heavy BPTT training and for K-FAC's graph matcher).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Iterator

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._split_im2col import split_im2col

__all__ = ["lax_ops", "using_lax_ops", "lax_conv_ops", "using_lax_conv_ops", "periodic_conv"]

# Which ops the emulators (and the adapters' convolution rewrite) trace: "etp" (braintrace
# ETP primitives), "lax" (plain jax, convolutions as matrix products) or "lax_conv"
# (plain jax, convolutions as conv_general_dilated). A jax user context, not a Python
# contextvar: jax's trace and compile caches key on it, so a function jitted in one
# mode is traced again, not reused, in another.
_MODE = jax.make_user_context(default_value="etp")

# Channel-last layouts: braintrace's ES_D_RTRL handles a conv bias only channel-last
# (NOTES.md section 2), and K-FAC matches NHWC/HWIO convolutions.
_DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}
_DIMENSION_NUMBERS_FIRST = {
    1: ("NCW", "WIO", "NCW"),
    2: ("NCHW", "HWIO", "NCHW"),
    3: ("NCDHW", "DHWIO", "NCDHW"),
}

# The layout of the batches the built-in emulators' `_forward` is given: "last" (what
# they step everywhere) or "first", only inside `lax_conv_ops()`, for the eligibility-trace
# lift (`emulators._adapters`): every other operation of their step is element-wise, so
# only the convolution reads the layout. A jax user context for the reason `_MODE` is one.
_LAYOUT = jax.make_user_context(default_value="last")


@contextlib.contextmanager
def lax_ops() -> Iterator[None]:
    """Evaluate emulators with plain `jax.lax` convolutions inside this block.

    The outputs are identical to the braintrace ETP path; only the primitive that
    appears in the traced program differs.
    """
    # inside lax_conv_ops() the convolutions stay convolution primitives
    with _MODE("lax_conv" if _MODE.value == "lax_conv" else "lax"):
        yield


@contextlib.contextmanager
def lax_conv_ops() -> Iterator[None]:
    """Evaluate emulators with `lax.conv_general_dilated` convolutions in this block.

    Implies `lax_ops()`. By default the plain-lax path computes a periodic convolution
    as one matrix product of shifted copies of the input (see `periodic_conv`), which is
    faster inside loops on CPU; K-FAC's graph matcher only recognises convolution
    primitives, so the K-FAC optimizer traces its model inside this block. The outputs
    are the same up to float rounding.
    """
    with _MODE("lax_conv"):
        yield


@contextlib.contextmanager
def channel_first_convs() -> Iterator[None]:
    """Inside `lax_conv_ops()`: `periodic_conv` takes and returns channel-first batches
    `(B, C, *N)` in this block (the eligibility-trace lift of the built-in emulators:
    their D_RTRL traces ran 1.3x and the coupled scope's 2.8x faster on channel-first
    patches; `_adapters.BUILTIN_LIFT_LAYOUT`)."""
    with _LAYOUT("first"):
        yield


def using_lax_ops() -> bool:
    """Whether emulators currently evaluate with plain `jax.lax` ops."""
    return _MODE.value in ("lax", "lax_conv")


def using_lax_conv_ops() -> bool:
    """Whether convolutions must stay `lax.conv_general_dilated` primitives now."""
    return _MODE.value == "lax_conv"


def periodic_pad(x: Float[Array, "batch *space channel"], kernel_size: tuple[int, ...], *,
                 channel_first: bool = False):
    """Wrap-pad the spatial axes of a channel-last batch (or, with `channel_first`, of a
    batch `(B, C, *N)`) for a 'same' periodic conv.

    An even kernel gets the extra cell on the right, as equinox/PyTorch `'SAME'`
    circular padding does (the trainax quickstart's kernel-2 stencil relies on it).
    """
    space = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size]
    widths = [(0, 0), (0, 0)] + space if channel_first else [(0, 0)] + space + [(0, 0)]
    return jnp.pad(x, widths, mode="wrap")


def periodic_conv(
    x: Float[Array, "batch *space in_channels"],
    kernel: Float[Array, "*kernel in_channels out_channels"],
    bias: Float[Array, " out_channels"] | None = None,
) -> Float[Array, "batch *space out_channels"]:
    """Periodic 'same' convolution (cross-correlation) of a channel-last batch.

    y[b, s, o] = sum_{u, i} x[b, (s + u - left) mod N, i] * kernel[u, i, o] + bias[o]

    with left = (k - 1) // 2 per axis (an even kernel reaches one cell further right).

    Three evaluations with equal outputs (up to float rounding):
    - default: braintrace's ETP convolution primitive, so `braintrace.compile` can
      build eligibility traces through it;
    - inside `lax_ops()`: one matrix product of the k shifted copies of the input
      (im2col with periodic shifts, no padding). XLA:CPU runs convolution primitives
      inside a `while`/`scan` body (every rollout, every trainer loop) 5-10x slower
      than at top level, while matrix products keep their speed (benchmarks/RESULTS.md,
      "Training speed on a realistic network");
    - inside `lax_conv_ops()`, or for a 1-D kernel in the height-1 2-D layout
      `(1, k, C_in, C_out)` (K-FAC's layout, see `online_emulate.optim`):
      `lax.conv_general_dilated` on the wrap-padded input, which K-FAC's graph matcher
      recognises. The bias is added in the broadcast form of its conv-with-bias pattern.
    """
    num_spatial_dims = x.ndim - 2
    if _LAYOUT.value == "first":
        if not using_lax_conv_ops():
            raise ValueError("layout: expected channel-first convolutions only inside "
                             "lax_conv_ops(), got them outside")
        return _channel_first_conv(x, kernel, bias)
    lifted = kernel.ndim == num_spatial_dims + 3 and num_spatial_dims == 1
    if using_lax_ops() and not using_lax_conv_ops() and not lifted:
        y = _shifted_matmul_conv(x, kernel)
        if bias is not None:
            y = y + bias
        return y
    kernel_size = kernel.shape[1:2] if lifted else kernel.shape[: kernel.ndim - 2]
    padded = periodic_pad(x, kernel_size)
    if using_lax_ops():
        y = _lax_conv(padded[:, None] if lifted else padded, kernel)
        if bias is not None:
            y = y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)
        return y[:, 0] if lifted else y
    # braintrace (and the scipy.stats it pulls in) loads on the first ETP evaluation, not
    # at import: BPTT training and metrics run under lax_ops() and never need it.
    import braintrace

    return braintrace.conv(
        padded,
        kernel,
        bias,
        strides=(1,) * num_spatial_dims,
        padding="VALID",
        dimension_numbers=_DIMENSION_NUMBERS[num_spatial_dims],
    )


def _channel_first_conv(x, kernel, bias):
    """`periodic_conv` on a channel-first batch `(B, C_in, *N) -> (B, C_out, *N)`."""
    num_spatial_dims = x.ndim - 2
    padded = periodic_pad(x, kernel.shape[:num_spatial_dims], channel_first=True)
    y = jax.lax.conv_general_dilated(
        padded, kernel, (1,) * num_spatial_dims, "VALID",
        dimension_numbers=_DIMENSION_NUMBERS_FIRST[num_spatial_dims])
    if bias is not None:
        y = y + bias.reshape((1, -1) + (1,) * num_spatial_dims)
    return y


def _lax_conv(padded, kernel):
    num_spatial_dims = padded.ndim - 2
    return jax.lax.conv_general_dilated(
        padded,
        kernel,
        (1,) * num_spatial_dims,
        "VALID",
        dimension_numbers=_DIMENSION_NUMBERS[num_spatial_dims],
    )


def _rolled_matmul_conv(
    x: Float[Array, "batch *space in_channels"],
    kernel: Float[Array, "*kernel in_channels out_channels"],
) -> Float[Array, "batch *space out_channels"]:
    """Periodic convolution as one 2-D matrix product (see `periodic_conv`).

    cols[b, s, (u, i)] = x[b, (s + u - left) mod N, i] for every kernel offset u (in the
    kernel's row-major order), so y[b, s, o] = sum_{(u, i)} cols[b, s, (u, i)] *
    kernel[u, i, o]: a `(batch * prod(N), prod(k) * C_in) @ (prod(k) * C_in, C_out)`
    product. Shifting with `jnp.roll` instead of slicing a padded copy, and flattening
    to a 2-D product, measured 15-50% faster in a training loop than the padded slices
    with a batched product (benchmarks/RESULTS.md). That is the 1-D path; with two or
    more spatial axes the prod(k)-fold copies make the step memory-bound, and the
    rolled copies are built along the last axis only (`_split_im2col`, which states the
    measurement behind this rule).
    """
    spatial = x.shape[1:-1]
    kernel_size = kernel.shape[:-2]
    if len(kernel_size) >= 2:
        return split_im2col(x, kernel)
    c_in, c_out = kernel.shape[-2:]
    axes = tuple(range(1, 1 + len(spatial)))
    lefts = [(k - 1) // 2 for k in kernel_size]
    copies = []
    for offset in itertools.product(*(range(k) for k in kernel_size)):
        shift = tuple(left - u for left, u in zip(lefts, offset))
        copies.append(jnp.roll(x, shift, axis=axes) if any(shift) else x)
    cols = copies[0] if len(copies) == 1 else jnp.concatenate(copies, axis=-1)
    rows = x.shape[0] * math.prod(spatial)
    taps = len(copies) * c_in
    y = cols.reshape(rows, taps) @ kernel.reshape(taps, c_out)
    return y.reshape(x.shape[:-1] + (c_out,))


# Keep only the input for the backward pass and recompute the rolled copies there (the
# product's transpose does not need its output): saving the copies made BPTT's memory
# grow k-fold (prod(k)-fold in 2-D/3-D) over the convolution's; recomputing them is
# cheaper than reading them back (benchmarks/RESULTS.md, memory table).
_shifted_matmul_conv = jax.checkpoint(
    _rolled_matmul_conv, policy=jax.checkpoint_policies.nothing_saveable
)
