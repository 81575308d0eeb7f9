"""Every module the suite, the benchmarks or the notebooks import is declared.

A green CI on a machine where some package happens to be installed proves nothing to a
newcomer who runs the README's commands in a fresh environment. This test reads every
import (top-level, function-level, ``pytest.importorskip("x")`` and
``importlib.import_module("x")`` with a literal name) under ``tests/``, ``benchmarks/``
and ``notebooks/``, maps each third-party module to the distribution that installs it,
and fails unless that distribution is named in ``[project.dependencies]`` or in the
extra the README names for the folder:

* ``tests/``: the ``test`` extra (the README's test command installs it);
* ``benchmarks/``: the ``bench`` extra;
* ``notebooks/``: the ``notebooks`` extra, and also the ``test`` extra, since the test
  command runs every notebook.

Transitive availability does not count: a package that arrives only because another one
depends on it today can vanish with that package's next release.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "online_emulate"

# folder -> the extras whose packages its imports may come from (besides the base
# dependencies); each must be named in README.md.
FOLDER_EXTRAS = {
    "tests": ("test",),
    "benchmarks": ("bench",),
    "notebooks": ("notebooks", "test"),
}


def _normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"pyproject.toml: cannot read the requirement {requirement!r}"
    return _normalise(match.group(1))


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_requirement_name(r) for r in project["dependencies"]}
    extras = {
        extra: {_requirement_name(r) for r in requirements}
        for extra, requirements in project.get("optional-dependencies", {}).items()
    }
    return base, extras


def _literal_string(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def imported_modules(source: str) -> set[str]:
    """Top-level names of every module ``source`` imports, however it imports them."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in {"importorskip", "import_module", "__import__"}:
                target = _literal_string(node.args[0])
                if target:
                    names.add(target.split(".")[0])
    return names


def _notebook_source(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        for line in "".join(cell["source"]).splitlines():
            # IPython magics and shell escapes are not Python.
            lines.append("" if line.lstrip().startswith(("%", "!")) else line)
        lines.append("")
    return "\n".join(lines)


def _sources(folder: str) -> dict[Path, str]:
    base = ROOT / folder
    found = {p: p.read_text() for p in sorted(base.rglob("*.py"))}
    found.update({p: _notebook_source(p) for p in sorted(base.rglob("*.ipynb"))
                  if ".ipynb_checkpoints" not in p.parts})
    if folder == "tests":
        found[ROOT / "conftest.py"] = (ROOT / "conftest.py").read_text()
    return found


def _local_names(folder: str) -> set[str]:
    """Modules a script of ``folder`` imports from beside itself (``import vs_trainax``)."""
    base = ROOT / folder
    return {p.stem for p in base.rglob("*.py")} | {p.name for p in base.iterdir() if p.is_dir()}


def _third_party(modules: set[str], folder: str, source: str) -> set[str]:
    local = _local_names(folder) | {PROJECT, "conftest", "__future__"}
    # A module the file writes itself before importing it (a probe in tmp_path).
    written = {m for m in modules if f"{m}.py" in source}
    return {m for m in modules
            if m not in sys.stdlib_module_names and m not in local | written}


def test_the_readme_names_every_extra_the_folders_rely_on():
    readme = (ROOT / "README.md").read_text()
    _, extras = _declared()
    for folder, names in FOLDER_EXTRAS.items():
        for extra in names:
            assert extra in extras, f"pyproject.toml: expected an extra {extra!r} for {folder}/"
            assert f"`{extra}`" in readme or f".[{extra}]" in readme, (
                f"README.md: expected the extra {extra!r} ({folder}/) to be named"
            )


def undeclared_imports(folder: str, sources: dict[Path, str]) -> list[str]:
    """One line for each import in ``sources`` that ``folder``'s extras do not install."""
    base, extras = _declared()
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for path, source in sources.items():
        for module in sorted(_third_party(imported_modules(source), folder, source)):
            providers = {_normalise(d) for d in distributions.get(module, ())}
            if not providers:
                problems.append(f"{path}: imports {module!r}, which no installed "
                                "distribution provides (declare it and reinstall)")
                continue
            for extra in FOLDER_EXTRAS[folder]:
                if not providers & (base | extras.get(extra, set())):
                    problems.append(
                        f"{path}: imports {module!r} (from {sorted(providers)}), which is "
                        f"neither a dependency nor in the {extra!r} extra")
    return problems


@pytest.mark.parametrize("folder", sorted(FOLDER_EXTRAS))
def test_every_import_is_declared_for_its_folder(folder):
    sources = {p.relative_to(ROOT): s for p, s in _sources(folder).items()}
    problems = undeclared_imports(folder, sources)
    assert not problems, "\n".join(problems)


def test_the_checker_sees_every_form_of_import():
    source = (
        "import a.b, c\n"
        "from d.e import f\n"
        "from . import local\n"
        "def g():\n"
        "    import h\n"
        "    pytest.importorskip('i')\n"
        "    importlib.import_module('j.k')\n"
    )
    assert imported_modules(source) == {"a", "c", "d", "h", "i", "j"}


def test_the_checker_flags_installed_but_undeclared_and_missing_packages():
    # pluggy is installed (pytest needs it) but declared nowhere: only transitively there.
    sources = {
        Path("tests/test_x.py"): "import jax\nimport pluggy\nimport os\n",
        Path("notebooks/x.ipynb"): "import optax\nimport no_such_module_anywhere\n",
    }
    tests = undeclared_imports("tests", {k: v for k, v in sources.items() if "tests" in str(k)})
    assert len(tests) == 1 and "'pluggy'" in tests[0] and "'test' extra" in tests[0]
    notebooks = undeclared_imports("notebooks",
                                   {k: v for k, v in sources.items() if "notebooks" in str(k)})
    assert len(notebooks) == 1 and "no_such_module_anywhere" in notebooks[0]


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh|console)\n(.*?)```", section, flags=re.S)
    return [b.strip() for b in blocks if b.strip().startswith("pip install")]


def test_the_readme_has_two_setup_commands_and_ci_runs_the_second():
    commands = _setup_commands()
    assert len(commands) == 2, f"README.md Set-up: expected two install commands, got {commands}"
    main_job, tests = commands
    assert main_job.startswith("pip install -e .") and "online-emulate demo" in main_job
    assert tests.startswith('pip install -e ".[test]"') and "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    ci_lines = [line.strip() for line in ci.splitlines()]
    assert tests in ci_lines, f".ci/run: expected the README's test command {tests!r}"
    # The command must run inside the fresh environment .ci/run makes, after it.
    assert ci.index("-m venv") < ci.index("bin/activate") < ci.index(tests)
