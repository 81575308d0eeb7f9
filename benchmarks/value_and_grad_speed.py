"""The functional `online_emulate.value_and_grad` against the trainer's own compiled step.

One built-in `ConvNet` (periodic convolutions, relu), `Supervised(R)` on random 1-D
trajectories; steady-state milliseconds per step after a warm-up call, for
- `value_and_grad(configuration, emulator, data)` called as it is (the binding compiles
  once per problem; the data's NaN scan runs on every call),
- `jax.jit(lambda p: value_and_grad(configuration, (apply, p), data))`, a user's jit,
- the same minibatch size inside `SupervisedTrainer` (sgd, second call of one trainer,
  so no compilation is timed; it also samples windows and updates).
Prints `ratio_value_and_grad_vs_trainer=<plain call / trainer step>` and the jit row's.

    python benchmarks/value_and_grad_speed.py [--hidden 16] [--depth 6] [--n 64] [--rollout 5]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import online_emulate as oe
from online_emulate.configuration import Supervised
from online_emulate.emulators import ConvNet, functional
from online_emulate.trainer import SupervisedTrainer


def _per_call(fn, repeats):
    jax.block_until_ready(fn())
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / repeats


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rollout", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()

    emulator = ConvNet(1, 1, 1, hidden_channels=args.hidden, depth=args.depth)
    R = args.rollout
    data = jax.random.normal(jax.random.PRNGKey(0), (args.batch, R + 1, 1, args.n))
    configuration = Supervised(R)
    apply, params = functional(emulator)

    plain = _per_call(lambda: oe.value_and_grad(configuration, emulator, data), args.steps)
    jitted_fn = jax.jit(lambda p: oe.value_and_grad(configuration, (apply, p), data))
    jitted = _per_call(lambda: jitted_fn(params), args.steps)

    trajectories = jax.random.normal(jax.random.PRNGKey(1), (args.batch, R + 1, 1, args.n))
    trainer = SupervisedTrainer(trajectories, num_rollout_steps=R, optimizer=optax.sgd(0.0),
                                num_training_steps=args.steps, batch_size=args.batch,
                                progress_bar=False)
    trainer(emulator, 0)
    t0 = time.perf_counter()
    trained, _ = trainer(emulator, 0)
    jax.block_until_ready(jax.tree_util.tree_leaves(functional(trained)[1]))
    step = (time.perf_counter() - t0) / args.steps

    print(f"ConvNet(1, 1, 1, hidden_channels={args.hidden}, depth={args.depth}), "
          f"Supervised({R}), batch {args.batch}, N={args.n}, {jax.default_backend()}")
    print(f"value_and_grad (plain call)      {plain * 1e3:8.2f} ms/step")
    print(f"jax.jit(value_and_grad)          {jitted * 1e3:8.2f} ms/step")
    print(f"SupervisedTrainer step           {step * 1e3:8.2f} ms/step")
    print(f"ratio_jit_value_and_grad_vs_trainer={jitted / step:.2f}")
    print(f"ratio_value_and_grad_vs_trainer={plain / step:.2f}")


if __name__ == "__main__":
    main()
