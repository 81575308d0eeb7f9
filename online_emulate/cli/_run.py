"""One training run of the command line: data, training, evaluation, files."""

from __future__ import annotations

import json
import os
import time
import types

import jax
import numpy as np

from ..emulators import functional
from ..estimators import compiled_temp_bytes
from ..metrics import evaluate_rollout, rollout, to_json_dict
from ..plot import plot_error_vs_step, plot_loss_history, plot_spacetime
from ..trainer import GeneralTrainer, load_checkpoint
from ..callback import CheckpointCallback
from ._factories import (
    make_configuration,
    make_emulator,
    make_estimator,
    make_optimizer,
    make_problem,
    make_residuum_fn,
)

__all__ = ["run_training", "evaluate_checkpoint", "write_json"]


def write_json(path: str, payload) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _datasets(problem, samples: int, test_samples: int, horizon: int, test_horizon: int, seed: int):
    key_train, key_test = jax.random.split(jax.random.PRNGKey(seed))
    train = problem.make_data(samples, horizon, key_train)
    test = problem.make_data(test_samples, test_horizon, key_test)
    return train, test


def run_training(run: dict, *, output: str, progress: bool, resume: bool = False):
    """Train and evaluate one run described by the plain dict `run`; write its files.

    `run` holds every setting (it is written to `output/config.json` as given), so a run
    is reproducible from that file alone.

    Returns:
        `(result, history)`: the dict written to `metrics.json` and the `TrainingHistory`.
    """
    os.makedirs(output, exist_ok=True)
    problem = make_problem(run["problem"], run.get("num_points"))
    configuration = make_configuration(run["configuration"], types.SimpleNamespace(**run))
    estimator = make_estimator(run["estimator"], truncation=run["truncation"], decay=run.get("decay"))
    emulator_spec = dict(run["emulator"], num_spatial_dims=problem.num_spatial_dims, channels=problem.num_channels)
    emulator = make_emulator(emulator_spec)
    optimizer = make_optimizer(run["optimizer"], run["learning_rate"])
    train, test = _datasets(problem, run["samples"], run["test_samples"], run["horizon"], run["test_horizon"], run["seed"])
    ref_stepper = problem.ref_stepper if configuration.needs_ref_stepper else None
    residuum_fn = make_residuum_fn(problem.ref_stepper) if configuration.needs_residuum_fn else None
    checkpoint = os.path.join(output, "checkpoint.pkl")
    callbacks = []
    if run.get("checkpoint_every"):
        callbacks.append(CheckpointCallback(checkpoint, every=run["checkpoint_every"]))
    trainer = GeneralTrainer(
        configuration, train, optimizer=optimizer, num_training_steps=run["steps"],
        batch_size=run["batch_size"], ref_stepper=ref_stepper, residuum_fn=residuum_fn,
        estimator=estimator, callbacks=callbacks, progress_bar=progress,
        checkpoint_path=checkpoint,
    )
    write_json(os.path.join(output, "config.json"), {**run, "emulator": emulator_spec})
    start = time.perf_counter()
    resume_from = checkpoint if resume and os.path.exists(checkpoint) else None
    first_step = int(load_checkpoint(resume_from)["step"]) if resume_from else 0
    trained, history = trainer(emulator, key=run["seed"], resume_from=resume_from)
    train_seconds = time.perf_counter() - start
    trainer.save_checkpoint(checkpoint)

    window = train[: min(run["batch_size"], train.shape[0]), : configuration.num_time_levels]
    temp_bytes = compiled_temp_bytes(
        estimator, configuration, trained, window, ref_stepper=ref_stepper, residuum_fn=residuum_fn
    )
    metrics = _evaluate(trained, test, output, label=run["estimator"])
    steps_run = len(history.loss) - first_step
    result = {
        "problem": run["problem"],
        "configuration": repr(configuration),
        "estimator": repr(estimator),
        "final_train_loss": float(np.mean(history.loss[-20:])),
        "train_seconds": train_seconds,
        "ms_per_step": 1e3 * train_seconds / max(steps_run, 1),
        "grad_temp_bytes": temp_bytes,
        "metrics": metrics,
    }
    plot_loss_history({run["estimator"]: history.loss}, os.path.join(output, "loss.png"))
    write_json(os.path.join(output, "metrics.json"), to_json_dict(result))
    write_json(os.path.join(output, "history.json"), history.as_dict())
    return result, history


def _evaluate(emulator, test, output: str, *, label: str) -> dict:
    apply, params = functional(emulator)
    metrics = evaluate_rollout(lambda u: apply(params, u), test)
    nrmse = np.asarray(metrics["nrmse"])
    plot_error_vs_step({label: nrmse}, os.path.join(output, "nrmse_vs_step.png"))
    if test.ndim == 4:  # one spatial axis: a space-time image of the first test sample
        pred = rollout(lambda u: apply(params, u), test[:1, 0], test.shape[1] - 1, include_init=True)
        plot_spacetime(np.asarray(test[0]), np.asarray(pred[0]), os.path.join(output, "spacetime.png"))
    with open(os.path.join(output, "nrmse_per_step.csv"), "w") as f:
        f.write("step,nrmse,correlation\n")
        for t, (e, c) in enumerate(zip(nrmse, np.asarray(metrics["correlation"])), start=1):
            f.write(f"{t},{e:.8g},{c:.8g}\n")
    return to_json_dict(metrics)


def evaluate_checkpoint(run_dir: str, *, output: str | None, problem_name: str | None, test_samples: int, test_horizon: int, seed: int) -> dict:
    """Evaluate the checkpoint of a `train` run folder on a problem's fresh test data."""
    config_path = os.path.join(run_dir, "config.json")
    checkpoint = os.path.join(run_dir, "checkpoint.pkl")
    for path in (config_path, checkpoint):
        if not os.path.exists(path):
            raise ValueError(f"--run: {run_dir!r} has no {os.path.basename(path)} (expected the folder of a `train` run)")
    with open(config_path) as f:
        run = json.load(f)
    problem = make_problem(problem_name or run["problem"], run.get("num_points"))
    emulator = make_emulator(run["emulator"])
    blob = load_checkpoint(checkpoint)
    from ..emulators import set_params

    set_params(emulator, jax.tree_util.tree_map(np.asarray, blob["params"]))
    test = problem.make_data(test_samples, test_horizon, jax.random.PRNGKey(seed))
    output = output or os.path.join(run_dir, "evaluation")
    os.makedirs(output, exist_ok=True)
    metrics = _evaluate(emulator, test, output, label=run["estimator"])
    write_json(os.path.join(output, "metrics.json"), metrics)
    return metrics

