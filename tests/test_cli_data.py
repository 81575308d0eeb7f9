"""`online-emulate train --data FILE`: a user's trajectories through the command line give
what the same data gives through the Python API; bad files are named before compiling."""

import json

import jax
import numpy as np
import optax
import pytest

from online_emulate.cli import main
from online_emulate.cli import _run
from online_emulate.configuration import DivertedChainBranchOne, Supervised
from online_emulate.data import load_trajectories
from online_emulate.emulators import LinearStencil, functional, load_emulator
from online_emulate.sample_data import advection_1d_stepper, get_problem
from online_emulate.trainer import GeneralTrainer

DATA = np.asarray(get_problem("advection_1d", num_points=16).make_data(
    8, 12, jax.random.PRNGKey(0)))  # (8, 13, 1, 16)
SMALL = ["--test-samples", "2", "--emulator", "linear", "--rollout-steps", "2", "--steps", "30",
         "--batch-size", "4", "--learning-rate", "1e-2", "--no-progress"]


def _api_losses(data, configuration=None, **options):
    trainer = GeneralTrainer(configuration or Supervised(2), data, optimizer=optax.adam(1e-2),
                             num_training_steps=30, batch_size=4, progress_bar=False, **options)
    trained, history = trainer(LinearStencil(1, 1, 1, kernel_size=3, key=0), key=0)
    return trained, np.asarray(history.loss)


def _cli_losses(out):
    return np.asarray(json.loads((out / "history.json").read_text())["loss"], np.float32)


def _weights(model):
    return functional(model)[1]["conv"]["weight"]


def test_a_file_trains_as_the_same_data_through_the_python_api(tmp_path, capsys):
    np.save(tmp_path / "traj.npy", DATA)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "traj.npy"), *SMALL, "--output", str(out)]) == 0
    assert "on " + str(tmp_path / "traj.npy") in capsys.readouterr().out
    trained, losses = _api_losses(DATA[:6])  # the last 2 trajectories are held out
    np.testing.assert_array_equal(_cli_losses(out), losses)
    np.testing.assert_array_equal(_weights(load_emulator(out / "emulator.npz")), _weights(trained))
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == str(tmp_path / "traj.npy")
    assert config["data_file"] == {"shape": [8, 13, 1, 16], "dtype": "float32"}
    assert (config["samples"], config["horizon"], config["test_horizon"]) == (6, 12, 12)
    assert config["problem"] is None  # Supervised needs no reference stepper
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["metrics"]["nrmse"]) == 12


@pytest.mark.parametrize("save", ["npz", "npz-member", "compressed", "float64"])
def test_npz_archives_and_float64_give_the_same_run(tmp_path, save):
    path = tmp_path / "traj.npz"
    if save == "npz":
        np.savez(path, DATA)
    elif save == "npz-member":
        np.savez(path, train=DATA, other=DATA[:1])
        path = f"{path}:train"
    elif save == "compressed":
        np.savez_compressed(path, DATA)
    else:
        path = tmp_path / "traj.npy"
        np.save(path, DATA.astype(np.float64))
    out = tmp_path / "run"
    assert main(["train", "--data", str(path), *SMALL, "--output", str(out)]) == 0
    np.testing.assert_array_equal(_cli_losses(out), _api_losses(DATA[:6])[1])


def test_a_configuration_with_a_stepper_takes_it_from_problem_on_the_files_grid(tmp_path):
    np.save(tmp_path / "traj.npy", DATA)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "traj.npy"), *SMALL, "--problem", "advection_1d",
            "--configuration", "diverted-chain-branch-one", "--output", str(out)]
    assert main(argv) == 0
    stepper = advection_1d_stepper(16, cfl=get_problem("advection_1d").params["cfl"])
    _, losses = _api_losses(DATA[:6], DivertedChainBranchOne(2), ref_stepper=stepper)
    np.testing.assert_allclose(_cli_losses(out), losses, rtol=1e-6)
    config = json.loads((out / "config.json").read_text())
    assert (config["problem"], config["num_points"]) == ("advection_1d", 16)


def test_evaluate_uses_the_held_out_trajectories(tmp_path):
    np.save(tmp_path / "traj.npy", DATA)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "traj.npy"), *SMALL, "--output", str(out)]) == 0
    assert main(["evaluate", "--run", str(out)]) == 0
    trained = json.loads((out / "metrics.json").read_text())["metrics"]
    again = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert again["data"] == str(tmp_path / "traj.npy") and again["test_samples"] == 2
    np.testing.assert_allclose(again["nrmse"], trained["nrmse"], rtol=1e-6)


