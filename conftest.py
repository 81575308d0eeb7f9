"""Repository-wide pytest hooks."""

from __future__ import annotations

from pathlib import Path

import pytest

_NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


def pytest_collection_modifyitems(config, items):
    # nbmake's notebook items cannot carry decorators; every notebook runs for minutes,
    # so all of them belong to the slow set.
    for item in items:
        if Path(str(item.path)).resolve().is_relative_to(_NOTEBOOKS):
            item.add_marker(pytest.mark.slow)
