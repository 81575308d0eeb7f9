"""Which gradient clipping keeps every seed of an OnlineTrainer run finite.

Burgers 1-D (N=64), built-in ConvNet 8 channels depth 2 (key = seed), `OnlineTrainer`
with `TruncatedBPTT(5)`, `update_every=5`, 4 rollouts of 200 steps from 8 fresh
initial conditions each (160 updates), adam at `--rate`. For every `clip_grad_norm` in
`--clips` ("none" for no clipping) and every seed it prints the update at which the run
diverged (`TrainingDiverged.failed_step`, or None) and the mean loss of the last 20
updates; then one line per clip with the count of diverged seeds. The last line is
`diverged_unclipped_vs_clipped=<count without clipping>/<count with the last clip>`.

Usage: python benchmarks/online_clipping.py [--rate 3e-2] [--clips none 1.0 0.1] [--seeds 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import optax

from online_emulate import sample_data as sd
from online_emulate.emulators import ConvNet
from online_emulate.estimators import TruncatedBPTT
from online_emulate.trainer import OnlineTrainer, TrainingDiverged


def run(problem, rate, clip, seed):
    """`(failed_step or None, mean loss of the last 20 updates or NaN)`."""
    trainer = OnlineTrainer(
        optimizer=optax.adam(rate), rollout_length=200, num_rollouts=4, update_every=5,
        estimator=TruncatedBPTT(5),
        ic_sampler=lambda key: problem.sample_initial_conditions(8, key),
        ref_stepper=problem.ref_stepper, clip_grad_norm=clip, progress_bar=False)
    try:
        _, history = trainer(ConvNet(1, 1, 1, hidden_channels=8, depth=2, key=seed), key=seed)
    except TrainingDiverged as err:
        return err.failed_step, float("nan")
    return None, float(np.asarray(history.loss)[-20:].mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=3e-2)
    parser.add_argument("--clips", nargs="+", default=["none", "1.0", "0.1"])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    problem = sd.get_problem("burgers_1d", num_points=64)
    counts = []
    for text in args.clips:
        clip = None if text == "none" else float(text)
        start, diverged = time.perf_counter(), 0
        for seed in range(args.seeds):
            failed, last = run(problem, args.rate, clip, seed)
            diverged += failed is not None
            print(f"rate {args.rate:g} clip {clip} seed {seed}: diverged at {failed}, "
                  f"last-20 loss {last:.4g}", flush=True)
        counts.append(diverged)
        print(f"== rate {args.rate:g} clip {clip}: {diverged}/{args.seeds} diverged, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    print(f"diverged_unclipped_vs_clipped={counts[0]}/{counts[-1]}")


if __name__ == "__main__":
    main()
