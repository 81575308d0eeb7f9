"""One training run of the command line: data, training, evaluation, files.

Files of a run are written into `OUTPUT/.partial/` and moved into `OUTPUT` when the run
completes (or is interrupted and can be resumed), so a run that fails or is refused
leaves the previous contents of `OUTPUT` as they were. Only a diverged run adds a file
(`diverged.npz`, the state to resume from with a smaller learning rate).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from .._rollout import bind
from .._storage import atomic_write
from ..callback import CheckpointCallback
from ..data import load_trajectories
from ..emulators import functional, load_emulator, save_emulator
from ..estimators import compiled_temp_bytes
from ..metrics import evaluate_rollout, rollout, to_json_dict
from ..metrics._evaluate import _convert
from ..plot import plot_error_vs_step, plot_loss_history, plot_spacetime
from ..trainer import GeneralTrainer, StreamTrainer, TrainingDiverged, load_checkpoint
from ._factories import (
    CONFIGURATIONS,
    EMULATORS,
    ESTIMATORS,
    OPTIMIZERS,
    make_estimator,
    make_problem,
    make_residuum_fn,
)
from ._data_file import DataFile, absolute, check_same_file, open_data_file
from ._fit import check_choices_fit
from ._run_folder import check_resumed_options, check_run_folder

__all__ = [
    "run_training",
    "evaluate_checkpoint",
    "write_json",
    "check_output_folder",
    "RunInterrupted",
    "RunDiverged",
    "EvaluationInterrupted",
    "CHECKPOINT",
]

CHECKPOINT = "checkpoint.npz"
DIVERGED = "diverged.npz"
_PARTIAL = ".partial"


class RunInterrupted(Exception):
    """SIGINT/SIGTERM stopped training; a checkpoint at the last completed step exists."""

    def __init__(self, signal_name: str, step: int, checkpoint: str):
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        super().__init__(f"interrupted by {signal_name} at step {step}; checkpoint written to {checkpoint}")


class EvaluationInterrupted(Exception):
    """Ctrl-C arrived after training had finished, while the run was being evaluated;
    the trained emulator, its checkpoint and history were written to `output`."""

    def __init__(self, output: str):
        self.output = output
        super().__init__(
            f"interrupted during evaluation; training had finished and {output} holds "
            f"emulator.npz, {CHECKPOINT} and history.json (no metrics)")


class RunDiverged(Exception):
    """Training diverged; the last good state was written to `checkpoint`."""

    def __init__(self, message: str, checkpoint: str | None):
        self.checkpoint = checkpoint
        super().__init__(message)


def write_json(path: str, payload) -> None:
    """Write JSON atomically (temporary file + rename), with the mode the user's umask
    gives new files. numpy values become plain ones."""
    text = json.dumps(_convert(payload, "payload"), indent=2, sort_keys=True)
    atomic_write(path, lambda f: f.write(text), text=True, prefix=".json-")


def check_output_folder(path: str, option: str = "--output") -> str:
    """Make sure `path` is (or can become) a writable folder, before any work.

    Raises:
        ValueError: one line naming `option`, the path and what is wrong.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option}: expected a folder, got the file {path!r}")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{option}: expected a folder that can be created, got {path!r} "
                         f"under the file {existing!r}")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{option}: expected a writable folder, got {path!r} "
                         f"({err.strerror or err})") from None
    return path


def _datasets(problem, samples: int, test_samples: int, horizon: int, test_horizon: int, seed: int):
    key_train, key_test = jax.random.split(jax.random.PRNGKey(seed))
    train = problem.make_data(samples, horizon, key_train)
    test = problem.make_data(test_samples, test_horizon, key_test)
    return train, test


def _trainer(run, problem, configuration, train, **options):
    """The run's trainer: a `GeneralTrainer` on the stored `train` trajectories, or with
    `run["stream"]` a `StreamTrainer` on the problem's solver (`train` is then None)."""
    if run.get("stream") is None:
        # a file's values were checked while it was read a block at a time
        return GeneralTrainer(configuration, train, check_finite_data=not run.get("data"),
                              **options)
    ref_stepper = problem.ref_stepper
    options.pop("ref_stepper")
    return StreamTrainer(
        configuration, ref_stepper=ref_stepper,
        ic_sampler=lambda key, num: problem.sample_initial_conditions(num, key),
        **options, **run["stream"])


