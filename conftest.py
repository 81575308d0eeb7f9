"""Repository-wide pytest hooks."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent
_NOTEBOOKS = _ROOT / "notebooks"


def _missing_test_requirements() -> list[str]:
    project = tomllib.loads((_ROOT / "pyproject.toml").read_text())["project"]
    missing = []
    for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def pytest_sessionstart(session):
    # Tests importorskip optional packages (kfac-jax, trainax, ...) so that a user without
    # the extra can still run the rest; in the suite's own environment a missing one must
    # not turn into silent skips.
    missing = _missing_test_requirements()
    if missing:
        pytest.exit(f"test extra: expected {missing} installed (pip install -e \".[test]\")",
                    returncode=4)


def pytest_collection_modifyitems(config, items):
    # nbmake's notebook items cannot carry decorators; every notebook runs for minutes,
    # so all of them belong to the slow set.
    for item in items:
        if Path(str(item.path)).resolve().is_relative_to(_NOTEBOOKS):
            item.add_marker(pytest.mark.slow)
