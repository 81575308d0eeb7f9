"""`online-emulate bench`: memory and time per rollout step of each estimator."""

from __future__ import annotations

import os

import jax

from .. import configuration as cfg
from ..emulators import ConvNet
from ..estimators import ESTIMATORS, gradient_fidelity
from ..plot import plot_memory_vs_rollout
from ..sample_data import get_problem
from ._run import check_output_folder, write_json

__all__ = ["run_bench"]


def run_bench(*, rollout_lengths, batch_size: int, num_points: int, hidden_channels: int, output: str):
    """Print per estimator and rollout length: temp memory, time per step, gradient cosine."""
    output = check_output_folder(output)
    problem = get_problem("burgers_1d", num_points=num_points)
    emulator = ConvNet(1, 1, 1, hidden_channels=hidden_channels, depth=2, residual=True, key=0)
    # DivertedChainBranchOne(cut_div_chain) makes its reference on the fly: only u0 is stored
    data = problem.make_data(batch_size, 1, jax.random.PRNGKey(0))[:, :1]
    # every registered estimator with its defaults, but binomial BPTT (its count is the question)
    estimators = [ESTIMATORS.make(n) for n in ESTIMATORS.names() if n != "bptt-binomial"]
    rows = gradient_fidelity(
        emulator, lambda T: cfg.DivertedChainBranchOne(T, cut_div_chain=True), data,
        estimators=estimators, rollout_lengths=list(rollout_lengths), ref_stepper=problem.ref_stepper,
    )
    print(f"{'estimator':>36} | {'T':>6} | {'temp MiB':>9} | {'ms/step':>8} | {'cosine':>7}")
    memory = {}
    for r in rows:
        memory.setdefault(r["estimator"], {})[r["T"]] = r["temp_bytes"]
        print(f"{r['estimator']:>36} | {r['T']:>6} | {r['temp_bytes'] / 2**20:>9.3f} | "
              f"{1e3 * r['time_per_step']:>8.3f} | {r['cosine']:>7.4f}")
    plot_memory_vs_rollout(memory, os.path.join(output, "memory_vs_rollout.png"))
    write_json(os.path.join(output, "bench.json"), rows)
    return rows
