"""`online-emulate stream`: StreamTrainer on a built-in problem through the command line,
with the files, checkpoints and resume of `train`."""

import json

import numpy as np
import pytest

from online_emulate.cli import main
from online_emulate.trainer import load_checkpoint

SMALL = [
    "--problem", "advection_1d", "--num-points", "16", "--horizon", "12",
    "--test-samples", "2", "--test-horizon", "20", "--emulator", "linear", "--rollout-steps", "2",
    "--steps", "30", "--batch-size", "4", "--no-progress", "--learning-rate", "1e-2",
    "--buffer-size", "32", "--streams", "3",
]


def test_stream_writes_the_files_of_train(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["stream", *SMALL, "--output", str(out)]) == 0
    assert "streamed from the solver" in capsys.readouterr().out
    for name in ("config.json", "checkpoint.npz", "emulator.npz", "metrics.json",
                 "history.json", "loss.png", "nrmse_vs_step.png", "nrmse_per_step.csv"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["stream"] == {
        "buffer_size": 32, "num_streams": 3, "stream_length": 12, "solver_steps_per_step": 1,
        "sampling": "fifo", "solver_in_the_loop": 0, "solver_in_the_loop_horizon": 1}
    assert len(load_checkpoint(out / "checkpoint.npz")["buffer"][0]) == 32


@pytest.mark.slow  # three command-line runs
def test_stream_resumes_exactly(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["stream", *SMALL, "--output", str(straight)]) == 0
    first = list(SMALL)
    first[first.index("--steps") + 1] = "20"
    assert main(["stream", *first, "--checkpoint-every", "7", "--output", str(split)]) == 0
    assert main(["stream", *SMALL, "--checkpoint-every", "7", "--output", str(split),
                 "--resume"]) == 0
    a, b = load_checkpoint(straight / "checkpoint.npz"), load_checkpoint(split / "checkpoint.npz")
    assert a["step"] == b["step"] == 30
    np.testing.assert_array_equal(a["params"]["conv"]["weight"], b["params"]["conv"]["weight"])
    np.testing.assert_array_equal(a["buffer"][0], b["buffer"][0])
    history = json.loads((split / "history.json").read_text())
    assert history["loss"] == json.loads((straight / "history.json").read_text())["loss"]


@pytest.mark.parametrize("argv, needle", [
    (["--sampling", "lifo"], "--sampling"),
    (["--buffer-size", "0"], "--buffer-size"),
])
def test_bad_stream_options_exit_with_code_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        main(["stream", *argv])
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


def test_bad_stream_combination_is_one_line(tmp_path, capsys):
    assert main(["stream", *SMALL, "--solver-in-the-loop", "9", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "solver_in_the_loop" in err and "Traceback" not in err