def resolve_run(run: dict):
    """Build every object of a run and fill in every default (the resolved config).

    With `run["data"]` the "problem" returned is the `DataFile` of the user's
    trajectories (see `_data_file`), opened and checked here, before anything compiles.
    """
    configuration = CONFIGURATIONS.make(run["configuration"], run)
    estimator = make_estimator(run["estimator"], run)
    takes = ESTIMATORS.takes(run["estimator"])  # the resolved config records its defaults
    chosen = {k: takes.get(k) if run.get(k) is None else run[k] for k in ("decay", "num_checkpoints")}
    check_choices_fit(run, configuration, estimator)  # one line in the CLI's words
    if run.get("data"):
        run = {**run, "data": absolute(run["data"])}
        problem = open_data_file(run, configuration, needs_stepper=configuration.needs_ref_stepper
                                 or configuration.needs_residuum_fn)
        stepper = problem.stepper_problem
        source = {"problem": stepper and stepper.name, "num_points": stepper and stepper.num_points,
                  "samples": problem.num_train, "horizon": problem.horizon,
                  "test_horizon": min(run["test_horizon"], problem.horizon),
                  "data_file": problem.description()}
    else:
        problem = make_problem(run["problem"], run.get("num_points"))
        source = {"num_points": problem.num_points}
    emulator_spec = dict(run["emulator"], num_spatial_dims=problem.num_spatial_dims, channels=problem.num_channels)
    emulator = EMULATORS.make(emulator_spec["kind"], emulator_spec)
    optimizer = OPTIMIZERS.make(run["optimizer"], run)
    resolved = {**run, **source, **chosen, "emulator": emulator_spec,
                "configuration_repr": repr(configuration), "estimator_repr": repr(estimator)}
    return problem, configuration, estimator, emulator, optimizer, resolved


class _StopOnSignal:
    """While active, SIGINT/SIGTERM ask the trainer to stop after its current chunk; a
    second signal falls back to the default behaviour (immediate KeyboardInterrupt)."""

    def __init__(self, trainer):
        self.trainer, self.received, self._old = trainer, None, {}

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        self.trainer.request_stop(f"interrupted by {self.received}")
        for sig, old in self._old.items():
            signal.signal(sig, old)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers, plain behaviour
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _publish(partial: str, output: str) -> None:
    """Move every file of the finished run from the staging folder into `output`."""
    for name in os.listdir(partial):
        os.replace(os.path.join(partial, name), os.path.join(output, name))
    shutil.rmtree(partial, ignore_errors=True)


