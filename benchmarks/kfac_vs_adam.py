"""K-FAC vs adam on 1-D Burgers: test error vs steps and vs wall time.

A residual periodic conv net (3 layers, 8 hidden channels, kernel 5, 177 parameters) is
trained on Burgers trajectories (`get_problem("burgers_1d", num_points=32)`) with
`SupervisedTrainer` and a loss of 1 and of 5 rollout steps, by adam (lr 1e-3, 3e-3,
1e-2) and by `online_emulate.optim.KFAC()` (adaptive learning rate, momentum, damping).
Everything runs through the library's trainer, so both optimizers see the same windows
in the same order. Test error: nRMSE of R-step rollouts from every start of held-out
trajectories (online_emulate.metrics).

Wall time: the trainer is called in segments of `eval_every` steps (a second call
continues training); each segment is timed, evaluation is not. The first segment
compiles (K-FAC compiles its step twice in it: with and without an inverse update), so
its time is reported separately and left out of time-to-target.

    python benchmarks/kfac_vs_adam.py [--quick] [--out benchmarks/kfac_vs_adam.png]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from online_emulate.emulators import ConvNet, functional
from online_emulate.metrics import nrmse, rollout
from online_emulate.optim import KFAC
from online_emulate.sample_data import get_problem
from online_emulate.trainer import SupervisedTrainer

N = 32
BATCH = 8


def make_test_error(test, steps):
    starts = test[:, : test.shape[1] - steps]
    u0 = starts.reshape((-1,) + test.shape[2:])
    targets = jnp.stack([test[:, k + 1 : k + 1 + starts.shape[1]] for k in range(steps)], axis=2)
    targets = targets.reshape((-1, steps) + test.shape[2:])

    def error(emulator):
        apply, params = functional(emulator)
        return float(jnp.mean(nrmse(rollout(lambda u: apply(params, u), u0, steps), targets)))

    return error


def run(name, optimizer, emulator, train, steps, num_steps, eval_every, error):
    trainer = SupervisedTrainer(train, optimizer=optimizer, num_training_steps=eval_every, batch_size=BATCH,
                                num_rollout_steps=steps, progress_bar=False)
    curve, wall, compile_segment = [], 0.0, None
    trained = emulator
    for segment in range(num_steps // eval_every):
        start = time.perf_counter()
        # a trainer call starts fresh; resume() continues with the kept optimizer state
        trained, _ = trainer(trained, key=1) if segment == 0 else trainer.resume()
        elapsed = time.perf_counter() - start
        if segment == 0:
            compile_segment = elapsed
        else:
            wall += elapsed
        curve.append((trainer.step, wall, error(trained)))
    per_step = 1e3 * wall / max(num_steps - eval_every, 1)
    print(f"  {name:12s} final test nRMSE {curve[-1][2]:.4f}  ({per_step:.2f} ms/step after the first "
          f"segment; first segment incl. compile {compile_segment:.1f} s)", flush=True)
    return curve


def first_reach(curve, target):
    for step, wall, err in curve:
        if err <= target:
            return step, wall
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 steps instead of 400")
    parser.add_argument("--out", default="benchmarks/kfac_vs_adam.png")
    args = parser.parse_args(argv)
    num_steps, eval_every = (100, 10) if args.quick else (400, 20)
    problem = get_problem("burgers_1d", num_points=N)
    data = problem.make_data(24, 40, jax.random.PRNGKey(0))
    train, test = data[:16], data[16:]
    emulator = ConvNet(1, 1, 1, hidden_channels=8, depth=3, kernel_size=5, residual=True, key=0)
    results = {}
    for steps in (1, 5):
        error = make_test_error(test, steps)
        print(f"rollout {steps}: {num_steps} steps, batch {BATCH}")
        curves = {f"adam {lr:g}": run(f"adam {lr:g}", optax.adam(lr), emulator, train, steps, num_steps, eval_every, error)
                  for lr in (1e-3, 3e-3, 1e-2)}
        curves["K-FAC"] = run("K-FAC", KFAC(), emulator, train, steps, num_steps, eval_every, error)
        best_name = min((n for n in curves if n != "K-FAC"), key=lambda n: curves[n][-1][2])
        target = curves[best_name][-1][2]
        adam_step, adam_wall = curves[best_name][-1][:2]
        print(f"  target = final test nRMSE of the best adam ({best_name}): {target:.4f}")
        reached = first_reach(curves["K-FAC"], target)
        if reached is None:
            print("  K-FAC did not reach the target")
        else:
            k_step, k_wall = reached
            print(f"  steps to target: adam {adam_step}, K-FAC {k_step} -> K-FAC needs {adam_step / k_step:.1f}x fewer steps")
            print(f"  time to target (after the first segment): adam {adam_wall:.2f} s, K-FAC {k_wall:.2f} s "
                  f"-> ratio adam/K-FAC {adam_wall / max(k_wall, 1e-9):.2f}")
        print(f"  final error ratio best adam / K-FAC: {target / curves['K-FAC'][-1][2]:.2f}x")
        results[steps] = curves

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for row, (steps, curves) in enumerate(results.items()):
        for name, curve in curves.items():
            s, t, e = zip(*curve)
            axes[row, 0].semilogy(s, e, label=name)
            axes[row, 1].semilogy(t, e, label=name)
        axes[row, 0].set_xlabel("training steps")
        axes[row, 1].set_xlabel("wall time after the first segment [s]")
        for ax in axes[row]:
            ax.set_ylabel(f"{steps}-step test nRMSE")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"plot saved to {args.out}")


if __name__ == "__main__":
    main()
