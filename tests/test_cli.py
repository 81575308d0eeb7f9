import json
import subprocess
import sys

import pytest

from online_emulate.cli import main

SMALL = [
    "--problem", "advection_1d", "--num-points", "16", "--samples", "4", "--horizon", "12",
    "--test-samples", "2", "--test-horizon", "20", "--emulator", "linear", "--rollout-steps", "2",
    "--steps", "30", "--batch-size", "4", "--no-progress", "--learning-rate", "1e-2",
]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["train", "--steps", "0"], "--steps"),
        (["train", "--estimator", "magic"], "--estimator"),
        (["train", "--learning-rate", "-1"], "--learning-rate"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_options_give_one_line_and_exit_code_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_invalid_combination_is_reported_without_traceback(tmp_path, capsys):
    code = main(["train", *SMALL, "--estimator", "d_rtrl", "--configuration", "diverted-chain", "--branch-steps", "2", "--output", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_help_lists_every_option():
    out = subprocess.run([sys.executable, "-m", "online_emulate", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--problem", "--configuration", "--estimator", "--optimizer", "--steps", "--batch-size", "--seed", "--output", "--resume"):
        assert option in out.stdout


def test_train_evaluate_and_resume_write_their_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--output", str(out)]) == 0
    for name in ("config.json", "checkpoint.pkl", "metrics.json", "history.json", "loss.png", "nrmse_vs_step.png", "spacetime.png", "nrmse_per_step.csv"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["estimator"] == "bptt" and config["steps"] == 30 and config["emulator"]["kind"] == "linear"
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["metrics"]["nrmse"]) == 20
    assert "test nRMSE@1" in capsys.readouterr().out

    # --resume continues from the checkpoint up to the new total
    more = [a if a != "30" else "50" for a in SMALL]  # same run, 50 steps in total
    assert main(["train", *more, "--output", str(out), "--resume"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 50

    assert main(["evaluate", "--run", str(out), "--test-samples", "2", "--test-horizon", "15"]) == 0
    evaluation = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert len(evaluation["nrmse"]) == 15
    assert main(["evaluate", "--run", str(tmp_path / "missing")]) == 2
