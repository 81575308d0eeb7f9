"""K-FAC vs adam on 1-D Burgers: test error vs steps and vs wall time.

A residual periodic conv net (3 layers, 8 hidden channels, kernel 5) is trained on
Burgers trajectories (online_emulate.sample_data.get_problem("burgers_1d", num_points=32)) with a supervised loss of 1 and of 5 rollout steps, by
adam (lr 1e-3, 3e-3, 1e-2) and by `online_emulate.optim.KFAC` (adaptive lr, momentum,
damping). Test error: normalised RMSE of the R-step rollout on held-out trajectories.
Wall time excludes evaluation and compilation: every optimizer has exactly one compiled
step (K-FAC with inverse_update_period=1, so no second, inverse-updating variant compiles
later), and the clock starts after the first step, which compiles it.

    python benchmarks/kfac_vs_adam.py [--quick] [--out benchmarks/kfac_vs_adam.png]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from online_emulate.emulators import ConvNet, functional
from online_emulate.configuration import Supervised
from online_emulate.optim import KFAC, sample_windows
from online_emulate.sample_data import get_problem

N = 32


def make_data(num_train, num_test, horizon):
    problem = get_problem("burgers_1d", num_points=N)
    data = problem.make_data(num_train + num_test, horizon, jax.random.PRNGKey(0))
    return data[:num_train], data[num_train:]


def make_test_error(apply, test, steps):
    windows = test[:, : (test.shape[1] // (steps + 1)) * (steps + 1)]
    windows = windows.reshape((-1, steps + 1) + test.shape[2:])

    @jax.jit
    def error(params):
        def body(u, _):
            u = apply(params, u)
            return u, u

        _, us = jax.lax.scan(body, windows[:, 0], None, length=steps)
        pred = jnp.moveaxis(us, 0, 1)
        target = windows[:, 1:]
        return jnp.sqrt(jnp.mean((pred - target) ** 2) / jnp.mean(target**2))

    return error


def run(name, step_fn, params, state, train, config, num_steps, eval_every, error, batch_size):
    key = jax.random.PRNGKey(1)
    curve, wall = [], 0.0
    for i in range(num_steps):
        key, bkey, skey = jax.random.split(key, 3)
        batch = sample_windows(train, bkey, batch_size=batch_size, num_time_levels=config.num_time_levels)
        t = time.perf_counter()
        params, state, loss = step_fn(params, state, batch, skey)
        jax.block_until_ready(loss)
        if i > 0:
            wall += time.perf_counter() - t
        if (i + 1) % eval_every == 0 or i == 0:
            curve.append((i + 1, wall, float(error(params))))
    print(f"  {name:12s} final test error {curve[-1][2]:.4f}  ({wall:.1f} s after compile)")
    return curve


def adam_step(apply, config, lr):
    tx = optax.adam(lr)

    @jax.jit
    def step(params, state, batch, key):
        del key
        loss, grads = jax.value_and_grad(lambda q: config.loss(lambda u: apply(q, u), batch))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    return tx, step


def first_reach(curve, target, index):
    for point in curve:
        if point[2] <= target:
            return point[index]
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (CI / smoke run)")
    parser.add_argument("--out", default="benchmarks/kfac_vs_adam.png")
    args = parser.parse_args(argv)
    num_steps, eval_every = (100, 10) if args.quick else (400, 20)
    batch_size = 8
    train, test = make_data(16, 8, 40)
    jax.block_until_ready(train)
    apply, params0 = functional(
        ConvNet(1, 1, 1, hidden_channels=8, depth=3, kernel_size=5, residual=True, key=0)
    )
    results = {}
    for rollout in (1, 5):
        config = Supervised(rollout)
        error = make_test_error(apply, test, rollout)
        print(f"rollout {rollout}: {num_steps} steps, batch {batch_size}")
        curves = {}
        for lr in (1e-3, 3e-3, 1e-2):
            tx, step = adam_step(apply, config, lr)
            curves[f"adam {lr:g}"] = run(
                f"adam {lr:g}", step, params0, tx.init(params0), train, config,
                num_steps, eval_every, error, batch_size,
            )
        kfac = KFAC(inverse_update_period=1).build(apply, config)
        example = sample_windows(train, jax.random.PRNGKey(0), batch_size=batch_size,
                                 num_time_levels=config.num_time_levels)
        state = kfac.init(params0, jax.random.PRNGKey(0), example)
        curves["K-FAC"] = run("K-FAC", kfac.step, params0, state, train, config,
                              num_steps, eval_every, error, batch_size)
        best = min((c for n, c in curves.items() if n != "K-FAC"), key=lambda c: c[-1][2])
        best_name = [n for n, c in curves.items() if c is best][0]
        target = best[-1][2]
        ks, kt = first_reach(curves["K-FAC"], target, 0), first_reach(curves["K-FAC"], target, 1)
        a_s, a_t = best[-1][0], best[-1][1]
        print(f"  target = final error of best adam ({best_name}): {target:.4f}")
        if ks is None:
            print("  K-FAC did not reach the target")
        else:
            print(f"  steps to target: adam {a_s}, K-FAC {ks}  -> ratio {a_s / ks:.1f}x")
            print(f"  time  to target: adam {a_t:.2f} s, K-FAC {kt:.2f} s -> ratio {a_t / max(kt, 1e-9):.2f}x")
        print(f"  final error ratio best adam / K-FAC: {target / curves['K-FAC'][-1][2]:.1f}x")
        results[rollout] = curves

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for row, (rollout, curves) in enumerate(results.items()):
        for name, curve in curves.items():
            s, t, e = zip(*curve)
            axes[row, 0].semilogy(s, e, label=name)
            axes[row, 1].semilogy(t, e, label=name)
        axes[row, 0].set_xlabel("steps")
        axes[row, 1].set_xlabel("wall time after compile [s]")
        for ax in axes[row]:
            ax.set_ylabel(f"{rollout}-step test nRMSE")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"plot saved to {args.out}")


if __name__ == "__main__":
    main()