def run_training(run: dict, *, output: str, progress: bool, resume: bool = False,
                 overwrite: bool = False, on_start=None):
    """Train and evaluate one run described by the plain dict `run`; write its files.

    `run` holds every setting; `output/config.json` records it with every default
    resolved, so a run is reproducible from that file alone. A folder holding an earlier
    run is refused unless `resume` (continue it: the options must be that run's, but
    for `RESUMABLE_OPTIONS`) or `overwrite` (replace its files).

    Returns:
        `(result, history)`: the dict written to `metrics.json` and the `TrainingHistory`.

    Raises:
        ValueError / TypeError: bad settings or paths (nothing written).
        RunDiverged: training diverged (`OUTPUT/diverged.npz` holds the last good state).
        RunInterrupted: SIGINT/SIGTERM; `OUTPUT/checkpoint.npz` holds the last completed
            step and `--resume` continues bit-identically.
        EvaluationInterrupted: Ctrl-C after training finished; the trained emulator,
            checkpoint and history are in `output`, the metrics are not.
    """
    output = check_output_folder(output)
    check_run_folder(output, resume=resume, overwrite=overwrite)
    problem, configuration, estimator, emulator, optimizer, resolved = resolve_run(run)
    if resume:
        check_resumed_options(output, resolved)
    partial = os.path.join(output, _PARTIAL)
    resume_from = None
    if resume:
        for candidate in (os.path.join(partial, CHECKPOINT), os.path.join(output, CHECKPOINT)):
            if os.path.exists(candidate):
                resume_from = candidate
                break
    original = resume_from  # errors name it, not the staged copy
    if resume_from is not None:  # read it now, so a bad file refuses the run early
        first_step = int(load_checkpoint(resume_from)["step"])
        staged_from = os.path.join(output, ".resume-" + CHECKPOINT)
        shutil.copyfile(resume_from, staged_from)
        resume_from = staged_from
    else:
        first_step = 0
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    try:
        streamed = run.get("stream") is not None
        if isinstance(problem, DataFile):
            train, test = problem.train(), problem.test(resolved["test_horizon"])
        else:
            # a stream stores nothing: one training trajectory is drawn only to keep the
            # test data of the seed the same as `train`'s
            train, test = _datasets(problem, 1 if streamed else run["samples"],
                                    run["test_samples"], run["horizon"], run["test_horizon"],
                                    run["seed"])
        if streamed:
            train = None
        ref_stepper = problem.ref_stepper if configuration.needs_ref_stepper else None
        residuum_fn = make_residuum_fn(problem.ref_stepper) if configuration.needs_residuum_fn else None
        checkpoint = os.path.join(partial, CHECKPOINT)
        callbacks = []
        if run.get("checkpoint_every"):
            callbacks.append(CheckpointCallback(checkpoint, every=run["checkpoint_every"]))
        trainer = _trainer(
            run, problem, configuration, train, optimizer=optimizer, num_training_steps=run["steps"],
            batch_size=run["batch_size"], ref_stepper=ref_stepper, residuum_fn=residuum_fn,
            estimator=estimator, callbacks=callbacks, progress_bar=progress,
            # the final state of the run (or, after a divergence, the last good one)
            checkpoint_path=checkpoint,
        )
        write_json(os.path.join(partial, "config.json"), resolved)
        start = time.perf_counter()
        with _StopOnSignal(trainer) as stopper:
            if on_start is not None:
                on_start()
            try:
                trained, history = trainer(emulator, key=run["seed"], resume_from=resume_from)
            except ValueError as err:
                if resume_from is None or resume_from not in str(err):
                    raise
                raise ValueError(str(err).replace(resume_from, original)) from None
            except TrainingDiverged as err:
                path = None
                if err.checkpoint:
                    path = os.path.join(output, DIVERGED)
                    os.replace(err.checkpoint, path)
                raise RunDiverged(str(err).replace(err.checkpoint or "\0", path or ""), path) from None
        train_seconds = time.perf_counter() - start
        if stopper.received is not None:
            write_json(os.path.join(partial, "history.json"), history.as_dict())
            _publish(partial, output)
            raise RunInterrupted(stopper.received, trainer.step, os.path.join(output, CHECKPOINT))
        save_emulator(os.path.join(partial, "emulator.npz"), trained)
        try:
            windows = test if train is None else train  # a stream's windows: test-data shaped
            window = jnp.asarray(windows[: min(run["batch_size"], windows.shape[0]),
                                         : configuration.num_time_levels])
            temp_bytes = compiled_temp_bytes(
                estimator, configuration, trained, window, ref_stepper=ref_stepper, residuum_fn=residuum_fn
            )
            metrics = _evaluate(trained, test, partial, label=run["estimator"])
            steps_run = len(history.loss) - first_step
            result = {
                "problem": resolved["problem"],
                "data": resolved.get("data"),
                "configuration": repr(configuration),
                "estimator": repr(estimator),
                "final_train_loss": float(np.mean(history.loss[-20:])),
                "train_seconds": train_seconds,
                "ms_per_step": 1e3 * train_seconds / max(steps_run, 1),
                "grad_temp_bytes": temp_bytes,
                "metrics": metrics,
            }
            plot_loss_history({run["estimator"]: history.loss}, os.path.join(partial, "loss.png"))
            write_json(os.path.join(partial, "metrics.json"), result)
            write_json(os.path.join(partial, "history.json"), history.as_dict())
        except KeyboardInterrupt:
            # what training produced is kept; the evaluation's files may be half written
            for name in set(os.listdir(partial)) - {"emulator.npz", CHECKPOINT, "config.json"}:
                os.unlink(os.path.join(partial, name))
            write_json(os.path.join(partial, "history.json"), history.as_dict())
            _publish(partial, output)
            raise EvaluationInterrupted(output) from None
        _publish(partial, output)
        return result, history
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        if resume_from is not None and os.path.exists(resume_from):
            os.unlink(resume_from)


