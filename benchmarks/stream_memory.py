"""StreamTrainer's compiled memory: flat in num_training_steps, set by buffer_size.

Trains a small ConvNet on 1-D Burgers streamed from the solver for several run lengths
and buffer sizes and prints, per row, the compiled temporary memory of the training
chunk (XLA's `memory_analysis().temp_size_in_bytes`), the bytes of the buffer itself
(an argument of the chunk, on the device) and the run's wall time. Ends with
`temp_memory_ratio_longest_vs_shortest=<ratio>` at the first buffer size (1.0 means
flat in the run length).

Usage: python benchmarks/stream_memory.py [--steps 50 200 800] [--buffers 64 256 1024]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from online_emulate.configuration import Supervised
from online_emulate.emulators import ConvNet
from online_emulate.sample_data import get_problem
from online_emulate.trainer import StreamTrainer


def chunk_temp_bytes(trainer):
    chunk = trainer._compiled[2]
    prev = (trainer.params, trainer.opt_state, jnp.bool_(False))
    lowered = chunk.lower(trainer.params, trainer.opt_state, trainer.stream_state,
                          trainer.buffer, trainer.key, jnp.int32(0), jnp.int32(1), prev)
    return int(lowered.compile().memory_analysis().temp_size_in_bytes)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 200, 800])
    parser.add_argument("--buffers", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()
    problem = get_problem("burgers_1d", num_points=64)
    emulator = ConvNet(1, 1, 1, hidden_channels=8, depth=2, key=0)
    print(f"{'buffer_size':>11} {'num_training_steps':>18} {'temp MB':>8} {'buffer MB':>9} "
          f"{'wall s':>7}")
    first = {}
    for buffer_size in args.buffers:
        for steps in args.steps:
            trainer = StreamTrainer(
                Supervised(2), ref_stepper=problem.ref_stepper,
                ic_sampler=lambda key, num: problem.sample_initial_conditions(num, key),
                optimizer=optax.adam(1e-3), num_training_steps=steps, batch_size=16,
                buffer_size=buffer_size, progress_bar=False)
            start = time.perf_counter()
            trainer(emulator, key=0)
            wall = time.perf_counter() - start
            temp = chunk_temp_bytes(trainer)
            buf = trainer.buffer.windows.nbytes
            first.setdefault(buffer_size, []).append(temp)
            print(f"{buffer_size:>11} {steps:>18} {temp / 1e6:>8.3f} {buf / 1e6:>9.3f} "
                  f"{wall:>7.1f}")
    temps = first[args.buffers[0]]
    print(f"temp_memory_ratio_longest_vs_shortest={temps[-1] / temps[0]:.3f}")


if __name__ == "__main__":
    main()
