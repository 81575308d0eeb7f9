"""Smoke tests of the benchmark scripts (they assert no times: the scripts print ratios)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_vs_apebench_quick_runs_both_pipelines_and_ends_with_the_ratio():
    pytest.importorskip("trainax")
    pytest.importorskip("pdequinox")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vs_apebench.py"), "--quick", "--steps", "3",
         "--steps-2d", "2", "--steady-steps", "2", "--rollouts", "1", "--scenarios", "burgers_1d"],
        capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"speedup_vs_apebench=\d+\.\d+", lines[-1])
    rows = [line for line in lines if line.startswith("burgers_1d |  1 | ")]
    # one row per library, then the ratio lines; all pipelines reach APEBench's metric
    assert [r.split("|")[2].strip() for r in rows[:3]] == [
        "apebench", "online_emulate", "ours, built-in"]
    errors = [float(r.split("|")[-1]) for r in rows[:3]]
    assert all(e > 0 for e in errors)
    # same data, same initial weights, same schedule: after 3 steps the test errors agree
    assert errors[0] == pytest.approx(errors[1], rel=0.05)
    # the built-in twin holds the pdequinox net's weights: the same function, trained alike
    assert errors[2] == pytest.approx(errors[1], rel=1e-3)
    assert re.fullmatch(r"user_model_vs_builtin=\d+\.\d+", lines[-2])
    # the roofline table: every program counted by XLA, with a fraction of its bound (the
    # quick net is so small that it may print as 0.0%; above 100% is possible: XLA's bytes
    # count cache traffic, the bandwidth probe DRAM); without --breakdown the plain step
    # is untimed: its row shows the counts and no fraction
    roof = [r for r in rows if r.endswith("%")]
    assert [r.split("|")[2].strip() for r in roof] == [
        "apebench", "online_emulate", "ours, built-in"]
    for r in roof:
        assert float(r.split("|")[5]) > 0  # MB per step
        assert float(r.split("|")[-2].strip().rstrip("%")) >= 0


@pytest.mark.slow
def test_streaming_study_runs_every_arm_and_ends_with_the_ratio():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    arms = ["dataset", "stream", "stream-bptt", "online-tbptt", "online-etrace"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "streaming_vs_dataset.py"), "--problems",
         "burgers_1d", "--seeds", "0", "--steps", "4", "--hidden-channels", "4", "--depth", "1",
         "--samples", "3", "--horizon", "8", "--buffer", "16", "--batch", "2", "--reanchor", "3",
         "--online-length", "10", "--online-update", "2", "--test-samples", "2",
         "--test-horizon", "12", "--arms", *arms],
        capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"stream_vs_dataset=\d+\.\d+", lines[-1])
    rows = {line.split()[0]: line.split() for line in lines[2:-1]}
    assert sorted(rows) == sorted(arms)
    # columns from the end: div, wall s, updates, nRMSE@200 (+- spread), gmean100 (+- spread)
    for name, row in rows.items():
        assert row[-3] == "4" and row[-1] in ("0", "1"), row
        assert 0 < float(row[-9]) < 1e3, row


@pytest.mark.slow
def test_quickstart_breakdown_times_every_phase_of_the_readme_quickstart():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quickstart_breakdown.py"), "--quick",
         "--steps", "5", "--programs"],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("|")[0].strip(): line for line in done.stdout.splitlines() if "|" in line}
    for phase in ("import jax, optax", "import online_emulate", "data", "emulator",
                  "trainer r=1", "trainer r=5", "trainer r=20", "all (in the process)"):
        assert phase in rows, done.stdout
    # every trainer compiles its chunk once (the program list names it)
    assert done.stdout.count("jit(chunk)") == 3, done.stdout
