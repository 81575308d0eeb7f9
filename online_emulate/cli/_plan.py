"""`online-emulate plan`: predicted memory and recomputation of every gradient estimator
for one problem, and the exact scheme that fits a memory budget (nothing is trained)."""

from __future__ import annotations

import argparse
import re

import jax.numpy as jnp

from ..estimators import plan
from ._factories import CONFIGURATIONS, EMULATORS, PROBLEM_NAMES, make_problem, make_residuum_fn
from ._options import add_configuration_options, add_emulator_options, positive_int

__all__ = ["add_plan_parser", "run_plan", "parse_bytes"]

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
          "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30}


def parse_bytes(text: str) -> int:
    """'1500000', '512K', '64MiB', '1.5G' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if m is None or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(
            f"expected a size in bytes such as 1500000, 512K, 64MiB or 1.5G, got {text!r}")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return value


def add_plan_parser(sub) -> None:
    """Register the `plan` subcommand on the `online-emulate` subparsers."""
    p = sub.add_parser("plan", help="predicted memory and recomputation of every gradient estimator for one problem; the exact scheme that fits a budget")
    p.add_argument("--memory-budget", type=parse_bytes, required=True, help="compiled temp-memory budget of one gradient, e.g. 2MiB, 512K, 1500000")
    p.add_argument("--problem", choices=PROBLEM_NAMES, default="burgers_1d", help="built-in reference problem (default: %(default)s)")
    p.add_argument("--num-points", type=positive_int, default=None, help="grid points per axis (default: the problem's)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="windows per gradient (default: %(default)s)")
    add_configuration_options(p)
    add_emulator_options(p)

def run_plan(args):
    """Build the problem's shapes (no data is simulated: only shapes matter), print
    `estimators.plan` and return it."""
    problem = make_problem(args.problem, args.num_points)
    configuration = CONFIGURATIONS.make(args.configuration, vars(args))
    emulator = EMULATORS.make(args.emulator, dict(vars(args), seed=0, channels=problem.num_channels,
                                                  num_spatial_dims=problem.num_spatial_dims))
    data = jnp.zeros((args.batch_size, configuration.num_time_levels) + problem.state_shape)
    result = plan(
        configuration, emulator, data, args.memory_budget,
        ref_stepper=problem.ref_stepper if configuration.needs_ref_stepper else None,
        residuum_fn=make_residuum_fn(problem.ref_stepper) if configuration.needs_residuum_fn else None,
    )
    print(f"{args.configuration} (R={args.rollout_steps}) on {args.problem}, batch "
          f"{args.batch_size}, state {problem.state_shape}, {args.emulator}")
    print(result)
    return result
