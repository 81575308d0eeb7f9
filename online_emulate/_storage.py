"""Checkpoints that cannot run code: arrays in a `.npz`, everything else as JSON.

One file holds both: every array leaf is an `.npz` entry, and the entry `__meta__` is
the UTF-8 bytes of a JSON document (format version, the structure of every PyTree,
plain values such as the step and the history). Reading uses `numpy.load` with
`allow_pickle=False`, so a crafted file can at worst be refused, never executed.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import zipfile
from typing import IO, Any, Callable

import jax
import numpy as np

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "restore_tree",
    "StoredTree",
    "CHECKPOINT_FORMAT",
    "write_npz",
    "read_npz",
    "atomic_write",
    "new_file_mode",
]

CHECKPOINT_FORMAT = 2
_MAGIC = "online_emulate"
_META = "__meta__"


# ------------------------------------------------------------------ trees
def _is_plain(value) -> bool:
    """JSON can hold it (numpy scalars count: they are converted)."""
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return not (isinstance(value, np.generic) and np.ndim(value))
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _to_json(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return {"float": repr(value)}  # JSON has no inf/nan
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {"float"}:
            return float(value["float"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _describe(node, leaves: list):
    """A JSON description of a PyTree made of dicts, lists, tuples, namedtuples and None;
    array leaves are appended to `leaves` and referenced by index. Anything else (a
    custom PyTree class) makes the description None: such a tree is restored from a
    template (`restore_tree`)."""
    if node is None:
        return {"none": 0}
    if isinstance(node, dict):
        items = []
        for k, v in node.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                return None
            sub = _describe(v, leaves)
            if sub is None:
                return None
            items.append([k, sub])
        return {"dict": items}
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        cls = type(node)
        subs = [_describe(v, leaves) for v in node]
        if any(s is None for s in subs):
            return None
        return {"namedtuple": [cls.__module__, cls.__qualname__, list(cls._fields), subs]}
    if isinstance(node, (list, tuple)):
        subs = [_describe(v, leaves) for v in node]
        if any(s is None for s in subs):
            return None
        return {"list" if isinstance(node, list) else "tuple": subs}
    if isinstance(node, (np.ndarray, np.generic, jax.Array, int, float, bool)):
        leaves.append(node)
        return {"leaf": len(leaves) - 1}
    return None


def _rebuild(desc, leaves, where: str):
    kind, body = next(iter(desc.items()))
    if kind == "none":
        return None
    if kind == "leaf":
        return leaves[body]
    if kind == "dict":
        return {k: _rebuild(v, leaves, where) for k, v in body}
    if kind in ("list", "tuple"):
        out = [_rebuild(v, leaves, where) for v in body]
        return out if kind == "list" else tuple(out)
    if kind == "namedtuple":
        module, qualname, fields, subs = body
        # Only a namedtuple class that is already imported is used, and only through
        # tuple.__new__: nothing is imported or called on the file's say-so.
        cls = sys.modules.get(module)
        for part in qualname.split("."):
            cls = getattr(cls, part, None)
        children = [_rebuild(v, leaves, where) for v in subs]
        if not (isinstance(cls, type) and issubclass(cls, tuple) and list(getattr(cls, "_fields", ())) == fields):
            raise ValueError(f"{where}: expected a loaded namedtuple type, got {module}.{qualname}")
        return tuple.__new__(cls, children)
    raise ValueError(f"{where}: expected a known tree node kind, got {kind!r}")


class StoredTree:
    """A PyTree read from a checkpoint whose structure JSON cannot describe (e.g. a
    K-FAC state): its leaves in order plus the structure it was saved with. Turn it back
    into the PyTree with `restore_tree(stored, like=template)`."""

    def __init__(self, leaves, treedef: str, path: str, name: str):
        self.leaves, self.treedef, self.path, self.name = leaves, treedef, path, name

    def __repr__(self):
        return f"StoredTree({self.name!r}, {len(self.leaves)} leaves)"


def _leaf_signature(x):
    x = np.asarray(x)
    return tuple(x.shape), x.dtype


def restore_tree(stored, like, *, path: str = "checkpoint", name: str = "tree"):
    """The tree `stored` (from `load_checkpoint`) with the structure of `like`.

    A plain tree (already rebuilt) is checked against `like` as well; `path` and `name`
    then say in errors where it came from.

    Raises:
        ValueError: naming the checkpoint path, if the structure, the number of leaves,
            or a leaf's shape or dtype differs from `like`.
    """
    like_leaves, like_def = jax.tree_util.tree_flatten(like)
    if isinstance(stored, StoredTree):
        leaves, path, name = stored.leaves, stored.path, stored.name
        if stored.treedef != str(like_def):
            raise ValueError(
                f"path: expected a {name} of this run's structure {str(like_def)[:200]}, "
                f"got {stored.treedef[:200]} in {path!r}"
            )
    else:
        leaves, got_def = jax.tree_util.tree_flatten(stored)
        if got_def != like_def:
            raise ValueError(
                f"path: expected a {name} of this run's structure {str(like_def)[:200]}, "
                f"got {str(got_def)[:200]} in {path!r}"
            )
    if len(leaves) != len(like_leaves):
        raise ValueError(f"path: expected {len(like_leaves)} {name} arrays, got "
                         f"{len(leaves)} in {path!r}")
    for i, (a, b) in enumerate(zip(leaves, like_leaves)):
        if _leaf_signature(a) != _leaf_signature(b):
            raise ValueError(
                f"path: expected {name} array {i} as {_leaf_signature(b)} (this run), got "
                f"{_leaf_signature(a)} in {path!r}"
            )
    return jax.tree_util.tree_unflatten(like_def, [np.asarray(x) for x in leaves])


# ------------------------------------------------------------------- files
def new_file_mode() -> int:
    """The permission bits `open(path, "w")` would give a new file: 0o666 less the
    process's umask (read from /proc where it is shown, so the umask is never changed,
    not even for a moment)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], *, text: bool = False,
                 prefix: str = ".tmp-", suffix: str = "") -> str:
    """Write a file at `path` atomically: `write(f)` fills a temporary file in the same
    folder, which is flushed to disk, given the mode a plain `open` would give a new
    file (the user's umask; a temporary file is created 0o600) and renamed over `path`.
    A crash leaves the old file or the new one, never a part of either.

    Returns:
        The path, as a string.
    """
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w" if text else "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _host(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(jax.device_get(x))


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> str:
    """Write `arrays` and the JSON `meta` into one `.npz` at `path`, atomically, from
    process 0 only (other processes of a multi-host run return without writing).

    See `atomic_write`: a crash leaves the old file or the new one, and the file gets
    the user's umask.
    """
    path = os.fspath(path)
    if jax.process_index() != 0:
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = json.dumps({"magic": _MAGIC, "format": CHECKPOINT_FORMAT, **meta}, allow_nan=False)
    entries = {_META: np.frombuffer(text.encode("utf-8"), np.uint8), **arrays}
    return atomic_write(path, lambda f: np.savez(f, **entries), prefix=".ckpt-", suffix=".npz")


def read_npz(path: str | os.PathLike, *, kind: str) -> tuple[dict, dict[str, np.ndarray]]:
    """`(meta, arrays)` of a file written by `write_npz` whose meta `kind` matches.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: naming `path`, for a file that is not such a file (foreign,
            truncated, another kind or format version).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no such file {path!r}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise ValueError(
            f"path: expected a readable online_emulate {kind} file, got {path!r} "
            f"(truncated or foreign: {type(err).__name__}: {err})"
        ) from None
    if _META not in arrays:
        raise ValueError(f"path: expected an online_emulate file, got {path!r}, an .npz "
                         "without online_emulate metadata (a foreign file)")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"path: expected readable metadata, got {path!r} ({err})") from None
    if not isinstance(meta, dict) or meta.get("magic") != _MAGIC:
        raise ValueError(f"path: expected an online_emulate file, got {path!r} (no magic)")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"path: expected format version {CHECKPOINT_FORMAT} (what this version of "
            f"online_emulate reads), got {meta.get('format')!r} in {path!r}"
        )
    if meta.get("kind") != kind:
        raise ValueError(f"path: expected an online_emulate {kind} file, got a "
                         f"{meta.get('kind')} file {path!r}")
    return meta, arrays


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any], *, model: dict | None = None) -> str:
    """Write `payload` to `path` atomically (process 0 only).

    Arguments:
        path: the file (conventionally `*.npz`).
        payload: name -> value. Plain values (None, bool, int, float, str and lists /
            dicts of them: the step, the history records) go to the JSON metadata;
            everything else is a PyTree of arrays (parameters, optimizer state, key,
            loss history) whose leaves go to the `.npz` and whose structure goes to the
            metadata.
        model: an optional JSON description of the model (see `describe_emulator`).

    Returns:
        The path, as a string.
    """
    values, trees, arrays = {}, {}, {}
    for name, value in payload.items():
        if not isinstance(name, str) or "/" in name:
            raise ValueError(f"payload: expected names that are strings without '/', got {name!r}")
        if _is_plain(value):
            values[name] = _to_json(value)
            continue
        leaves: list = []
        desc = _describe(value, leaves)
        flat, treedef = jax.tree_util.tree_flatten(value)
        if desc is None:
            leaves = flat
        for i, leaf in enumerate(leaves):
            arrays[f"{name}/{i}"] = _host(leaf)
        trees[name] = {"structure": desc, "treedef": str(treedef), "num_leaves": len(leaves)}
    meta = {"kind": "checkpoint", "values": values, "trees": trees, "model": model}
    return write_npz(path, arrays, meta)


def load_checkpoint(path: str | os.PathLike, *, like: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, without executing anything.

    Arguments:
        path: the file.
        like: optional name -> template PyTree. A named tree is rebuilt with the
            template's structure and checked leaf by leaf (shape and dtype). Trees of
            dicts / lists / tuples / optax-style namedtuples are rebuilt without a
            template; other trees come back as `StoredTree` (see `restore_tree`).

    Returns:
        name -> value, plus `"model"` (the stored model description or None).

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: naming `path` and the problem, for a foreign, truncated or
            mismatched file.
    """
    path = os.fspath(path)
    meta, arrays = read_npz(path, kind="checkpoint")
    like = like or {}
    try:
        out = {k: _from_json(v) for k, v in meta["values"].items()}
        for name, info in meta["trees"].items():
            leaves = []
            for i in range(int(info["num_leaves"])):
                key = f"{name}/{i}"
                if key not in arrays:
                    raise ValueError(f"path: expected the array {key!r}, got a file without it "
                                     f"{path!r} (truncated or edited)")
                leaves.append(arrays[key])
            if info["structure"] is not None:
                tree = _rebuild(info["structure"], leaves, f"path: {path!r}")
            else:
                tree = StoredTree(leaves, info["treedef"], path, name)
            if name in like:
                if isinstance(tree, StoredTree):
                    tree = restore_tree(tree, like[name])
                else:
                    restore_tree(tree, like[name], path=path, name=name)
            out[name] = tree
    except (KeyError, TypeError, IndexError, AttributeError, StopIteration) as err:
        raise ValueError(f"path: expected well-formed metadata, got {path!r} "
                         f"({type(err).__name__}: {err})") from None
    out["model"] = meta.get("model")
    return out
