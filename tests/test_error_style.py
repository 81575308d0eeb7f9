"""Every ValueError/TypeError the package raises reads "name: expected ..., got ...".

The sources are read with `ast` (nothing is imported): for each `raise ValueError(...)`,
`raise TypeError(...)` or `raise ArgumentTypeError(...)` (`online_emulate._checks`'
error that is both) whose message is a string literal or an f-string, the text before
the first ": " must be an argument name: letters, digits, `_ . [ ] ' " ( ) -` (options
such as `--run`, entries such as `table['BPTT']`) and interpolated values (`{name}`,
for messages of the shared checkers that quote their caller's argument). Messages
built elsewhere and passed as a variable are not seen. `argparse.ArgumentTypeError`
is not checked: argparse itself prefixes the option's name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "online_emulate"

CHECKED = {"ValueError", "TypeError", "ArgumentTypeError"}

# "{}" stands for an interpolated value of an f-string.
NAME_FIRST = re.compile(r"^(?:[\w.\[\]'\"()-]|\{\})+: ")

# Messages where no argument is at fault, as (file relative to online_emulate/, start of
# the message with "{}" for interpolations), each with why.
ALLOWED: set[tuple[str, str]] = set()


def _leading_text(node: ast.expr) -> str | None:
    """The message's text, interpolations as "{}"; None when it is not a literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return _leading_text(node.left)  # "..." + x, "..." % x: the left part leads
    return None


def raised_messages(root: Path) -> list[tuple[str, int, str]]:
    """(file, line, message text) of every checked raise with a literal message."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func = node.exc.func
            if not (isinstance(func, ast.Name) and func.id in CHECKED) or not node.exc.args:
                continue
            text = _leading_text(node.exc.args[0])
            if text is not None:
                found.append((path.relative_to(root).as_posix(), node.lineno, text))
    return found


def off_style(root: Path) -> list[str]:
    bad = []
    for file, line, text in raised_messages(root):
        if NAME_FIRST.match(text):
            continue
        if any(file == f and text.startswith(start) for f, start in ALLOWED):
            continue
        bad.append(f"{file}:{line}: {text[:100]!r}")
    return bad


def test_every_message_names_the_argument_first():
    found = raised_messages(ROOT)
    assert len(found) > 150, "the walker no longer sees the package's raises"
    bad = off_style(ROOT)
    assert not bad, "messages not in the style 'name: expected ..., got ...':\n" + "\n".join(bad)


def test_allow_list_entries_still_exist():
    texts = {(f, t) for f, _, t in raised_messages(ROOT)}
    stale = [a for a in ALLOWED if not any(f == a[0] and t.startswith(a[1]) for f, t in texts)]
    assert not stale, f"allow-list entries that match no raise any more: {stale}"


def test_the_walker_flags_an_unnamed_message(tmp_path):
    """The check itself: planted messages, good and bad."""
    (tmp_path / "m.py").write_text(
        "import argparse\n"
        "def f(value, name):\n"
        "    raise ValueError('value must be positive')\n"
        "def g(value, name):\n"
        "    raise TypeError(f'invalid {name}: {value}')\n"
        "def h(value, name):\n"
        "    raise ValueError(f'{name}: expected a number > 0, got {value!r}')\n"
        "def i(value):\n"
        "    raise ValueError(\"table['a'][1]: expected a number > 0, got \" + str(value))\n"
        "def j(text):\n"
        "    raise argparse.ArgumentTypeError(f'expected an int, got {text}')\n"
    )
    bad = off_style(tmp_path)
    assert [b.split(": ", 1)[0] for b in bad] == ["m.py:3", "m.py:5"], bad
