"""A stride-1 convolution of two or more spatial axes as one matrix product without its
full patch tensor: im2col along the last spatial axis, shifted sums over the others.

im2col (one product of the prod(K) shifted copies of the input) is what the matrix-product
convolutions use in 1-D. In 2-D its patch tensor is 9x the input for a 3x3 kernel; building
it, reading it, and in the backward pass writing its gradient and folding that back made
a 2-D training step memory-bound (benchmarks/RESULTS.md, issue 25). Here only the k_last
copies along the last spatial axis are built (input side); the kernel's offsets j along
the other axes go to the output side of the same product, and a shifted sum (one XLA
loop fusion) adds them up. With x channel-last and zero-padded (or wrapped) as the
convolution asks, and w the kernel `(*K, C_in, C_out)`:

    cols[n, s, (v, i)]   = x_pad[n, s_0, ..., s_last + v, i]                   v < k_last
    z[n, s, j, o]        = sum_{v, i} cols[n, s, (v, i)] * w[j, v, i, o]        (one product)
    y[n, s, o]           = sum_j z_pad[n, s_0 + j_0, ..., s_last, j, o]

In 2-D with a 3x3 kernel and C_in = C_out, a forward pass writes and reads 3 + 3 copies
of the input's size instead of 9 + 9. XLA's count of one training update (the pdequinox
ConvNet of benchmarks/vs_apebench.py, 9 convolutions of 26 channels, batch 20) drops from
2,844 to 855 MB at 32 x 32 and from 11,373 to 3,416 MB at 64 x 64.

Dispatch rule (`im2col_conv`, `_ops._rolled_matmul_conv`): 1 spatial axis -> plain
im2col, unchanged (there the patch tensor is k copies and one product runs near the
machine's roofline); 2 or more -> this split. Measured per SGD update of a 2-update
`fori_loop` whose rollout is a `lax.scan` (the trainer's shape of program), the network
above, 2-core CPU shared with other jobs, min of 3 interleaved calls
(benchmarks/conv2d_variants.py, 2026-12-07):

    2-D, R=1            | 32 x 32   | 64 x 64
    im2col (before)     | 227 ms    | 1,823 ms
    this split          | 119-126   |   760-910   (1.9-2.4x)
    row-shifted products|   228-244 |   -         (9 (rows, C) @ (C, O) slices; ~1.0x)
    all offsets output  |   335     | 2,173       (0.7-0.8x)
    lax.conv            | 5,931     |   -         (0.04x, inside the loop)

Arguments of `split_im2col`: x `(N, *S, C_in)`, w `(*K, C_in, C_out)`, and `padding`:
`((lo, hi), ...)` zero padding per spatial axis (negative crops), or None for the periodic
'same' convolution (offset lo = (k - 1) // 2 on every axis, as `periodic_conv`).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import jax
import jax.numpy as jnp

__all__ = ["split_im2col"]


def _window(z: jax.Array, axis: int, k: int, u: int, pad: tuple[int, int] | None) -> jax.Array:
    """The window at offset u < k of `z` along `axis` that a stride-1 convolution reads:
    zero padding `pad = (lo, hi)`, or periodic 'same' (a roll) for None."""
    if pad is None:
        shift = (k - 1) // 2 - u
        return jnp.roll(z, shift, axis=axis) if shift else z
    widths = [(0, 0, 0)] * z.ndim
    widths[axis] = (pad[0], pad[1], 0)
    # one padding per tensor after XLA's common-subexpression pass
    padded = jax.lax.pad(z, jnp.zeros((), z.dtype), widths)
    extent = padded.shape[axis] - k + 1
    return jax.lax.slice_in_dim(padded, u, u + extent, axis=axis)


def split_im2col(x: jax.Array, w: jax.Array,
                 padding: Sequence[tuple[int, int]] | None = None) -> jax.Array:
    """The stride-1 convolution of channel-last `x` with `w` (see the module docstring).

    Returns:
        `(N, *S_out, C_out)`: S_out = S for periodic, S + lo + hi - K + 1 per axis else.
    """
    kernel = w.shape[:-2]
    d, c_in, c_out = len(kernel), w.shape[-2], w.shape[-1]
    pads = [None] * d if padding is None else [tuple(p) for p in padding]
    last = kernel[-1]
    copies = [_window(x, d, last, v, pads[-1]) for v in range(last)]
    cols = copies[0] if last == 1 else jnp.concatenate(copies, axis=-1)
    blocks = math.prod(kernel[:-1])
    # (*K_other, k_last, C_in, C_out) -> (k_last * C_in, blocks * C_out), offset-major
    taps = last * c_in
    w_mat = jnp.moveaxis(w.reshape(blocks, taps, c_out), 0, 1).reshape(taps, blocks * c_out)
    z = (cols.reshape(-1, taps) @ w_mat).reshape(cols.shape[:-1] + (blocks, c_out))
    y = None
    for j, offset in enumerate(itertools.product(*(range(k) for k in kernel[:-1]))):
        term = z[..., j, :]
        for axis, (k, u) in enumerate(zip(kernel[:-1], offset), start=1):
            term = _window(term, axis, k, u, pads[axis - 1])
        y = term if y is None else y + term
    return y
