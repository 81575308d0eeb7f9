"""The trainax quickstart, trained with trainax and with online_emulate in one process.

Prints the learned stencil's distance to the first-order-upwind stencil [1+CFL, -CFL]
for rollouts 1 / 5 / 20 with both libraries, and the steady-state wall time per 1000
training steps after compilation: each library's trainer is called once to compile
(and that run gives the stencil error), then the same trainer object is called again
for the same number of steps and timed; both libraries cache their compiled step
between calls of one trainer.
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


def trainax_trainer(data, r, steps):
    conv = eqx.nn.Conv1d(1, 1, 2, padding="SAME", padding_mode="CIRCULAR", use_bias=False, key=jax.random.PRNGKey(73))
    trainer = tx.trainer.SupervisedTrainer(data, num_rollout_steps=r, optimizer=optax.adam(1e-2), num_training_steps=steps, batch_size=32)

    def run():
        trained, _ = trainer(conv, key=jax.random.PRNGKey(42), spawn_tqdm=False)
        jax.block_until_ready(trained.weight)
        return float(jnp.linalg.norm(trained.weight[0, 0] - FOU))

    return run


def ours_trainer(data, r, steps):
    emulator = LinearStencil(1, 1, 1, kernel_size=2, key=73)
    trainer = SupervisedTrainer(data, num_rollout_steps=r, optimizer=optax.adam(1e-2), num_training_steps=steps, batch_size=32, progress_bar=False)

    def run():
        trainer.reset()  # same starting point every call; the compiled program is kept
        trained, _ = trainer(emulator, key=42)
        return float(jnp.linalg.norm(trained.stencil[0, 0] - FOU))

    return run


def timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    data = advection_1d_periodic(cfl=CFL, key=jax.random.PRNGKey(0))

    runs = {r: (trainax_trainer(data, r, args.steps), ours_trainer(data, r, args.steps)) for r in ROLLOUTS}
    print(f"stencil error |w - [1+CFL, -CFL]| after {args.steps} steps (adam 1e-2, batch 32)")
    print(f"{'rollout':>8} | {'trainax':>9} | {'online_emulate':>14}")
    for r, (tx_run, oe_run) in runs.items():  # first calls compile
        print(f"{r:>8} | {tx_run():>9.4f} | {oe_run():>14.4f}")

    scale = 1000.0 / args.steps
    per_r = {r: ([], []) for r in ROLLOUTS}
    for _ in range(args.repeats):
        for r, (tx_run, oe_run) in runs.items():
            per_r[r][0].append(scale * timed(tx_run))
            per_r[r][1].append(scale * timed(oe_run))
    print(f"\nsteady-state seconds per 1000 steps after compilation (median of {args.repeats})")
    print(f"{'rollout':>8} | {'trainax':>9} | {'online_emulate':>14} | {'ratio':>6}")
    for r in ROLLOUTS:
        t_tx, t_oe = (statistics.median(v) for v in per_r[r])
        print(f"{r:>8} | {t_tx:>9.3f} | {t_oe:>14.3f} | {t_tx / t_oe:>6.1f}")
    total_tx = [sum(per_r[r][0][i] for r in ROLLOUTS) for i in range(args.repeats)]
    total_oe = [sum(per_r[r][1][i] for r in ROLLOUTS) for i in range(args.repeats)]
    print(f"{'all':>8} | {statistics.median(total_tx):>9.3f} | {statistics.median(total_oe):>14.3f} |")
    equinox_model_row(data, args.steps, args.repeats)
    print(f"speedup_vs_trainax={statistics.median(total_tx) / statistics.median(total_oe):.2f}")


def equinox_model_row(data, steps, repeats):
    """The quickstart with trainax's own equinox model trained by online_emulate too.

    Both libraries train the same `equinox.nn.Conv1d` (online_emulate through its
    equinox adapter); prints the summed steady-state seconds per 1000 steps over the
    three rollout lengths (median of `repeats`, after one compiling call each) and the
    stencil errors of the compiling calls.
    """

    def conv():
        return eqx.nn.Conv1d(1, 1, 2, padding="SAME", padding_mode="CIRCULAR", use_bias=False, key=jax.random.PRNGKey(73))

    def ours(r):
        trainer = SupervisedTrainer(data, num_rollout_steps=r, optimizer=optax.adam(1e-2), num_training_steps=steps, batch_size=32, progress_bar=False)
        model = conv()

        def run():
            trained, _ = trainer(model, jax.random.PRNGKey(42))  # every call starts fresh
            jax.block_until_ready(trained.weight)
            return float(jnp.linalg.norm(trained.weight[0, 0] - FOU))

        return run

    runs = {r: (trainax_trainer(data, r, steps), ours(r)) for r in ROLLOUTS}
    errors = {r: (tx_run(), oe_run()) for r, (tx_run, oe_run) in runs.items()}
    scale = 1000.0 / steps
    totals = ([], [])
    for _ in range(repeats):
        totals[0].append(scale * sum(timed(runs[r][0]) for r in ROLLOUTS))
        totals[1].append(scale * sum(timed(runs[r][1]) for r in ROLLOUTS))
    t_tx, t_oe = statistics.median(totals[0]), statistics.median(totals[1])
    print("\nequinox Conv1d model in both libraries (stencil errors rollout 1 / 5 / 20: "
          + ", ".join(f"{e_tx:.4f} vs {e_oe:.4f}" for e_tx, e_oe in errors.values()) + ")")
    print(f"{'eqx all':>8} | {t_tx:>9.3f} | {t_oe:>14.3f} | {t_tx / t_oe:>6.1f}")


if __name__ == "__main__":
    main()
