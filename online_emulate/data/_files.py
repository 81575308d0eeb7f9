"""A user's own trajectories from a `.npy` / `.npz` file, memory-mapped and checked.

The file is mapped, not read: the checks walk it a block of trajectories at a time, and
slicing the returned array reads only the slice (the held-out trajectories of a
command-line run are read only for its evaluation; `OnlineTrainer(reference_data=...)`
reads each chunk's time levels). Every mistake is named before anything compiles.
"""

from __future__ import annotations

import os
import struct
import zipfile
from typing import Union

import numpy as np

__all__ = ["load_trajectories"]

#: bytes of trajectories read at a time by the finiteness check
_BLOCK_BYTES = 64 * 2**20
_LAYOUT = "(samples, time, C, *N)"
_LOCAL_HEADER = b"PK\x03\x04"


def split_member(path: str) -> tuple[str, str | None]:
    """`FILE.npz:NAME` -> (FILE.npz, NAME); anything else -> (path, None)."""
    head, sep, tail = path.rpartition(":")
    if sep and head.lower().endswith(".npz") and tail and os.sep not in tail:
        return head, tail
    return path, None


def _mapped(path: str, f, start: int, name: str, what: str):
    """The array whose `.npy` header starts at byte `start` of the open file `f`, as a
    read-only memmap (None for a header version numpy's public readers do not take)."""
    f.seek(start)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return None
    except ValueError as err:
        raise ValueError(f"{name}: expected a {what} numpy can read, got {path!r} "
                         f"({err})") from None
    if dtype.hasobject:
        raise TypeError(f"{name}: expected an array of real numbers, got an object array "
                        f"in {path!r} (objects need pickle, which is never loaded)")
    return np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape,
                     order="F" if fortran else "C")


def _mapped_member(path: str, archive: zipfile.ZipFile, member: str, name: str):
    """The `.npy` member of an uncompressed `.npz` as a read-only memmap (None when it is
    compressed or its header is of a version numpy's public readers do not take)."""
    info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != _LOCAL_HEADER:
            raise ValueError(f"{name}: expected a .npz archive numpy can read, got {path!r} "
                             f"with a broken entry {member!r}")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        return _mapped(path, f, info.header_offset + 30 + name_length + extra_length, name,
                       ".npz archive")


def _open_npz(path: str, member: str | None, name: str) -> np.ndarray:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{name}: expected a .npz archive, got {path!r} ({err})") from None
    with archive:
        arrays = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        if member is None:
            if len(arrays) != 1:
                raise ValueError(
                    f"{name}: expected a .npz holding one array, or FILE.npz:NAME naming "
                    f"one, got {path!r} holding {len(arrays)}: {', '.join(arrays) or 'none'}"
                )
            member = arrays[0]
        elif member not in arrays:
            raise ValueError(f"{name}: expected the name of an array in {path!r} (one of "
                             f"{', '.join(arrays) or 'none'}), got {member!r}")
        mapped = _mapped_member(path, archive, member + ".npy", name)
    if mapped is not None:
        return mapped
    try:  # compressed: deflate cannot be mapped, the member is read into memory
        with np.load(path, allow_pickle=False) as npz:
            return npz[member]
    except ValueError as err:  # numpy refuses object arrays without pickle
        raise TypeError(f"{name}: expected an array of real numbers in {path!r}, got "
                        f"{member!r}, which numpy cannot read without pickle ({err})") from None


def _open(path: str, name: str) -> np.ndarray:
    path, member = split_member(path)
    if not os.path.isfile(path):
        raise ValueError(f"{name}: expected an existing .npy or .npz file, got {path!r}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        return _open_npz(path, member, name)
    if suffix != ".npy":
        raise ValueError(f"{name}: expected a .npy or .npz file, got {path!r}")
    with open(path, "rb") as f:
        mapped = _mapped(path, f, 0, name, ".npy file")
    return mapped if mapped is not None else np.load(path, mmap_mode="r", allow_pickle=False)


def _check_layout(shape: tuple, name: str) -> None:
    if len(shape) == 3:
        raise ValueError(
            f"{name}: expected trajectories {_LAYOUT} with a channel axis, got shape "
            f"{shape}: the channel axis is missing (store a[:, :, None] for one channel)"
        )
    if len(shape) < 4 or len(shape) > 6:
        raise ValueError(f"{name}: expected trajectories {_LAYOUT} with 1 to 3 spatial "
                         f"axes (4 to 6 axes), got shape {shape}")
    if min(shape[:3]) < 1:
        raise ValueError(f"{name}: expected at least one trajectory, time level and "
                         f"channel {_LAYOUT}, got shape {shape}")
    if min(shape[3:]) < 2:
        raise ValueError(
            f"{name}: expected spatial axes of at least 2 points {_LAYOUT}, got shape "
            f"{shape}; a channel axis stored last (samples, time, *N, C) is moved with "
            "np.moveaxis(a, -1, 2)"
        )


def _first_nonfinite(array: np.ndarray) -> tuple[int, int] | None:
    """(sample, time level) of the first NaN/inf, reading a block of trajectories at a time."""
    if array.dtype.kind != "f":
        return None
    per_block = max(1, _BLOCK_BYTES // max(1, array[:1].nbytes))
    for first in range(0, array.shape[0], per_block):
        block = np.asarray(array[first:first + per_block])
        finite = np.isfinite(block).reshape(block.shape[0], block.shape[1], -1).all(-1)
        if not finite.all():
            s, t = np.argwhere(~finite)[0]
            return first + int(s), int(t)
    return None


def load_trajectories(path: Union[str, os.PathLike], *, name: str = "path",
                      check_finite: bool = True) -> np.ndarray:
    """Open a file of trajectories `(samples, time, C, *N)` without reading it.

    A `.npy` file is memory-mapped (`np.load(mmap_mode="r")`); so is an array of an
    uncompressed `.npz` (`np.savez`), named `FILE.npz:NAME` unless it is the only one;
    an array of a compressed `.npz` (`np.savez_compressed`) is read into memory, since
    deflated data cannot be mapped. Nothing is ever unpickled.

    Arguments:
        path: the file, `FILE.npz:NAME` for one array of an archive.
        name: what errors call the file (e.g. `"--data"` on the command line).
        check_finite: refuse NaN/inf values (read a block of trajectories at a time).

    Returns:
        A read-only array `(samples, time, C, *N)` of the file's dtype (a `np.memmap`
        where the file can be mapped): real floats or integers, 1 to 3 spatial axes of
        at least 2 points (how many time levels a run needs is the trainer's check).

    Raises:
        TypeError: `path` is not a path; an object, complex, bool or text array.
        ValueError: a missing or unreadable file, an archive without the array, a wrong
            layout (the missing channel axis and a channel axis stored last are named),
            NaN/inf with the first (sample, time level) holding one.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path of a .npy or .npz file, got "
                        f"{type(path).__name__}")
    array = _open(os.fspath(path), name)
    shown = os.fspath(path)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected real numbers (float or integer), got dtype "
                        f"{array.dtype} in {shown!r}")
    _check_layout(tuple(array.shape), name)
    if check_finite:
        where = _first_nonfinite(array)
        if where is not None:
            raise ValueError(f"{name}: expected finite values, got NaN/inf at sample "
                             f"{where[0]}, time level {where[1]} of {shown!r}")
    return array
