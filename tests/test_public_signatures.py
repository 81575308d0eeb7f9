"""Every public signature of the package carries type hints.

For each public subpackage (DESIGN.md's layout table; `online_emulate` itself loads
them lazily), every name in its `__all__` that the package defines is checked with
`inspect.signature`: a function's parameters and return, a class's `__init__` (or
`__new__`) parameters and the parameters and returns of its public methods (`__call__` included)
defined in the package, inherited ones too. `self`/`cls`, `*args` and `**kwargs` need no
annotation; `__init__`/`__new__` need no return annotation. Properties are attributes, not
signatures, and are not checked.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

# DESIGN.md, "Layout"; the optional dependencies of two of them are skipped when absent.
SUBPACKAGES = [
    "callback", "cli", "configuration", "data", "emulators", "estimators", "loss",
    "metrics", "online", "optim", "plot", "sample_data", "trainer",
]
OPTIONAL = {"optim": "kfac_jax", "plot": "matplotlib"}


def _ours(obj) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("online_emulate")


def _missing(qualname: str, fn, *, is_init: bool = False) -> list[str]:
    """The unannotated parts of `fn`'s signature, as 'qualname(param)' / 'qualname -> ?'."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # no introspectable signature (a builtin)
        return []
    out = []
    for p in sig.parameters.values():
        if p.name in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.annotation is inspect.Parameter.empty:
            out.append(f"{qualname}({p.name})")
    if not is_init and sig.return_annotation is inspect.Signature.empty:
        out.append(f"{qualname} -> ?")
    return out


def _public_methods(cls):
    """(name, function) of the public methods `cls` has from the package, once each."""
    seen = set()
    for klass in cls.__mro__:
        if not _ours(klass):
            continue
        for name, member in vars(klass).items():
            if name in seen or (name.startswith("_") and name != "__call__"):
                continue
            seen.add(name)
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if inspect.isfunction(member) and _ours(member):
                yield name, member


def missing_annotations(module) -> list[str]:
    """Every unannotated part of the public signatures of `module.__all__`."""
    out = []
    for attr in module.__all__:
        obj = getattr(module, attr)
        qual = f"{module.__name__}.{attr}"
        if inspect.isclass(obj):
            if not _ours(obj):
                continue
            for ctor in ("__init__", "__new__"):  # a few classes construct in __new__
                fn = inspect.getattr_static(obj, ctor, None)
                fn = fn.__func__ if isinstance(fn, staticmethod) else fn
                if inspect.isfunction(fn) and _ours(fn):
                    out += _missing(f"{qual}.{ctor}", fn, is_init=True)
            for name, method in _public_methods(obj):
                out += _missing(f"{qual}.{name}", method)
        elif inspect.isfunction(obj) and _ours(obj):
            out += _missing(qual, obj)
    return out


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_public_signatures_are_annotated(name):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    module = importlib.import_module(f"online_emulate.{name}")
    assert hasattr(module, "__all__"), f"online_emulate.{name} has no __all__"
    missing = missing_annotations(module)
    assert not missing, f"{len(missing)} unannotated: " + ", ".join(missing)


def test_the_walker_reports_a_missing_annotation(tmp_path, monkeypatch):
    """The walker itself: a planted unannotated parameter and return are reported."""
    (tmp_path / "online_emulate_probe.py").write_text(
        "__all__ = ['f', 'C']\n"
        "def f(x: int, y): return x\n"
        "class C:\n"
        "    def __init__(self, a, *args, **kwargs): pass\n"
        "    def run(self, b: int) -> int: return b\n"
        "    def _private(self, c): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    probe = importlib.import_module("online_emulate_probe")
    assert missing_annotations(probe) == [
        "online_emulate_probe.f(y)", "online_emulate_probe.f -> ?",
        "online_emulate_probe.C.__init__(a)",
    ]
