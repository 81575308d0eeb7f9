"""Which matrix-product form of a stride-1 periodic convolution trains fastest, per size.

The network of `vs_apebench.py`'s scenarios (pdequinox `ConvNet(D, D, D,
hidden_channels=26, depth=8, relu, periodic)`: 9 convolutions of kernel 3, 26 channels,
bias), written channel-last with one periodic 'same' convolution `conv(x, w)` per layer,
evaluated by each of several implementations and timed as the trainer runs it: per
update of a `fori_loop` of `--updates` SGD updates, each the gradient of the R-step
rollout MSE whose rollout is a `lax.scan`, compiled with the library's CPU compiler
options, batch 20; the variants are timed in turns, min of `--reps` calls.

Variants (x: `(B, *N, C)` unpadded, w: `(*K, C, O)`, p = k - 1 cells of padding per axis;
"ckpt": only the input kept for the backward pass):

* im2col rolled (before): the 2-D path before this study, the prod(K) rolled copies
  concatenated on the channel axis, one `(B*prod(N), prod(K)*C) @ (prod(K)*C, O)` product,
  ckpt.
* split (library now): `_ops._shifted_matmul_conv`, which with two or more spatial axes
  is `_split_im2col.split_im2col`: the k rolled copies along the last axis, one product
  with the other axes' offsets stacked on its output side, their shifted sum; ckpt.
* split, wrap-padded copy: the same on a wrap-padded copy with zero padding, ckpt.
* im2col padded: the padded input's prod(K) shifted slices (`im2col_conv` before).
* flat rows: the padded input flattened to rows `(B*prod(N+p), C)`; each kernel offset is
  one contiguous row slice, prod(K) products `(rows, C) @ (C, O)` summed, the valid rows
  cropped. No patch tensor (XLA copies each slice, and the backward pass pads each
  product's gradient back to full size).
* flat rows + last-axis im2col: im2col along the last axis, the other axes as row slices.
* output shifts (all axes): one product `x @ (C, prod(K)*O)`, all offsets summed on the
  output side.
* im2col before, chunks of 2: the first variant in a `lax.map` over 2-sample chunks
  (one chunk's patches at a time, to keep them in cache).
* lax conv: `lax.conv_general_dilated` of the padded input.

    python benchmarks/conv2d_variants.py [--sizes 32 64] [--rollouts 1 5] [--dims 2]
        [--reps 3] [--updates 2] [--variants ...]
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import jax
import jax.numpy as jnp

from online_emulate._compile import CPU_COMPILER_OPTIONS
from online_emulate.emulators._ops import _shifted_matmul_conv
from online_emulate.emulators._split_im2col import split_im2col

B, WIDTH, DEPTH = 20, 26, 9


def _wrap(x, kernel):
    widths = [(0, 0)] + [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel] + [(0, 0)]
    return jnp.pad(x, widths, mode="wrap")


def im2col_rolled(x, w):
    """The 2-D path before this study: the prod(K) rolled copies, one product."""
    kernel, c = w.shape[:-2], w.shape[-2]
    axes = tuple(range(1, 1 + len(kernel)))
    copies = []
    for off in itertools.product(*(range(k) for k in kernel)):
        shift = tuple((k - 1) // 2 - u for k, u in zip(kernel, off))
        copies.append(jnp.roll(x, shift, axis=axes) if any(shift) else x)
    cols = jnp.concatenate(copies, axis=-1)
    y = cols.reshape(-1, len(copies) * c) @ w.reshape(len(copies) * c, w.shape[-1])
    return y.reshape(x.shape[:-1] + (w.shape[-1],))


def im2col_padded(x, w):
    kernel = w.shape[:-2]
    xp = _wrap(x, kernel)
    space = x.shape[1:-1]
    copies = []
    for off in itertools.product(*(range(k) for k in kernel)):
        copies.append(xp[(slice(None),) + tuple(slice(o, o + n) for o, n in zip(off, space))])
    cols = jnp.concatenate(copies, axis=-1)
    y = cols.reshape(-1, cols.shape[-1]) @ w.reshape(-1, w.shape[-1])
    return y.reshape(x.shape[:-1] + (w.shape[-1],))


def _row_sum(xp, w, kernel, out_space):
    """sum over offsets u of kernel of rows(xp)[r + offset(u)] @ w[u], cropped to out_space;
    xp: (B, *P, C) padded, w: (*kernel, C, O)."""
    padded = xp.shape[1:-1]
    strides = [math.prod(padded[a + 1:]) for a in range(len(padded))]
    rows = xp.reshape(-1, xp.shape[-1])
    reach = sum(s * (k - 1) for s, k in zip(strides, kernel))
    n = rows.shape[0] - reach
    y = None
    for off in itertools.product(*(range(k) for k in kernel)):
        start = sum(s * o for s, o in zip(strides, off))
        term = rows[start:start + n] @ w[off]
        y = term if y is None else y + term
    y = jnp.pad(y, ((0, reach), (0, 0))).reshape(xp.shape[:-1] + (w.shape[-1],))
    return y[(slice(None),) + tuple(slice(0, m) for m in out_space)]


def flat_rows(x, w):
    kernel = w.shape[:-2]
    return _row_sum(_wrap(x, kernel), w, kernel, x.shape[1:-1])


def flat_rows_last_axis_im2col(x, w):
    kernel = w.shape[:-2]
    xp = _wrap(x, kernel)
    n_last, k_last = x.shape[-2], kernel[-1]
    cols = jnp.concatenate([xp[..., o:o + n_last, :] for o in range(k_last)], axis=-1)
    wk = w.reshape(kernel[:-1] + (k_last * w.shape[-2], w.shape[-1]))
    return _row_sum(cols, wk, kernel[:-1], x.shape[1:-1])


_ckpt = lambda f: jax.checkpoint(f, policy=jax.checkpoint_policies.nothing_saveable)  # noqa: E731


def _window(z, axis, k, u, periodic):
    """The u-th of the k shifted windows of `z` along `axis` for a 'same' convolution:
    periodic (roll) or zero-padded."""
    lo = (k - 1) // 2
    if periodic:
        return jnp.roll(z, lo - u, axis=axis) if lo != u else z
    widths = [(0, 0, 0)] * z.ndim
    widths[axis] = (lo, k - 1 - lo, 0)
    zp = jax.lax.pad(z, jnp.zeros((), z.dtype), widths)
    return jax.lax.slice_in_dim(zp, u, u + z.shape[axis], axis=axis)


def output_shifts(x, w, periodic=True):
    """All axes output-side: z = x @ w as (C, prod(K) * O), then the prod(K) shifted sums."""
    kernel = w.shape[:-2]
    c, o = w.shape[-2:]
    blocks = math.prod(kernel)
    wm = jnp.moveaxis(w.reshape((blocks, c, o)), 0, 1).reshape(c, blocks * o)
    z = (x.reshape(-1, c) @ wm).reshape(x.shape[:-1] + (blocks, o))
    y = None
    for i, off in enumerate(itertools.product(*(range(k) for k in kernel))):
        t = z[..., i, :]
        for a, (k, u) in enumerate(zip(kernel, off)):
            t = _window(t, a + 1, k, u, periodic)
        y = t if y is None else y + t
    return y


def wrap_then_split(x, w):
    return split_im2col(_wrap(x, w.shape[:-2]), w, ((0, 0),) * (x.ndim - 2))


def lax_conv(x, w):
    d = x.ndim - 2
    numbers = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"),
               3: ("NDHWC", "DHWIO", "NDHWC")}[d]
    return jax.lax.conv_general_dilated(_wrap(x, w.shape[:-2]), w, (1,) * d, "VALID",
                                        dimension_numbers=numbers)


def batch_chunks(conv, size):
    """`conv` applied to `size`-sample chunks of the batch in a `lax.map` (a loop: one
    chunk's patches at a time, so that they stay in cache)."""
    def chunked(x, w):
        b = x.shape[0]
        if b % size or b == size:
            return conv(x, w)
        xs = x.reshape((b // size, size) + x.shape[1:])
        ys = jax.lax.map(lambda xc: conv(xc, w), xs)
        return ys.reshape(x.shape[:-1] + (w.shape[-1],))
    return chunked



VARIANTS = {
    "im2col rolled (before)": _ckpt(im2col_rolled),
    "split (library now)": _shifted_matmul_conv,
    "split, wrap-padded copy": _ckpt(wrap_then_split),
    "im2col padded": im2col_padded,
    "flat rows": flat_rows,
    "flat rows ckpt": _ckpt(flat_rows),
    "flat rows + last-axis im2col": flat_rows_last_axis_im2col,
    "output shifts (all axes)": output_shifts,
    "im2col before, chunks of 2": batch_chunks(_ckpt(im2col_rolled), 2),
    "lax conv": lax_conv,
}


def _params(d, key=0):
    keys = jax.random.split(jax.random.PRNGKey(key), DEPTH)
    chans = [d] + [WIDTH] * (DEPTH - 1) + [d]
    return [{"w": jax.random.normal(k, (3,) * d + (i, o)) / math.sqrt(3 ** d * i),
             "b": jnp.zeros((o,))} for k, i, o in zip(keys, chans[:-1], chans[1:])]


def _net(conv):
    def apply(params, h):  # h: (B, *N, C)
        for i, layer in enumerate(params):
            h = conv(h, layer["w"]) + layer["b"]
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        return h
    return apply


def _train(apply, rollout, updates):
    def loss(p, data):
        def body(carry, target):
            x, total = carry
            x = apply(p, x)
            return (x, total + jnp.mean((x - target) ** 2)), None
        (_, total), _ = jax.lax.scan(body, (data[0], 0.0), data[1:rollout + 1])
        return total

    def train(p, data):
        def body(_, p):
            return jax.tree_util.tree_map(lambda a, g: a - 1e-4 * g, p, jax.grad(loss)(p, data))
        return jax.lax.fori_loop(0, updates, body, p)
    return train


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args()
    d = args.dims
    params = _params(d)
    variants = {n: VARIANTS[n] for n in args.variants}
    print(f"{d}-D, 9 convs 26 ch, batch {B}; ms per update (min of {args.reps}; "
          f"{args.updates}-update fori_loop, scan rollout)", flush=True)
    for n in args.sizes:
        x = jax.random.normal(jax.random.PRNGKey(1), (B,) + (n,) * d + (d,))
        ref = _net(lax_conv)(params, x)
        for name, conv in variants.items():
            diff = float(jnp.max(jnp.abs(jax.jit(_net(conv))(params, x) - ref)))
            print(f"  N={n} {name:<30} max |y - lax| = {diff:.1e}", flush=True)
        for r in args.rollouts:
            data = jax.random.normal(jax.random.PRNGKey(2), (r + 1, B) + (n,) * d + (d,))
            programs, compile_s = {}, {}
            for name, conv in variants.items():
                t = time.perf_counter()
                lowered = jax.jit(_train(_net(conv), r, args.updates)).lower(params, data)
                programs[name] = lowered.compile(compiler_options=CPU_COMPILER_OPTIONS)
                jax.block_until_ready(programs[name](params, data))
                compile_s[name] = time.perf_counter() - t
                cost = programs[name].cost_analysis()
                cost = cost[0] if isinstance(cost, list) else cost
                compile_s[name] = (compile_s[name], cost.get("bytes accessed", float("nan")))
            best = dict.fromkeys(programs, float("inf"))
            for _ in range(args.reps):
                for name, prog in programs.items():
                    t = time.perf_counter()
                    jax.block_until_ready(prog(params, data))
                    best[name] = min(best[name], time.perf_counter() - t)
            base = best[next(iter(best))]
            for name in programs:
                c, nbytes = compile_s[name]
                print(f"N={n:>3} R={r} | {name:<30} | {1e3 * best[name] / args.updates:>9.1f} ms"
                      f" | {base / best[name]:>5.2f}x today | {nbytes / 1e6:>8.1f} MB/update"
                      f" | first call {c:5.1f} s", flush=True)


if __name__ == "__main__":
    main()
