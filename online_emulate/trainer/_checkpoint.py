"""Atomic checkpoints of a training run: parameters, optimizer state, step, key, history."""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any

import jax
import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = 1


def _to_host(tree):
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> str:
    """Write `payload` (PyTrees of arrays and plain Python values) to `path` atomically.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the
    file is then renamed over `path`; a crash leaves either the old or the new checkpoint,
    never a torn one.

    Returns:
        The path written, as a string.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    blob = {"format": CHECKPOINT_FORMAT, **_to_host(payload)}
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(blob, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not an online_emulate checkpoint of a known format.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            blob = pickle.load(f)
        except Exception as err:  # a torn or foreign file
            raise ValueError(f"path: {path!r} is not an online_emulate checkpoint ({err})") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"path: {path!r} is not an online_emulate checkpoint of format {CHECKPOINT_FORMAT}"
        )
    return blob
