"""The package's imports run one way (DESIGN.md, "Dependency order"), and
`import online_emulate` stays light.

The import graph is read from the source with `ast` (module-level and function-level
imports, `if TYPE_CHECKING:` blocks skipped); nothing is imported to build it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "online_emulate"

# Lower layers never import higher ones; packages within one layer may import each
# other as long as no cycle forms.
LAYERS = [
    {"_cache", "_catalogue", "_checks", "_compile", "_frozen", "_precision", "_random", "_rollout",
     "_storage", "loss"},
    {"configuration", "emulators", "online", "data", "sample_data"},
    {"_input_checks", "estimators", "metrics"},
    {"optim", "callback"},
    {"trainer"},
    {"plot", "cli"},
    {"__init__", "__main__"},  # the package root
]
LAYER = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}

# Dependencies that may be imported inside a function: optional extras, and braintrace,
# loaded when an eligibility-trace path first needs it (it pulls in scipy.stats),
# pdequinox, not a dependency: only loading a stored pdequinox model needs it, and
# equinox, which only equinox models' descriptions and the binomial scan need.
LAZY_OK = {"kfac_jax", "matplotlib", "trainax", "braintrace", "pdequinox", "equinox"}

def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _package(module: str) -> str:
    return module.split(".")[0]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Targets of a `from ... import ...` inside the package ('' for outside ones)."""
    if node.level == 0:
        name = node.module or ""
        if name == "online_emulate" or name.startswith("online_emulate."):
            base = name[len("online_emulate."):] if "." in name else ""
        else:
            return ["ext:" + name]
    else:
        here = module.split(".") if module not in ("__init__", "__main__") else []
        if not is_package:
            here = here[:-1]
        up = node.level - 1
        here = here[: len(here) - up] if up else here
        base = ".".join(here + ([node.module] if node.module else []))
    if node.module is None or base == "":
        # `from . import x` / `from .. import x`: x may be a submodule
        return [f"{base}.{a.name}".lstrip(".") for a in node.names]
    return [base]


def _imports():
    """(importer, target, function_level) for every import in the package."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        is_package = path.name == "__init__.py" and path.parent != ROOT
        if path.parent == ROOT and path.name == "__init__.py":
            module = "__init__"
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(node, in_function):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                return
            if isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.name
                    if name.startswith("online_emulate."):
                        found.append((module, name[len("online_emulate."):], in_function))
                    else:
                        found.append((module, "ext:" + name, in_function))
            elif isinstance(node, ast.ImportFrom):
                for target in _resolve(module, is_package, node):
                    found.append((module, target, in_function))
            inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for child in ast.iter_child_nodes(node):
                visit(child, inner)

        visit(tree, False)
    return found


def _violations():
    upward, lazy = [], []
    for importer, target, in_function in _imports():
        if target.startswith("ext:"):
            if in_function and target[4:].split(".")[0] not in LAZY_OK:
                lazy.append((importer, target[4:]))
            continue
        src, dst = _package(importer), _package(target)
        if src != dst and LAYER[dst] > LAYER[src]:
            upward.append((importer, target))
        elif in_function:
            lazy.append((importer, target))
    return upward, lazy


def _package_cycles():
    graph: dict[str, set[str]] = {}
    for importer, target, _ in _imports():
        if target.startswith("ext:"):
            continue
        src, dst = _package(importer), _package(target)
        if src != dst:
            graph.setdefault(src, set()).add(dst)
    cycles, state = [], {}

    def dfs(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            dfs(node, [])
    return cycles


def test_every_package_has_a_layer():
    packages = {_module_name(p).split(".")[0] for p in ROOT.rglob("*.py")}
    packages |= {"__init__"}
    assert packages <= set(LAYER), sorted(packages - set(LAYER))


def test_no_upward_edge_and_no_function_level_import():
    upward, lazy = _violations()
    assert not upward, f"imports against the dependency order (DESIGN.md): {upward}"
    assert not lazy, f"function-level imports of required modules: {lazy}"


def test_no_import_cycle_between_packages():
    cycles = _package_cycles()
    assert not cycles, f"import cycles between packages: {cycles}"


def test_walker_sees_function_level_and_upward_edges(tmp_path, monkeypatch):
    """The walker itself: a planted upward, function-level import is reported."""
    fake = tmp_path / "online_emulate"
    (fake / "loss").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "loss" / "__init__.py").write_text("from ._x import f\n")
    (fake / "loss" / "_x.py").write_text("def f():\n    from ..trainer import GeneralTrainer\n")
    (fake / "trainer").mkdir()
    (fake / "trainer" / "__init__.py").write_text("from ..loss import f\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    upward, lazy = _violations()
    assert upward == [("loss._x", "trainer")]
    assert lazy == []  # reported once, as the upward edge
    assert _package_cycles() == [["loss", "trainer", "loss"]]


_PROBE = """
import json, sys
import online_emulate
light = sorted(m for m in ("matplotlib", "braintrace", "brainstate", "jax") if m in sys.modules)
from online_emulate import (callback, configuration, data, emulators, estimators, loss,
                            metrics, sample_data, trainer)
core = sorted(m for m in ("braintrace", "scipy.stats", "online_emulate.plot",
                          "online_emulate.online", "exponax", "equinox") if m in sys.modules)
import jax.numpy as jnp
emulator = emulators.LinearStencil(1, 1, 1, kernel_size=2, key=0)
metrics.rollout(emulator, jnp.ones((2, 1, 8)), 3)  # evaluates under lax_ops()
after_rollout = "braintrace" in sys.modules
emulator(jnp.ones((1, 8)))  # the braintrace ETP path
print(json.dumps({"light": light, "core": core, "after_rollout": after_rollout,
                  "after_etp_call": "braintrace" in sys.modules}))
"""


def test_import_is_lazy_in_a_fresh_process():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         timeout=600, cwd=ROOT.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # `import online_emulate` alone loads no dependency at all
    assert result["light"] == [], result
    # the core subpackages do not load braintrace (nor scipy.stats through it), the
    # plotting code, the braintrace bridge, exponax (until an exponax problem is used) or
    # equinox (until an equinox model is); matplotlib itself comes with brainstate
    # (brainunit -> saiunit), which the emulators need
    assert result["core"] == [], result
    # a rollout for metrics stays on plain lax; the ETP evaluation loads braintrace
    assert result["after_rollout"] is False and result["after_etp_call"] is True, result


@pytest.mark.parametrize("name", ["plot", "online", "value_and_grad"])
def test_lazy_attributes_resolve(name):
    import online_emulate

    assert getattr(online_emulate, name) is not None
    with pytest.raises(AttributeError, match="no_such_thing"):
        online_emulate.no_such_thing  # noqa: B018
