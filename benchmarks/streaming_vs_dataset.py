"""Streaming from the solver against a stored dataset (issue 24's study).

Arms, per problem and seed, all from the same initial emulator (the built-in `ConvNet`):

* `dataset`: `GeneralTrainer` on a stored dataset of `--samples` trajectories of
  `--horizon` steps (APEBench: 50 x 50), `Supervised(R)` for every R in `--rollouts`;
* `stream`: `StreamTrainer` with the same configuration and batch, windows streamed
  from the problem's solver (`--buffer` windows, FIFO, one solver step of `--batch`
  streams per update, trajectories of `--stream-length` steps, default `--horizon`);
* `stream+sil`: the same with `--sil` solver-in-the-loop windows per step;
* `stream-bptt`: long solver streams re-anchored every `--reanchor` steps with exact
  gradients over each segment: `StreamTrainer(Supervised(--reanchor))` with
  `BPTT(checkpoint="binomial", num_checkpoints=--checkpoints)` (memory set by its checkpoints, not the segment);
* `online-tbptt`, `online-etrace`: `OnlineTrainer` long streams (`--online-length`
  steps per rollout, an update every `--online-update` steps, re-anchored to the solver
  every `--reanchor` steps) with `TruncatedBPTT(--online-update)` and `ETrace("d_rtrl")`;
  with `--stagger` the batch's rollouts start at spread phases (`OnlineTrainer(stagger=True)`:
  one update's batch holds states of many trajectory times, not one).

Budget: with `--wall-seconds S` every arm trains for S seconds of wall time
(compilation included): before the seeds run, each arm's updates per second and fixed
cost are measured from two short runs (100 and 400 updates) of seed 0, and the arm gets
the number of updates that fills S. Without it every arm runs `--steps` updates. On a
shared machine the calibration is as noisy as the machine; the table prints each arm's
updates and measured wall seconds so the budget can be checked.

Metric (APEBench): mean nRMSE over `--test-samples` held-out trajectories per step,
geometric mean over steps 1-100 (`gmean100`), and nRMSE at step 200; mean and spread
over seeds; `div` counts seeds whose training stopped on a non-finite loss (scored at
the parameters the trainer kept) or whose test metric is not finite. The last line is
`stream_vs_dataset=<ratio>`: the stream arm's gmean100 over the dataset arm's (first
rollout setting), the worse of the two problems where streaming does best (the only one
with a single problem).

The defaults are SMALL (one problem, two seeds, a 16-channel depth-6 ConvNet, 1,500
updates). The issue's study is `--problems burgers_1d ks_1d burgers_2d --seeds 0 1 2 3 4
--hidden-channels 26 --depth 8 --rollouts 1 5 --wall-seconds 30` (RESULTS.md).

Usage: python benchmarks/streaming_vs_dataset.py [--problems burgers_1d] [--seeds 0 1]
    [--steps 1500 | --wall-seconds S] [--rollouts 1] [--hidden-channels 16] [--depth 6]
    [--batch 20] [--buffer 1000] [--sil 4] [--stagger] [--arms ...]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax

from online_emulate._rollout import bind
from online_emulate.configuration import Supervised
from online_emulate.emulators import ConvNet, functional
from online_emulate.estimators import BPTT, ETrace, TruncatedBPTT
from online_emulate.metrics import evaluate_rollout
from online_emulate.sample_data import get_problem
from online_emulate.trainer import (GeneralTrainer, OnlineTrainer, StreamTrainer,
                                    TrainingDiverged)

ARMS = ("dataset", "stream", "stream+sil", "stream-bptt", "online-tbptt", "online-etrace")
#: arms with no rollout setting of their own (run once, under the first rollout)
FIXED = ("stream-bptt", "online-tbptt", "online-etrace")
POINTS = {"burgers_1d": 64, "ks_1d": 64, "burgers_2d": 32}


def optimizer(steps):
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-3, max(1, steps // 4), steps)
    return optax.adam(schedule)


def score(emulator, test):
    apply, params = functional(emulator)
    metrics = evaluate_rollout(bind(apply, params), test, metrics=("nrmse",))
    nrmse = np.asarray(metrics["nrmse"])
    return metrics["nrmse_geometric_mean"], float(nrmse[min(199, len(nrmse) - 1)])


def train_arm(arm, problem, rollout, args, seed, steps):
    emulator = ConvNet(problem.num_spatial_dims, problem.num_channels, problem.num_channels,
                       hidden_channels=args.hidden_channels, depth=args.depth, key=seed)
    ics = lambda key, num: problem.sample_initial_conditions(num, key)  # noqa: E731
    common = dict(optimizer=optimizer(steps), progress_bar=False)
    if arm == "dataset":
        data = problem.make_data(args.samples, args.horizon, jax.random.PRNGKey(1000 + seed))
        trainer = GeneralTrainer(Supervised(rollout), data, num_training_steps=steps,
                                 batch_size=args.batch, **common)
    elif arm.startswith("stream"):
        segment = arm == "stream-bptt"
        trainer = StreamTrainer(
            Supervised(args.reanchor if segment else rollout), ref_stepper=problem.ref_stepper,
            ic_sampler=ics, num_training_steps=steps, batch_size=args.batch,
            buffer_size=args.buffer, stream_length=args.stream_length or args.horizon,
            solver_in_the_loop=args.sil if arm == "stream+sil" else 0,
            estimator=BPTT(checkpoint="binomial", num_checkpoints=args.checkpoints) if segment else None, **common)
    else:
        U = args.online_update
        estimator = TruncatedBPTT(U) if arm == "online-tbptt" else ETrace("d_rtrl")
        trainer = OnlineTrainer(
            rollout_length=args.online_length,
            num_rollouts=max(1, steps * U // args.online_length), update_every=U,
            estimator=estimator, reanchor_every=args.reanchor, stagger=args.stagger,
            ic_sampler=lambda key: ics(key, args.batch), ref_stepper=problem.ref_stepper,
            **common)
    start = time.perf_counter()
    try:
        trained, _ = trainer(emulator, key=seed)
        diverged = False
    except TrainingDiverged as stop:  # scored at the parameters the trainer kept
        trained, diverged = stop.emulator, True
    return trained, time.perf_counter() - start, diverged


def calibrate(arm, problem, rollout, args, seconds):
    """Updates that fill `seconds` of wall time: the per-update time from the difference
    of a 100- and a 400-update run (both compile their own program), the fixed cost
    from the shorter one."""
    short, long = 100, 400
    _, t_short, _ = train_arm(arm, problem, rollout, args, args.seeds[0], short)
    _, t_long, _ = train_arm(arm, problem, rollout, args, args.seeds[0], long)
    per_update = max(t_long - t_short, 1e-6) / (long - short)
    fixed = max(t_short - short * per_update, 0.0)
    return max(short, int((seconds - fixed) / per_update))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", nargs="+", default=["burgers_1d"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--wall-seconds", type=float, default=None,
                        help="train every arm for this many wall seconds (calibrated)")
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1])
    parser.add_argument("--hidden-channels", type=int, default=16)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--stream-length", type=int, default=None,
                        help="steps a solver stream runs before it restarts (default: --horizon)")
    parser.add_argument("--buffer", type=int, default=1000)
    parser.add_argument("--sil", type=int, default=4)
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--online-length", type=int, default=200)
    parser.add_argument("--online-update", type=int, default=5)
    parser.add_argument("--reanchor", type=int, default=20)
    parser.add_argument("--stagger", action="store_true",
                        help="online arms: staggered starts (OnlineTrainer(stagger=True))")
    parser.add_argument("--test-samples", type=int, default=20)
    parser.add_argument("--test-horizon", type=int, default=200)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    args = parser.parse_args()
    ratios = {}
    for name in args.problems:
        problem = get_problem(name, num_points=POINTS.get(name, 64))
        test = problem.make_data(args.test_samples, args.test_horizon, jax.random.PRNGKey(99))
        print(f"## {name}: {args.steps} updates, batch {args.batch}, ConvNet "
              f"{args.hidden_channels} ch x {args.depth}, seeds {args.seeds}")
        print(f"{'arm':<26} {'gmean100':>17} {'nRMSE@200':>17} {'updates':>7} {'wall s':>7} "
              f"{'div':>3}", flush=True)
        gmeans = {}
        for rollout in args.rollouts:
            for arm in args.arms:
                if arm in FIXED and rollout != args.rollouts[0]:
                    continue
                label = (f"stream-bptt Supervised({args.reanchor})" if arm == "stream-bptt"
                         else arm if arm in FIXED else f"{arm} Supervised({rollout})")
                if arm.startswith("online") and args.stagger:
                    label += " staggered"
                steps = (args.steps if args.wall_seconds is None
                         else calibrate(arm, problem, rollout, args, args.wall_seconds))
                g, e200, walls, diverged = [], [], [], 0
                for seed in args.seeds:
                    trained, wall, stopped = train_arm(arm, problem, rollout, args, seed, steps)
                    gm, at200 = score(trained, test)
                    diverged += int(stopped or not np.isfinite(gm))
                    g.append(gm), e200.append(at200), walls.append(wall)
                g, e200 = np.asarray(g), np.asarray(e200)
                gmeans[(arm, rollout)] = float(np.mean(g))
                print(f"{label:<26} {g.mean():>8.4f} +- {g.std():<6.4f} {e200.mean():>8.4f} +- "
                      f"{e200.std():<6.4f} {steps:>7} {np.mean(walls):>7.1f} {diverged:>3}",
                      flush=True)
        first = args.rollouts[0]
        if ("stream", first) in gmeans and ("dataset", first) in gmeans:
            ratios[name] = gmeans[("stream", first)] / gmeans[("dataset", first)]
    if ratios:
        best = sorted(ratios.values())[:2]
        print(f"stream_vs_dataset={max(best):.3f}")


if __name__ == "__main__":
    main()
