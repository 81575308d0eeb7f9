"""Every ```python block of README.md runs, in order, in one namespace.

Reduced sizes: the README shows the real sizes, and `REPLACEMENTS` (README text -> what
runs here) keeps the test quick and skips a line that needs a cluster, without a
comment in the README a reader would have to skip. Each key must occur in the README
(a stale entry fails). A line ending in `# README test: CODE` also runs as CODE (same
indentation). Nothing else in a block is changed.
"""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "# README test:"
REPLACEMENTS = {
    # the quickstart's three 1000-step runs: 20 steps each, no progress bar
    "num_training_steps=1000, batch_size=32)":
        "num_training_steps=20, batch_size=32, progress_bar=False)",
    # a cluster's runtime: nothing to connect to here
    "jax.distributed.initialize()\n": "pass\n",
}


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def for_test(block: str) -> str:
    for text, replacement in REPLACEMENTS.items():
        block = block.replace(text, replacement)
    lines = []
    for line in block.splitlines():
        if MARK in line:
            indent = line[: len(line) - len(line.lstrip())]
            line = indent + line.split(MARK, 1)[1].strip()
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_helpers():
    text = "x\n```python\na = 1  # README test: a = 2\n```\n```bash\nb\n```\n```python\n  c = 3\n```\n"
    blocks = python_blocks(text)
    assert blocks == ["a = 1  # README test: a = 2\n", "  c = 3\n"]
    assert for_test(blocks[0]) == "a = 2\n"


def test_every_replacement_is_in_the_readme():
    with open(os.path.join(REPO, "README.md")) as f:
        blocks = "".join(python_blocks(f.read()))
    for text in REPLACEMENTS:
        assert blocks.count(text) == 1, f"REPLACEMENTS key {text!r} is not once in README.md's code"


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs(tmp_path):
    with open(os.path.join(REPO, "README.md")) as f:
        blocks = python_blocks(f.read())
    assert len(blocks) >= 3
    script = "\n".join(
        f"print('README block {i}', flush=True)\n{for_test(b)}" for i, b in enumerate(blocks)
    )
    path = tmp_path / "readme_blocks.py"
    path.write_text(script)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=1200)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert f"README block {len(blocks) - 1}" in out.stdout
