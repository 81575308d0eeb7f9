"""Checks of the data given together with an emulator, before anything is compiled."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .configuration import BaseConfiguration
from .emulators import Emulator

__all__ = ["check_emulator_data"]


def _param_dtype(emulator):
    if not isinstance(emulator, Emulator):  # other model kinds: their adapters check
        return None
    leaves = [np.asarray(s.value) for s in emulator.states().values()
              if hasattr(s, "value") and jnp.issubdtype(np.asarray(s.value).dtype, jnp.floating)]
    return leaves[0].dtype if leaves else None


def check_emulator_data(emulator, data, *, name: str = "data", min_levels: int = 1,
                        allow_nonfinite: bool = False, configuration=None):
    """`data` as one jax array `(batch, time, C, *N)` the emulator can step.

    Integer or bool data is cast to the emulator's parameter dtype (the values are
    exact up to 2**24 in float32); a float dtype other than the parameters' is refused,
    as is a PyTree under the library's configurations (they hand data leaves to an
    emulator that steps one array; a user configuration may take PyTree data apart
    itself), a missing channel axis, too few time levels, and NaN/inf values unless
    `allow_nonfinite`.

    Raises:
        TypeError: naming `name`, for data that is not an array of numbers.
        ValueError: naming `name`, for a wrong shape or dtype, or non-finite values.
    """
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        leaves = jax.tree_util.tree_leaves(data)
        own = isinstance(emulator, Emulator) and (
            configuration is None or isinstance(configuration, BaseConfiguration)
        )
        if leaves and all(hasattr(x, "shape") for x in leaves) and not own:
            # a user module or configuration may handle PyTree data: check values only
            if not allow_nonfinite:
                for path, leaf in jax.tree_util.tree_leaves_with_path(data):
                    if not bool(jnp.all(jnp.isfinite(leaf))):
                        raise ValueError(
                            f"{name}{jax.tree_util.keystr(path)}: expected finite values, got "
                            "NaN/inf (pass allow_nonfinite=True to compute on it anyway)"
                        )
            return data
        if leaves and all(hasattr(x, "shape") for x in leaves):
            raise TypeError(
                f"{name}: expected one array (batch, time, C, *N), which an emulator steps, "
                f"got a {type(data).__name__} of {len(leaves)} arrays (PyTree data needs a "
                "stepper written for it, not an online_emulate emulator)"
            )
        raise TypeError(f"{name}: expected an array (batch, time, C, *N), got {type(data).__name__}")
    # without jax_enable_x64, float64 input becomes float32 anyway: compare what jax uses
    dtype = np.dtype(jax.dtypes.canonicalize_dtype(data.dtype))
    target = _param_dtype(emulator)
    if dtype.kind in "biu":
        data = jnp.asarray(data, target or jnp.float32)
    elif dtype.kind != "f":
        raise TypeError(f"{name}: expected real floating-point values, got dtype {dtype}")
    elif target is not None and dtype != target:
        raise ValueError(
            f"{name}: expected dtype {target} to match the emulator's parameters, got "
            f"{dtype} (cast the data with .astype({str(target)!r}) or build the emulator "
            f"with dtype={str(dtype)!r})"
        )
    d = getattr(emulator, "num_spatial_dims", None)
    c = getattr(emulator, "in_channels", None)
    if d is not None and c is not None:
        expected = f"(batch, time, {c}, {', '.join(['N'] * d)})"
        if data.ndim == d + 2:
            raise ValueError(
                f"{name}: expected {expected} for this {d}-D emulator, got shape "
                f"{tuple(data.shape)}: the channel axis is missing (add it with "
                f"{name}[:, :, None])"
            )
        if data.ndim != d + 3 or data.shape[2] != c:
            raise ValueError(
                f"{name}: expected {expected} for this {d}-D emulator with {c} channel(s), "
                f"got shape {tuple(data.shape)}"
            )
    if data.shape[1] < min_levels:
        raise ValueError(f"{name}: expected at least {min_levels} time levels, got {data.shape[1]}")
    data = jnp.asarray(data)
    if not allow_nonfinite:
        finite = np.asarray(jnp.isfinite(data).reshape(data.shape[0], data.shape[1], -1).all(-1))
        if not finite.all():
            s, t = np.argwhere(~finite)[0]
            raise ValueError(
                f"{name}: expected finite values, got NaN/inf at sample {s}, time level {t} "
                "(pass allow_nonfinite=True to compute on it anyway)"
            )
    return data
