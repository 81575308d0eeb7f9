"""`online-emulate`: demo, train, stream, evaluate and bench from the command line."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Sequence

from ._factories import ESTIMATORS, OPTIMIZERS, PROBLEM_NAMES
from ._bench import run_bench
from ._demo import run_demo
from ._options import (add_configuration_options, add_emulator_options, decay, positive_float,
                       positive_int)
from ._plan import add_plan_parser, run_plan
from ._run import (
    EvaluationInterrupted,
    RunDiverged,
    RunInterrupted,
    evaluate_checkpoint,
    run_training,
)

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option or value is one line on stderr and exit code 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def _add_training_options(p):
    g = p.add_argument_group("problem and data")
    g.add_argument("--problem", choices=PROBLEM_NAMES, default="burgers_1d", help="built-in reference problem (default: %(default)s)")
    g.add_argument("--num-points", type=positive_int, default=None, help="grid points per axis (default: the problem's)")
    g.add_argument("--samples", type=positive_int, default=20, help="training trajectories (default: %(default)s)")
    g.add_argument("--horizon", type=positive_int, default=50, help="time steps per training trajectory (default: %(default)s)")
    g.add_argument("--test-samples", type=positive_int, default=10, help="held-out trajectories (default: %(default)s)")
    g.add_argument("--test-horizon", type=positive_int, default=200, help="rollout steps evaluated (default: %(default)s)")
    g = p.add_argument_group("configuration (what the loss is)")
    add_configuration_options(g)
    g = p.add_argument_group("gradient estimator (how the gradient is computed)")
    # the catalogue is read now, so registered estimators are choices
    g.add_argument("--estimator", choices=ESTIMATORS.names(), default="bptt", help="bptt, checkpointed bptt-step/bptt-sqrt/bptt-binomial, truncated tbptt, forward rtrl, braintrace d_rtrl / es_d_rtrl, or one registered in ESTIMATORS (default: %(default)s)")
    g.add_argument("--truncation", type=positive_int, default=1, help="window k of tbptt (default: %(default)s)")
    g.add_argument("--num-checkpoints", type=positive_int, default=None, help=f"stored states of bptt-binomial (default: {ESTIMATORS.takes('bptt-binomial')['num_checkpoints']})")
    g.add_argument("--decay", type=decay, default=None, help=f"trace decay of es_d_rtrl, in (0, 1) (default: {ESTIMATORS.takes('es_d_rtrl')['decay']})")
    g = p.add_argument_group("emulator and optimizer")
    add_emulator_options(g)
    g.add_argument("--optimizer", choices=OPTIMIZERS.names(), default="adam", help="optimizer; kfac needs the kfac extra (default: %(default)s)")
    g.add_argument("--learning-rate", type=positive_float, default=3e-3, help="adam/sgd learning rate (default: %(default)s)")
    g.add_argument("--steps", type=positive_int, default=1000, help="training steps (default: %(default)s)")
    g.add_argument("--batch-size", type=positive_int, default=16, help="windows per step (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and data order (default: %(default)s)")
    g = p.add_argument_group("output")
    g.add_argument("--output", default="runs/train", help="output folder (default: %(default)s)")
    g.add_argument("--checkpoint-every", type=positive_int, default=None, help="also checkpoint every k steps")
    g.add_argument("--resume", action="store_true", help="continue the run in OUTPUT from OUTPUT/checkpoint.npz if present (after --checkpoint-every or Ctrl-C), with that run's options (--steps may grow)")
    g.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in OUTPUT (without it or --resume, a non-empty OUTPUT is refused)")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_stream_options(p):
    g = p.add_argument_group("streaming from the solver (nothing stored)")
    g.add_argument("--buffer-size", type=positive_int, default=1024, help="windows the on-device buffer holds (default: %(default)s)")
    g.add_argument("--streams", type=positive_int, default=None, help="solver streams (default: --batch-size)")
    g.add_argument("--stream-length", type=positive_int, default=None, help="solver steps per initial condition (default: --horizon)")
    g.add_argument("--solver-steps", type=positive_int, default=1, help="solver steps of every stream per training step (default: %(default)s)")
    g.add_argument("--sampling", choices=("fifo", "reservoir"), default="fifo", help="buffer policy (default: %(default)s)")
    g.add_argument("--solver-in-the-loop", type=int, default=0, help="windows per step that start where the emulator goes (default: %(default)s)")
    g.add_argument("--solver-in-the-loop-horizon", type=positive_int, default=1, help="emulator steps before the solver takes over (default: %(default)s)")


def _stream_run_dict(args) -> dict:
    return {
        "buffer_size": args.buffer_size, "num_streams": args.streams or args.batch_size,
        "stream_length": args.stream_length or args.horizon,
        "solver_steps_per_step": args.solver_steps, "sampling": args.sampling,
        "solver_in_the_loop": args.solver_in_the_loop,
        "solver_in_the_loop_horizon": args.solver_in_the_loop_horizon,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="online-emulate", description="Train autoregressive neural PDE emulators with unrolled (BPTT) or online (eligibility-trace) gradients.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="train on built-in advection and Burgers data with BPTT and online D_RTRL; print a comparison table")
    demo.add_argument("--output", default="runs/demo", help="output folder (default: %(default)s)")
    demo.add_argument("--steps", type=positive_int, default=400, help="training steps per run (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    train = sub.add_parser("train", help="train one emulator; writes config, checkpoint, metrics and plots")
    _add_training_options(train)
    train.add_argument_group("your own trajectories").add_argument(
        "--data", metavar="FILE", default=None,
        help="train on the trajectories (samples, time, C, *N) of FILE (.npy, .npz holding one "
             "array, or FILE.npz:NAME), memory-mapped, instead of --problem's: the file sets the "
             "channels and grid, the last --test-samples trajectories are held out for the "
             "evaluation (at most --test-horizon steps), --samples/--horizon/--num-points are "
             "not used; --problem only gives the reference stepper of configurations that need "
             "one (diverted and mix chains, residuum), on the file's grid")
    stream = sub.add_parser("stream", help="train one emulator on windows streamed from the problem's solver into an on-device buffer (StreamTrainer); the files of `train`")
    _add_training_options(stream)
    _add_stream_options(stream)
    stream.set_defaults(output="runs/stream")
    ev = sub.add_parser("evaluate", help="evaluate the checkpoint of a train run on fresh test data")
    ev.add_argument("--run", required=True, help="folder of a `train` run (holds config.json and checkpoint.npz)")
    ev.add_argument("--problem", choices=PROBLEM_NAMES, default=None, help="problem to test on (default: the run's)")
    ev.add_argument("--test-samples", type=positive_int, default=10, help="held-out trajectories (default: %(default)s)")
    ev.add_argument("--test-horizon", type=positive_int, default=200, help="rollout steps (default: %(default)s)")
    ev.add_argument("--seed", type=int, default=12345, help="seed of the test data (default: %(default)s)")
    ev.add_argument("--output", default=None, help="output folder (default: RUN/evaluation)")
    bench = sub.add_parser("bench", help="memory and time per rollout step of every gradient estimator")
    bench.add_argument("--rollout-lengths", type=positive_int, nargs="+", default=[10, 100, 1000], help="rollout lengths T (default: %(default)s)")
    bench.add_argument("--batch-size", type=positive_int, default=8, help="batch size (default: %(default)s)")
    bench.add_argument("--num-points", type=positive_int, default=64, help="grid points (default: %(default)s)")
    bench.add_argument("--hidden-channels", type=positive_int, default=8, help="conv net width (default: %(default)s)")
    bench.add_argument("--output", default="runs/bench", help="output folder (default: %(default)s)")
    add_plan_parser(sub)
    return parser


def _train_run_dict(args) -> dict:
    return {
        "problem": args.problem, "num_points": args.num_points, "samples": args.samples,
        "horizon": args.horizon, "test_samples": args.test_samples, "test_horizon": args.test_horizon,
        "configuration": args.configuration, "rollout_steps": args.rollout_steps,
        "branch_steps": args.branch_steps, "physics_steps": args.physics_steps,
        "reset_every": args.reset_every, "cut_bptt": args.cut_bptt, "cut_bptt_every": args.cut_bptt_every,
        "cut_div_chain": args.cut_div_chain, "cut_prev": args.cut_prev, "cut_next": args.cut_next,
        "estimator": args.estimator, "truncation": args.truncation, "decay": args.decay,
        "num_checkpoints": args.num_checkpoints,
        "emulator": {"kind": args.emulator, "kernel_size": args.kernel_size, "hidden_channels": args.hidden_channels, "depth": args.depth, "seed": args.seed},
        "optimizer": args.optimizer, "learning_rate": args.learning_rate, "steps": args.steps,
        "batch_size": args.batch_size, "seed": args.seed, "checkpoint_every": args.checkpoint_every,
        "data": getattr(args, "data", None),
    }


def _resume_command(argv) -> str:
    words = ["online-emulate", *argv]
    if "--resume" not in words:
        words.append("--resume")
    return shlex.join(words)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 done, 2 bad input, 3 training
    diverged, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            run_demo(output=args.output, steps=args.steps, progress=not args.no_progress)
        elif args.command in ("train", "stream"):
            run = _train_run_dict(args)
            source, subject = "", run["data"] or args.problem
            if args.command == "stream":
                run["stream"] = _stream_run_dict(args)
                source = " streamed from the solver"

            def started():
                print(f"training {args.estimator} on {subject}{source} for {args.steps} "
                      "steps (Ctrl-C stops and writes a checkpoint)", flush=True)

            result, _ = run_training(run, output=args.output, progress=not args.no_progress, resume=args.resume, overwrite=args.overwrite, on_start=started)
            m = result["metrics"]
            print(f"trained {result['estimator']} on {subject}: final loss {result['final_train_loss']:.4g}, "
                  f"test nRMSE@1 {m['nrmse'][0]:.4g}, geometric-mean nRMSE {m['nrmse_geometric_mean']:.4g}; files in {args.output}")
        elif args.command == "evaluate":
            m = evaluate_checkpoint(args.run, output=args.output, problem_name=args.problem, test_samples=args.test_samples, test_horizon=args.test_horizon, seed=args.seed)
            tested = (f"{m['data']} (held-out" if m.get("data") else f"{m['problem']} (seed {m['seed']}")
            print(f"{tested}, {m['test_samples']} samples x {m['test_horizon']} steps), "
                  f"checkpoint step {m['checkpoint_step']}: nRMSE@1 {m['nrmse'][0]:.4g}, geometric-mean nRMSE "
                  f"{m['nrmse_geometric_mean']:.4g}, steps until decorrelation {m['steps_until_decorrelation']}")
        elif args.command == "bench":
            run_bench(rollout_lengths=args.rollout_lengths, batch_size=args.batch_size, num_points=args.num_points, hidden_channels=args.hidden_channels, output=args.output)
        elif args.command == "plan":
            run_plan(args)
    except RunInterrupted as err:
        sys.stderr.write(f"online-emulate {args.command}: {err}\nresume with: {_resume_command(argv)}\n")
        return 130
    except EvaluationInterrupted as err:
        sys.stderr.write(f"online-emulate {args.command}: {err}\nevaluate with: online-emulate "
                         f"evaluate --run {shlex.quote(err.output)}\n")
        return 130
    except KeyboardInterrupt:
        sys.stderr.write(f"online-emulate {args.command}: interrupted\n")
        return 130
    except RunDiverged as err:
        where = ""
        if err.checkpoint:
            where = (f"\nlast good state: {err.checkpoint} (to continue from it with a smaller "
                     "--learning-rate, copy it to OUTPUT/checkpoint.npz and add --resume)")
        sys.stderr.write(f"online-emulate {args.command}: error: {err}{where}\n")
        return 3
    except (ValueError, TypeError, ImportError, FileNotFoundError) as err:
        sys.stderr.write(f"online-emulate {args.command}: error: {err}\n")
        return 2
    except OSError as err:
        sys.stderr.write(f"online-emulate {args.command}: error: {err.strerror or err}: {err.filename or ''}\n")
        return 2
    return 0