def test_resume_continues_on_the_same_file_and_refuses_another(tmp_path, capsys):
    path = tmp_path / "traj.npy"
    np.save(path, DATA)
    out = tmp_path / "run"
    first = list(SMALL)
    first[first.index("--steps") + 1] = "20"
    assert main(["train", "--data", str(path), *first, "--output", str(out)]) == 0
    assert main(["train", "--data", str(path), *SMALL, "--output", str(out), "--resume"]) == 0
    np.testing.assert_array_equal(_cli_losses(out), _api_losses(DATA[:6])[1])
    assert main(["train", "--data", str(path), *SMALL, "--test-samples", "3", "--output", str(out),
                 "--resume"]) == 2
    assert "--test-samples 3 (the run: 2)" in capsys.readouterr().err
    np.save(path, DATA[:, :12])
    assert main(["train", "--data", str(path), *SMALL, "--output", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--data: expected the trajectories the run was trained on" in err
    assert "(8, 13, 1, 16)" in err and "(8, 12, 1, 16)" in err


def _refuse(tmp_path, capsys, monkeypatch, array_or_writer, *extra):
    """Run `train --data` on a bad file; every refusal comes before a trainer exists."""
    def no_trainer(*args, **kwargs):
        raise AssertionError("a trainer was built")

    monkeypatch.setattr(_run, "GeneralTrainer", no_trainer)
    path = tmp_path / "bad.npy"
    if callable(array_or_writer):
        path = array_or_writer(tmp_path)
    else:
        np.save(path, array_or_writer)
    assert main(["train", "--data", str(path), *SMALL, *extra,
                 "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    return err


def _with_nan(a):
    a = a.copy()
    a[3, 5, 0, 7] = np.nan
    return a


@pytest.mark.parametrize("bad, extra, needle", [
    (DATA[:, :, 0], (), "--data: expected trajectories (samples, time, C, *N) with a channel "
                        "axis, got shape (8, 13, 16): the channel axis is missing"),
    (np.moveaxis(DATA, 2, -1), (), "channel axis stored last"),
    (DATA[..., None, None, None], (), "1 to 3 spatial axes"),
    (DATA.astype(np.complex64), (), "--data: expected real numbers (float or integer), got "
                                    "dtype complex64"),
    (DATA > 0, (), "got dtype bool"),
    (_with_nan(DATA), (), "--data: expected finite values, got NaN/inf at sample 3, time level 5"),
    (DATA[:, :1], (), "--data: expected trajectories of at least 3 time levels"),
    (DATA, ("--rollout-steps", "20"), "--data: expected trajectories of at least 21 time levels "
                                      "(the window of --configuration supervised"),
    (np.moveaxis(DATA, 1, -1), (), "the time axis may be last"),
    (DATA, ("--test-samples", "8"), "--test-samples: expected an int in [1, 7] (the last "
                                    "trajectories of --data are held out"),
    (np.concatenate([DATA, DATA], axis=2), ("--configuration", "diverted-chain-branch-one",
                                            "--problem", "advection_1d"),
     "--problem: expected a problem whose states have the shape (C, *N) = (2, 16)"),
])
def test_bad_files_are_named_before_anything_compiles(tmp_path, capsys, monkeypatch, bad, extra,
                                                      needle):
    assert needle in _refuse(tmp_path, capsys, monkeypatch, bad, *extra)


def _objects(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"u": 1}] * 4, dtype=object).reshape(1, 2, 1, 2), allow_pickle=True)
    return path


def _two_arrays(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=DATA, b=DATA)
    return path


def _text(tmp_path):
    path = tmp_path / "traj.csv"
    path.write_text("1,2\n")
    return path


def _broken(tmp_path):
    path = tmp_path / "broken.npy"
    path.write_bytes(b"not an array")
    return path


@pytest.mark.parametrize("writer, needle", [
    (_objects, "--data: expected an array of real numbers, got an object array"),
    (_two_arrays, "--data: expected a .npz holding one array, or FILE.npz:NAME naming one, got"),
    (_text, "--data: expected a .npy or .npz file"),
    (_broken, "--data: expected a .npy file numpy can read"),
    (lambda tmp_path: tmp_path / "missing.npy", "--data: expected an existing .npy or .npz file"),
])
def test_unreadable_files_are_named(tmp_path, capsys, monkeypatch, writer, needle):
    assert needle in _refuse(tmp_path, capsys, monkeypatch, writer)


def test_load_trajectories_maps_the_file(tmp_path):
    np.save(tmp_path / "a.npy", DATA)
    np.savez(tmp_path / "b.npz", DATA)
    np.savez(tmp_path / "f.npz", np.asfortranarray(DATA))
    for name in ("a.npy", "b.npz", "f.npz"):
        array = load_trajectories(tmp_path / name)
        assert isinstance(array, np.memmap) and not array.flags.writeable
        np.testing.assert_array_equal(array, DATA)
    with pytest.raises(TypeError, match="path: expected a path"):
        load_trajectories(DATA)
    np.save(tmp_path / "nan.npy", _with_nan(DATA))
    assert load_trajectories(tmp_path / "nan.npy", check_finite=False).shape == DATA.shape


def test_a_2d_file_builds_a_2d_emulator(tmp_path):
    data = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, 4, 2, 6, 6)))
    np.save(tmp_path / "traj.npy", data)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "traj.npy"), *SMALL, "--steps", "5",
            "--output", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["emulator"]["num_spatial_dims"], config["emulator"]["channels"]) == (2, 2)
