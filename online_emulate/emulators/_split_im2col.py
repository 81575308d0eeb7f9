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
2,845 to 855 MB at 32 x 32 and from 11,373 to 3,416 MB at 64 x 64 (rollout 1).

Dispatch rule (`im2col_conv`, `_ops._rolled_matmul_conv`): 1 spatial axis -> plain
im2col, unchanged (there the patch tensor is k copies and the one product is the fastest
form measured); 2 or more -> this split. Measured per SGD update of a `fori_loop` whose
rollout is a `lax.scan` (the trainer's shape of program), the network above, 2-core CPU
shared with other jobs, min of 3 interleaved calls, ratio = im2col / variant
(benchmarks/conv2d_variants.py, 2026-12-07, RESULTS.md "2-D convolutions without the
nine-fold patch tensor"):

    ms per update              | 2-D 32x32 R=1 | 32x32 R=5    | 64x64 R=1     | 1-D N=160 R=1 / R=5
    im2col (before; 1-D now)   |   373         |   702        | 1,533         |  4.9 / 37.4
    this split (2-D now)       |   146 (2.56x) |   312 (2.25x)|   825 (1.86x) |  -
    (64x64 R=5, another run: im2col 6,762 ms, this split 2,684 ms, 2.52x)
    split of a wrapped copy    |   145 (2.58x) |   432 (1.63x)|   -           |  -
    row-shifted products       |   352 (1.06x) | 1,347 (0.52x)| 1,538 (1.00x) |  6.5 / 59.5 (0.76x / 0.63x)
    all offsets output side    |   493 (0.76x) | 1,280 (0.55x)| 2,168 (0.71x) |  7.7 / 36.4 (0.64x / 1.03x)
    im2col in 2-sample chunks  |   315 (1.19x) | 1,072 (0.66x)| -             |  -
    lax.conv (earlier run)     | 5,931 (0.04x) |   -          | -             | 95.8 / 456 (0.05x / 0.08x)

The zero-padded form (`im2col_conv` of user models that pad with zeros) is the same
split with padded slices for rolls; it was not timed apart.

In 3-D (3 input-side copies and 9 output-side blocks against 27 copies), the same net
in 3-D at 16^3, R=1, one update per call, min of 2: im2col 4,981 ms and 97,629 MB,
this split 2,422 ms and 12,989 MB (2.06x). A custom VJP whose input gradient is a split
convolution of the output gradient with the flipped kernel was no faster (2-D 32x32 R=1:
210 against 194 ms, 946 against 855 MB).
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

    Arguments:
        x: `(N, *S, C_in)`, two or more spatial axes (one works too: plain im2col).
        w: `(*K, C_in, C_out)`.
        padding: `((lo, hi), ...)` zero padding per spatial axis (negative values crop),
            or None for the periodic 'same' convolution (offset lo = (k - 1) // 2 on
            every axis, an even kernel reaching one cell further right, as
            `periodic_conv`).

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
