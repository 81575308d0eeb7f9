"""Where a training step's time goes on CPU: convolution variants inside and outside loops.

The jitted gradient of the R-step MSE of the realistic network (9 periodic convs of
kernel 3, 26 channels, relu, bias; batch 20, N=160), with the same parameters evaluated by
several implementations of the periodic convolution, each timed (min of `--reps` calls):

* top: the rollout as a Python loop, at the top level of the jitted function;
* scan: the rollout inside `jax.lax.scan`;
* while: per step of a `fori_loop` of 10 gradient + SGD steps (the trainer's shape of
  program), rollout as a Python loop / as a scan.

With `--compiler-options`, instead: the per-update time of a 20-update `fori_loop` of
SGD on the R-step MSE (R = 1 and 5) for several emulators, compiled with XLA's CPU
defaults, with the library's `CPU_COMPILER_OPTIONS` (YNNPACK for reductions only) and
with no YNNPACK fusion at all, interleaved, min of `--reps` calls; and the same for the
9-layer net stepped as a batch against the vmap of its one-state path (what the
configurations did before `BatchStepper`).

    python benchmarks/profile_conv.py [--reps 10] [--rollouts 1 5]
    python benchmarks/profile_conv.py --compiler-options [--reps 5]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from online_emulate._compile import CPU_COMPILER_OPTIONS
from online_emulate.emulators import ConvNet, LinearStencil, functional

B, N, WIDTH, DEPTH = 20, 160, 26, 9


def _net(conv):
    """A depth-DEPTH relu net from a channel-last `conv(h, kernel) -> h` (wrap pad 1)."""

    def apply(params, u):  # u: (B, 1, N)
        h = jnp.moveaxis(u, 1, -1)
        for i in range(DEPTH):
            layer = params["layers"][i]
            hp = jnp.concatenate([h[:, -1:], h, h[:, :1]], axis=1)
            h = conv(hp, layer["weight"]) + layer["bias"]
            if i < DEPTH - 1:
                h = jax.nn.relu(h)
        return jnp.moveaxis(h, -1, 1)

    return apply


def _lax_nwc(hp, w):
    return jax.lax.conv_general_dilated(hp, w, (1,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"))


def _shifted_dots(hp, w):
    n = hp.shape[1] - w.shape[0] + 1
    return sum(jnp.dot(hp[:, u : u + n], w[u]) for u in range(w.shape[0]))


def _im2col(hp, w):
    n = hp.shape[1] - w.shape[0] + 1
    cols = jnp.concatenate([hp[:, u : u + n] for u in range(w.shape[0])], axis=-1)
    return jnp.dot(cols, w.reshape(-1, w.shape[-1]))


def _loss(step, R, loop):
    def loss(p, data):
        if loop == "python":
            x, total = data[:, 0], 0.0
            for t in range(R):
                x = step(p, x)
                total = total + jnp.mean((x - data[:, t + 1]) ** 2)
            return total

        def body(carry, t):
            x, total = carry
            x = step(p, x)
            return (x, total + jnp.mean((x - data[:, t + 1]) ** 2)), None

        (_, total), _ = jax.lax.scan(body, (data[:, 0], 0.0), jnp.arange(R))
        return total

    return loss


def _program(step, R, mode):
    if mode in ("top", "scan"):
        return jax.grad(_loss(step, R, "python" if mode == "top" else "scan"))
    return _sgd_updates(_loss(step, R, mode.split("/")[1]), 10)


def _sgd_updates(loss, updates):
    """`updates` SGD steps on `loss(params, data)` in one `fori_loop`."""

    def train(p, data):
        def body(i, p):
            return jax.tree_util.tree_map(lambda a, b: a - 1e-4 * b, p, jax.grad(loss)(p, data))

        return jax.lax.fori_loop(0, updates, body, p)

    return train


def _time(fn, args, reps, per):
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return 1e3 * best / per


OPTION_SETS = {
    "XLA default": None,
    "library (YNN reduce only)": CPU_COMPILER_OPTIONS,
    "no YNN fusion": {"xla_cpu_experimental_ynn_fusion_type": ""},
}

OPTION_CASES = {
    "stencil k=2, B=32, N=100": (lambda: LinearStencil(1, 1, 1, kernel_size=2), (32, 1, 100)),
    "conv 8ch depth 2 res, B=16, N=64": (
        lambda: ConvNet(1, 1, 1, hidden_channels=8, depth=2, residual=True), (16, 1, 64)),
    "conv 32ch depth 4, B=16, N=128": (
        lambda: ConvNet(1, 1, 1, hidden_channels=32, depth=4), (16, 1, 128)),
    "2-D conv 16ch depth 4, B=8, 32x32": (
        lambda: ConvNet(2, 1, 1, hidden_channels=16, depth=4), (8, 1, 32, 32)),
    "1-D conv 26ch depth 9, B=20, N=160": (
        lambda: ConvNet(1, 1, 1, hidden_channels=WIDTH, depth=DEPTH), (B, 1, N)),
}


def _interleaved(programs, args, reps, per):
    """min ms per update of each compiled program, timed in turns."""
    for program in programs.values():
        jax.block_until_ready(program(*args))
    best = dict.fromkeys(programs, float("inf"))
    for _ in range(reps):
        for name, program in programs.items():
            start = time.perf_counter()
            jax.block_until_ready(program(*args))
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: 1e3 * t / per for name, t in best.items()}


def compiler_option_study(reps, rollouts):
    updates = 20
    print(f"ms per SGD update (min of {reps}; 20-update fori_loop); ratio = XLA default / this")
    print(f"{'model':<36} {'R':>2} | " + " | ".join(f"{n:>26}" for n in OPTION_SETS))
    for name, (make, shape) in OPTION_CASES.items():
        apply, params = functional(make())
        for R in rollouts:
            data = jax.random.normal(jax.random.PRNGKey(0), (shape[0], R + 1) + shape[1:])
            train = jax.jit(_sgd_updates(_loss(apply, R, "python"), updates))
            programs = {n: train.lower(params, data).compile(compiler_options=opts)
                        for n, opts in OPTION_SETS.items()}
            ms = _interleaved(programs, (params, data), reps, updates)
            base = ms["XLA default"]
            print(f"{name:<36} {R:>2} | " + " | ".join(
                f"{ms[n]:>17.3f} ({base / ms[n]:.2f}x)" for n in OPTION_SETS), flush=True)

    apply, params = functional(ConvNet(1, 1, 1, hidden_channels=WIDTH, depth=DEPTH))
    print("\n1-D conv 26ch depth 9: the batch stepped whole vs the vmap of the one-state "
          "path (library compiler options)")
    for R in rollouts:
        data = jax.random.normal(jax.random.PRNGKey(0), (B, R + 1, 1, N))
        steps = {"batch": apply, "vmap of one state": jax.vmap(apply, in_axes=(None, 0))}
        programs = {n: jax.jit(_sgd_updates(_loss(s, R, "python"), updates)).lower(params, data).compile(
            compiler_options=CPU_COMPILER_OPTIONS) for n, s in steps.items()}
        ms = _interleaved(programs, (params, data), reps, updates)
        print(f"R={R}: " + ", ".join(f"{n} {t:.2f} ms" for n, t in ms.items())
              + f"; vmap / batch = {ms['vmap of one state'] / ms['batch']:.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--compiler-options", action="store_true",
                        help="compare XLA compiler options and batch stepping instead")
    args = parser.parse_args()
    if args.compiler_options:
        compiler_option_study(args.reps, args.rollouts)
        return
    apply, params = functional(ConvNet(1, 1, 1, hidden_channels=WIDTH, depth=DEPTH))
    data = jax.random.normal(jax.random.PRNGKey(0), (B, max(args.rollouts) + 1, 1, N))
    variants = {
        "library apply (lax_ops)": apply,
        "lax conv NWC": _net(_lax_nwc),
        "k shifted dots": _net(_shifted_dots),
        "im2col + one dot": _net(_im2col),
    }
    for name, fn in variants.items():
        diff = float(jnp.max(jnp.abs(fn(params, data[:, 0]) - apply(params, data[:, 0]))))
        print(f"{name:<24} max |diff| vs apply = {diff:.1e}")
    modes = ("top", "scan", "while/python", "while/scan")
    print(f"\nms per gradient (min of {args.reps}); while = per step of a 10-step fori_loop")
    print(f"{'R':>2} | {'variant':<24} | " + " | ".join(f"{m:>12}" for m in modes))
    for R in args.rollouts:
        for name, fn in variants.items():
            row = [_time(_program(fn, R, m), (params, data[:, : R + 1]), args.reps, 10 if "/" in m else 1)
                   for m in modes]
            print(f"{R:>2} | {name:<24} | " + " | ".join(f"{t:>12.2f}" for t in row), flush=True)


if __name__ == "__main__":
    main()
