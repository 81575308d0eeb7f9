"""The trainax quickstart, trained with trainax and with online_emulate in one process.

Prints the learned stencil's distance to the first-order-upwind stencil [1+CFL, -CFL]
for rollouts 1 / 5 / 20 with both libraries, and the steady-state wall time per 1000
training steps after compilation. Steady state is measured as t(2N steps) - t(N steps)
of fresh trainers, which cancels compilation and set-up for both libraries alike.
The last line is `speedup_vs_trainax=<trainax time / ours>` (median of the repeats,
summed over the three rollout lengths).

Needs the bench extra (`pip install -e ".[bench]"`); installs nothing itself.

    python benchmarks/vs_trainax.py [--repeats 3] [--steps 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import trainax as tx

from online_emulate.emulators import LinearStencil
from online_emulate.sample_data import advection_1d_periodic
from online_emulate.trainer import SupervisedTrainer

CFL = -0.75
FOU = jnp.array([1 + CFL, -CFL])
ROLLOUTS = (1, 5, 20)


def trainax_run(data, r, steps):
    conv = eqx.nn.Conv1d(1, 1, 2, padding="SAME", padding_mode="CIRCULAR", use_bias=False, key=jax.random.PRNGKey(73))
    trainer = tx.trainer.SupervisedTrainer(data, num_rollout_steps=r, optimizer=optax.adam(1e-2), num_training_steps=steps, batch_size=32)
    start = time.perf_counter()
    trained, _ = trainer(conv, key=jax.random.PRNGKey(42), spawn_tqdm=False)
    jax.block_until_ready(trained.weight)
    return time.perf_counter() - start, float(jnp.linalg.norm(trained.weight[0, 0] - FOU))


def ours_run(data, r, steps):
    emulator = LinearStencil(1, 1, 1, kernel_size=2, key=73)
    trainer = SupervisedTrainer(data, num_rollout_steps=r, optimizer=optax.adam(1e-2), num_training_steps=steps, batch_size=32, progress_bar=False)
    start = time.perf_counter()
    trained, _ = trainer(emulator, key=42)
    return time.perf_counter() - start, float(jnp.linalg.norm(trained.stencil[0, 0] - FOU))


def steady_seconds_per_1000(run, data, r, steps):
    t_short, _ = run(data, r, steps)
    t_long, err = run(data, r, 2 * steps)
    return 1000.0 * max(t_long - t_short, 1e-9) / steps, err


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    data = advection_1d_periodic(cfl=CFL, key=jax.random.PRNGKey(0))

    print("stencil error |w - [1+CFL, -CFL]| after 1000 steps (adam 1e-2, batch 32)")
    print(f"{'rollout':>8} | {'trainax':>9} | {'online_emulate':>14}")
    for r in ROLLOUTS:
        _, e_tx = trainax_run(data, r, 1000)
        _, e_oe = ours_run(data, r, 1000)
        print(f"{r:>8} | {e_tx:>9.4f} | {e_oe:>14.4f}")

    print(f"\nsteady-state seconds per 1000 steps (median of {args.repeats})")
    print(f"{'rollout':>8} | {'trainax':>9} | {'online_emulate':>14} | {'ratio':>6}")
    per_r = {r: ([], []) for r in ROLLOUTS}
    for _ in range(args.repeats):
        for r in ROLLOUTS:
            per_r[r][0].append(steady_seconds_per_1000(trainax_run, data, r, args.steps)[0])
            per_r[r][1].append(steady_seconds_per_1000(ours_run, data, r, args.steps)[0])
    for r in ROLLOUTS:
        t_tx, t_oe = (statistics.median(v) for v in per_r[r])
        print(f"{r:>8} | {t_tx:>9.3f} | {t_oe:>14.3f} | {t_tx / t_oe:>6.1f}")
    total_tx = [sum(per_r[r][0][i] for r in ROLLOUTS) for i in range(args.repeats)]
    total_oe = [sum(per_r[r][1][i] for r in ROLLOUTS) for i in range(args.repeats)]
    print(f"{'all':>8} | {statistics.median(total_tx):>9.3f} | {statistics.median(total_oe):>14.3f} |")
    print(f"speedup_vs_trainax={statistics.median(total_tx) / statistics.median(total_oe):.2f}")


if __name__ == "__main__":
    main()
