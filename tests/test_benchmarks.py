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
    # one row per library, then the ratio line; both pipelines reach APEBench's metric
    assert [r.split("|")[2].strip() for r in rows[:2]] == ["apebench", "online_emulate"]
    errors = [float(r.split("|")[-1]) for r in rows[:2]]
    assert all(e > 0 for e in errors)
    # same data, same initial weights, same schedule: after 3 steps the test errors agree
    assert errors[0] == pytest.approx(errors[1], rel=0.05)
