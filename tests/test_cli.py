import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from online_emulate.cli import main
from online_emulate.trainer import load_checkpoint

SMALL = [
    "--problem", "advection_1d", "--num-points", "16", "--samples", "4", "--horizon", "12",
    "--test-samples", "2", "--test-horizon", "20", "--emulator", "linear", "--rollout-steps", "2",
    "--steps", "30", "--batch-size", "4", "--no-progress", "--learning-rate", "1e-2",
]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _with(argv, option, value):
    argv = list(argv)
    argv[argv.index(option) + 1] = value
    return argv


def _one_line_error(capsys, needle):
    err = capsys.readouterr().err
    assert needle in err, err
    assert "Traceback" not in err
    return err


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if (folder / name).is_file()}


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["train", "--steps", "0"], "--steps"),
        (["train", "--estimator", "magic"], "--estimator"),
        (["train", "--learning-rate", "-1"], "--learning-rate"),
        (["train", "--decay", "1.5"], "--decay"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_options_give_one_line_and_exit_code_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = _one_line_error(capsys, needle)
    assert len(err.strip().splitlines()) == 1


def test_invalid_combination_is_reported_without_traceback(tmp_path, capsys):
    code = main(["train", *SMALL, "--estimator", "d_rtrl", "--configuration", "diverted-chain", "--branch-steps", "2", "--output", str(tmp_path)])
    assert code == 2
    _one_line_error(capsys, "error")
    assert main(["train", *SMALL, "--decay", "0.5", "--output", str(tmp_path)]) == 2
    _one_line_error(capsys, "--decay: expected no decay unless --estimator es_d_rtrl")


@pytest.mark.slow  # a binomial-checkpointed training run through the CLI
def test_bptt_binomial_trains_with_its_checkpoint_count(tmp_path, capsys):
    assert main(["train", *SMALL, "--num-checkpoints", "4", "--output", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "--num-checkpoints: expected no checkpoint count unless --estimator bptt-binomial")
    argv = _with(_with(SMALL, "--steps", "3"), "--test-horizon", "3")
    for given, expected in ((["--num-checkpoints", "3"], 3), ([], 16)):
        out = tmp_path / f"binomial{expected}"
        assert main(["train", *argv, "--estimator", "bptt-binomial", *given,
                     "--output", str(out)]) == 0
        config = json.loads((out / "config.json").read_text())
        assert config["num_checkpoints"] == expected
        assert config["estimator_repr"] == (
            f"BPTT(checkpoint='binomial', num_checkpoints={expected})")


def test_help_lists_every_option():
    out = subprocess.run([sys.executable, "-m", "online_emulate", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--problem", "--configuration", "--estimator", "--optimizer", "--steps", "--batch-size", "--seed", "--output", "--resume"):
        assert option in out.stdout


def test_train_evaluate_and_resume_write_their_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--output", str(out)]) == 0
    for name in ("config.json", "checkpoint.npz", "emulator.npz", "metrics.json", "history.json", "loss.png", "nrmse_vs_step.png", "spacetime.png", "nrmse_per_step.csv"):
        assert (out / name).exists(), name
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no staging or temp files
    config = json.loads((out / "config.json").read_text())
    assert config["estimator"] == "bptt" and config["steps"] == 30 and config["emulator"]["kind"] == "linear"
    assert None not in (config["num_points"], config["emulator"]["num_spatial_dims"])
    assert config["num_points"] == 16
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["metrics"]["nrmse"]) == 20
    assert "test nRMSE@1" in capsys.readouterr().out

    assert main(["evaluate", "--run", str(out), "--test-samples", "2", "--test-horizon", "15", "--seed", "7"]) == 0
    printed = capsys.readouterr().out
    for needle in ("advection_1d", "seed 7", "2 samples", "checkpoint step 30"):
        assert needle in printed
    evaluation = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert len(evaluation["nrmse"]) == 15
    assert (evaluation["problem"], evaluation["seed"], evaluation["test_samples"], evaluation["checkpoint_step"]) == ("advection_1d", 7, 2, 30)
    assert main(["evaluate", "--run", str(tmp_path / "missing")]) == 2


@pytest.mark.slow
def test_resume_after_checkpoint_every_equals_an_uninterrupted_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", *SMALL, "--output", str(straight)]) == 0
    first = _with(SMALL, "--steps", "20")
    assert main(["train", *first, "--checkpoint-every", "7", "--output", str(split)]) == 0
    assert load_checkpoint(split / "checkpoint.npz")["step"] == 20
    assert main(["train", *SMALL, "--checkpoint-every", "7", "--output", str(split), "--resume"]) == 0
    a, b = load_checkpoint(straight / "checkpoint.npz"), load_checkpoint(split / "checkpoint.npz")
    assert a["step"] == b["step"] == 30
    np.testing.assert_array_equal(a["params"]["conv"]["weight"], b["params"]["conv"]["weight"])
    history = json.loads((split / "history.json").read_text())
    assert history["loss"] == json.loads((straight / "history.json").read_text())["loss"]
    assert not (split / "history.json.tmp").exists()


@pytest.mark.slow
def test_es_d_rtrl_default_decay_is_resolved(tmp_path):
    out = tmp_path / "es"
    argv = _with(_with(SMALL, "--steps", "3"), "--test-horizon", "3")
    assert main(["train", *argv, "--estimator", "es_d_rtrl", "--output", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["decay"] == 0.9


@pytest.mark.slow
def test_bench_runs(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--rollout-lengths", "2", "--batch-size", "2", "--num-points", "16", "--hidden-channels", "2", "--output", str(out)]) == 0
    rows = json.loads((out / "bench.json").read_text())
    assert {r["estimator"] for r in rows} >= {"BPTT()", "ETrace('es_d_rtrl', decay=0.9)"}
    assert "cosine" in capsys.readouterr().out


def test_path_problems_are_one_line_errors(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["train", *SMALL, "--output", str(afile)]) == 2
    _one_line_error(capsys, "expected a folder, got the file")
    assert main(["train", *SMALL, "--output", str(afile / "sub")]) == 2
    _one_line_error(capsys, "expected a folder that can be created")
    assert main(["bench", "--output", str(afile)]) == 2
    _one_line_error(capsys, "--output")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make the write probe fail instead
        import online_emulate.cli._run as run_module

        def refuse(*a, **k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(run_module.tempfile, "mkstemp", refuse)
    else:
        readonly.chmod(0o500)
    assert main(["train", *SMALL, "--output", str(readonly)]) == 2
    _one_line_error(capsys, "expected a writable folder")


@pytest.mark.slow
def test_failed_or_refused_runs_keep_the_previous_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--output", str(out)]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    # refused: resuming with another architecture
    assert main(["train", *SMALL, "--emulator", "convnet", "--output", str(out), "--resume"]) == 2
    _one_line_error(capsys, "checkpoint")
    assert _snapshot(out) == before
    # failed: divergence prints the message and the state's path, exit 3, no traceback
    diverging = _with(_with(SMALL, "--learning-rate", "1e30"), "--rollout-steps", "10")
    assert main(["train", *diverging, "--optimizer", "sgd", "--output", str(out), "--overwrite"]) == 3
    err = _one_line_error(capsys, "training diverged")
    assert str(out / "diverged.npz") in err
    after = _snapshot(out)
    assert after.pop("diverged.npz") and after == before
    state = load_checkpoint(out / "diverged.npz")
    assert np.isfinite(state["params"]["conv"]["weight"]).all()


def test_evaluate_never_runs_a_pickled_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *_with(SMALL, "--steps", "2"), "--output", str(out)]) == 0
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (out / "checkpoint.npz").write_bytes(pickle.dumps(Payload()))
    assert main(["evaluate", "--run", str(out)]) == 2
    _one_line_error(capsys, "checkpoint.npz")
    assert not marker.exists()


def _train_command(out, steps):
    return [sys.executable, "-m", "online_emulate", "train", *_with(SMALL, "--steps", str(steps)),
            "--output", str(out)]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_writes_a_checkpoint_and_resume_is_bit_identical(tmp_path, sig):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # enough steps that training (about 0.3 ms a step here) still runs when the signal
    # arrives; 1,500 steps ended before it and the signal met the evaluation instead
    steps = 30000
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(_train_command(out, steps), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()  # printed once the handlers are installed
    assert line.startswith("training"), line
    time.sleep(0.5)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "resume with: online-emulate train" in stderr
    step = load_checkpoint(out / "checkpoint.npz")["step"]
    assert 0 < step < steps
    resumed = subprocess.run(_train_command(out, steps) + ["--resume"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"
    assert subprocess.run(_train_command(straight, steps), capture_output=True, text=True, env=env).returncode == 0
    a, b = load_checkpoint(out / "checkpoint.npz"), load_checkpoint(straight / "checkpoint.npz")
    assert a["step"] == b["step"] == steps
    np.testing.assert_array_equal(a["params"]["conv"]["weight"], b["params"]["conv"]["weight"])
    np.testing.assert_array_equal(a["loss"], b["loss"])


def test_ctrl_c_during_evaluation_keeps_the_trained_emulator(tmp_path, capsys, monkeypatch):
    import online_emulate.cli._run as run_module
    from online_emulate.emulators import load_emulator

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_evaluate", interrupted)
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--output", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted during evaluation" in err and "Traceback" not in err
    assert f"evaluate with: online-emulate evaluate --run {out}" in err
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.json", "emulator.npz", "history.json"]
    assert load_checkpoint(out / "checkpoint.npz")["step"] == 30
    assert load_emulator(out / "emulator.npz") is not None
    monkeypatch.undo()
    assert main(["evaluate", "--run", str(out), "--test-samples", "2", "--test-horizon", "5"]) == 0
