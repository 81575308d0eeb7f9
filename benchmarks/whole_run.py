"""Whole training run on the realistic network: online_emulate vs trainax.

One run = data generation (timed once, charged to both) (1-D Burgers N=160 with exponax, 50 train trajectories of
50 steps and 10 test trajectories of 200 steps) + compilation + `--steps` adam steps
(batch 20, rollout 1 or 5) + a 200-step test rollout with its mean nRMSE. Both
libraries get the same data function and the same architecture (9 periodic convs of
kernel 3, 26 channels, relu, bias): trainax 0.0.2 with an equinox net, online_emulate
with `ConvNet(1, 1, 1, hidden_channels=26, depth=9)`.

To fit a shared machine, `--measure-steps` steps are run for real; the total for
`--steps` is extrapolated as

    data + (first call - measure_steps * steady) + steps * steady + test rollout,

where the first call of a trainer (compile + measure_steps) and a second call of the same
trainer (steady ms/step) are both timed. With `--measure-steps` equal to `--steps` nothing
is extrapolated.

    python benchmarks/whole_run.py [--steps 2000] [--measure-steps 200] [--rollouts 1 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_trainax as bench  # noqa: E402  (the shared realistic setup)

from online_emulate.metrics import nrmse, rollout  # noqa: E402
from online_emulate.sample_data import burgers_1d  # noqa: E402

TEST_STEPS = 200


def data_sets():
    train = bench.realistic_data(jax.random.PRNGKey(0))
    test = burgers_1d(bench.REAL_N, 10, temporal_horizon=TEST_STEPS, key=jax.random.PRNGKey(1))
    return jax.block_until_ready(train), jax.block_until_ready(test)


def test_error(stepper, test):
    pred = rollout(stepper, test[:, 0], TEST_STEPS)
    return float(jnp.mean(nrmse(pred, test[:, 1:])))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def one_library(name, make_trainer, r, steps, measure, t_data, train, test):
    trainer_fn = make_trainer(train, r, measure)
    t_first, model = timed(trainer_fn)
    t_second, model = timed(trainer_fn)
    steady = t_second / measure
    compile_s = max(t_first - t_second, 0.0)
    t_test, err = timed(lambda: test_error(model, test))
    total = t_data + compile_s + steps * steady + t_test
    print(f"{r:>3} | {name:<15} | {t_data:>6.1f} | {compile_s:>7.1f} | {1e3 * steady:>7.2f} | "
          f"{steps * steady:>9.1f} | {t_test:>6.1f} | {total:>7.1f} | {err:>8.3f}", flush=True)
    return total


def trainax_trainer(train, r, steps):
    import optax
    import trainax as tx

    net = bench.EqxConvNet(jax.random.PRNGKey(73))
    trainer = tx.trainer.SupervisedTrainer(train, num_rollout_steps=r, optimizer=optax.adam(1e-3), num_training_steps=steps, batch_size=bench.REAL_BATCH)

    def run():
        trained, _ = trainer(net, key=jax.random.PRNGKey(42), spawn_tqdm=False)
        return jax.block_until_ready(trained)

    return run


def ours_trainer(train, r, steps):
    import optax

    from online_emulate.emulators import ConvNet
    from online_emulate.trainer import SupervisedTrainer

    emulator = ConvNet(1, 1, 1, hidden_channels=bench.REAL_WIDTH, depth=bench.REAL_DEPTH, key=73)
    trainer = SupervisedTrainer(train, num_rollout_steps=r, optimizer=optax.adam(1e-3), num_training_steps=steps, batch_size=bench.REAL_BATCH, progress_bar=False)

    def run():
        trainer.reset()
        trained, _ = trainer(emulator, key=42)
        return trained

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--measure-steps", type=int, default=200)
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1, 5])
    args = parser.parse_args()
    measure = min(args.measure_steps, args.steps)
    note = "" if measure == args.steps else f" (extrapolated from {measure} measured steps)"
    print(f"whole run, {args.steps} steps{note}; seconds unless marked")
    # exponax's compiled stepper is cached after the first call, so the data are made
    # once, timed, and that time is charged to both libraries (same data function).
    t_data, (train, test) = timed(data_sets)
    print("  R | library         |   data | compile | ms/step | train_s | test_s |   total | test nRMSE")
    for r in args.rollouts:
        t_tx = one_library("trainax", trainax_trainer, r, args.steps, measure, t_data, train, test)
        t_oe = one_library("online_emulate", ours_trainer, r, args.steps, measure, t_data, train, test)
        print(f"{r:>3} | whole-run speed-up trainax / online_emulate = {t_tx / t_oe:.2f}", flush=True)


if __name__ == "__main__":
    main()
