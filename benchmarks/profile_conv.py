"""Where a training step's time goes on CPU: convolution variants inside and outside loops.

The jitted gradient of the R-step MSE of the realistic network (9 periodic convs of
kernel 3, 26 channels, relu, bias; batch 20, N=160), with the same parameters evaluated by
several implementations of the periodic convolution, each timed (min of `--reps` calls):

* top: the rollout as a Python loop, at the top level of the jitted function;
* scan: the rollout inside `jax.lax.scan`;
* while: per step of a `fori_loop` of 10 gradient + SGD steps (the trainer's shape of
  program), rollout as a Python loop / as a scan.

    python benchmarks/profile_conv.py [--reps 10] [--rollouts 1 5]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from online_emulate.emulators import ConvNet, functional

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
    loss = _loss(step, R, mode.split("/")[1])

    def train(p, data):
        def body(i, p):
            g = jax.grad(loss)(p, data)
            return jax.tree_util.tree_map(lambda a, b: a - 1e-4 * b, p, g)

        return jax.lax.fori_loop(0, 10, body, p)

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1, 5])
    args = parser.parse_args()
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
