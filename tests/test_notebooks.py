"""The research notebooks in notebooks/ are committed without outputs.

Running them top to bottom is done by nbmake (`--nbmake` in pyproject's addopts,
`notebooks` in testpaths): every notebook runs in its quick setting
(ONLINE_EMULATE_NOTEBOOK_QUICK defaults to "1"). This file checks what nbmake does not:
that no stale outputs or execution counts are committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = [
    "01_quickstart.ipynb",
    "02_configuration_showcase.ipynb",
    "03_online_vs_bptt.ipynb",
    "04_streaming_long_rollout.ipynb",
    "05_kfac_vs_adam.ipynb",
    "06_online_own_model.ipynb",
    "07_stream_vs_dataset.ipynb",
]


def test_expected_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    stale = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not stale, f"{path.name}: code cells {stale} carry outputs or execution counts; clear them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_quick_knob_and_explanations(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    sources = ["".join(cell["source"]) for cell in nb["cells"]]
    code = "\n".join(s for s, c in zip(sources, nb["cells"]) if c["cell_type"] == "code")
    assert 'os.environ.get("ONLINE_EMULATE_NOTEBOOK_QUICK", "1")' in code
    assert sum(c["cell_type"] == "markdown" for c in nb["cells"]) >= 3
    assert "%matplotlib" not in code