def _evaluate(emulator, test, output: str, *, label: str) -> dict:
    apply, params = functional(emulator)
    metrics = evaluate_rollout(bind(apply, params), test)
    nrmse = np.asarray(metrics["nrmse"])
    plot_error_vs_step({label: nrmse}, os.path.join(output, "nrmse_vs_step.png"))
    if test.ndim == 4:  # one spatial axis: a space-time image of the first test sample
        pred = rollout(bind(apply, params), test[:1, 0], test.shape[1] - 1, include_init=True)
        plot_spacetime(np.asarray(test[0]), np.asarray(pred[0]), os.path.join(output, "spacetime.png"))
    with open(os.path.join(output, "nrmse_per_step.csv"), "w") as f:
        f.write("step,nrmse,correlation\n")
        for t, (e, c) in enumerate(zip(nrmse, np.asarray(metrics["correlation"])), start=1):
            f.write(f"{t},{e:.8g},{c:.8g}\n")
    return to_json_dict(metrics)


def _held_out(run: dict) -> DataFile:
    """The file of a file run with its held-out split, checked against config.json."""
    array = load_trajectories(run["data"], name="--data", check_finite=False)
    found = {"shape": list(array.shape), "dtype": str(array.dtype)}
    check_same_file(run.get("data_file") or {}, found, run["data"])
    return DataFile(path=run["data"], array=array, num_test=int(run["test_samples"]),
                    stepper_problem=None)


def evaluate_checkpoint(run_dir: str, *, output: str | None, problem_name: str | None, test_samples: int, test_horizon: int, seed: int) -> dict:
    """Evaluate the checkpoint of a `train` run folder on a problem's fresh test data
    (the run's problem, or `problem_name`), or, for a run on a file (`--data`) without
    `problem_name`, on that file's held-out trajectories (the run's split; `test_samples`
    and `seed` do not apply).

    Returns:
        The metrics plus what they come from: the problem and seed or the data file,
        samples, horizon, the checkpoint path and its step.
    """
    if not os.path.isdir(run_dir):
        raise ValueError(f"--run: expected the folder of a `train` run, got {run_dir!r}, "
                         "which is not a folder")
    config_path = os.path.join(run_dir, "config.json")
    checkpoint = os.path.join(run_dir, CHECKPOINT)
    for path in (config_path, checkpoint):
        if not os.path.exists(path):
            raise ValueError(f"--run: expected the folder of a `train` run, got {run_dir!r} "
                             f"without {os.path.basename(path)}")
    try:
        with open(config_path) as f:
            run = json.load(f)
        if run.get("data"):  # another problem is tested on the file's grid
            num_points = run["data_file"]["shape"][3]
        else:
            problem_name = problem_name or run["problem"]
            num_points = run.get("num_points")
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"--run: expected a train run's config, got {config_path!r} "
                         f"({err})") from None
    output = check_output_folder(output or os.path.join(run_dir, "evaluation"))
    emulator = load_emulator(checkpoint)
    step = int(load_checkpoint(checkpoint)["step"])
    if problem_name is None:  # a file run, tested on its held-out trajectories
        data = _held_out(run)
        test = data.test(min(test_horizon, data.horizon))
        source = {"data": run["data"], "test_samples": data.num_test}
    else:
        problem = make_problem(problem_name, num_points)
        test = problem.make_data(test_samples, test_horizon, jax.random.PRNGKey(seed))
        source = {"problem": problem_name, "seed": seed, "test_samples": test_samples}
    metrics = _evaluate(emulator, test, output, label=run.get("estimator", "emulator"))
    source = {**source, "test_horizon": int(test.shape[1]) - 1, "checkpoint": checkpoint,
              "checkpoint_step": step}
    metrics = {**source, **metrics}
    write_json(os.path.join(output, "metrics.json"), metrics)
    return metrics
