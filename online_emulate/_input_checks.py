"""Checks of the data given together with an emulator, before anything is compiled.

Data is `(samples, time, C, *N)`: a layout mistake (the time axis last, the channel axis
missing, one state where a batch belongs) is named as such, with the likely fix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .configuration import BaseConfiguration
from .emulators import adapt, declared_state_ndim

__all__ = ["check_emulator_data", "check_time_levels", "check_model_state", "check_ref_stepper"]


def check_time_levels(shape: tuple, min_levels: int, *, name: str = "data",
                      why: str = "") -> None:
    """Raise unless `shape` `(samples, time, C, *N)` has at least `min_levels` time levels.

    A short time axis followed by a longer one where the channels belong, with a last
    axis long enough for the window, is named as a time axis put last
    `(samples, C, *N, time)`.

    Raises:
        ValueError: naming `name`, the levels needed and the likely mistake.
    """
    shape = tuple(shape)
    if shape[1] >= min_levels:
        return
    if len(shape) >= 4 and shape[2] > shape[1] and shape[-1] >= min_levels:
        fix = (f"; the time axis may be last: trajectories are (samples, time, C, *N), so "
               f"move it with jnp.moveaxis({name}, -1, 1)")
    else:
        fix = "; use longer trajectories or fewer rollout steps"
    raise ValueError(f"{name}: expected trajectories of at least {min_levels} time levels{why}, "
                     f"got {shape[1]} (shape {shape}, read as (samples, time, C, *N)){fix}")


def check_model_state(adapter, shape: tuple, dtype, *, name: str = "data",
                      given: tuple | None = None) -> None:
    """`adapter.check_state(shape, dtype)`, with a layout mistake named: when the model
    fails on one state of `shape` but takes one with an extra leading axis, the axis
    missing from `name` is said (the channel axis of data, the batch axis of an
    `ic_sampler`'s initial conditions). `given` is the full shape `name` had.

    Raises:
        ValueError: naming `name` for a missing axis, otherwise as `check_state`.
    """
    try:
        adapter.check_state(shape, dtype, name=name)
        return
    except ValueError as err:
        failure = err
    wider = (1, *tuple(shape))
    try:
        adapt(adapter.model, state_ndim=len(wider)).check_state(wider, dtype, name=name)
    except (ValueError, TypeError):
        raise failure from None
    raise ValueError(_missing_axis(name, tuple(given or shape), wider)) from None


def _missing_axis(name: str, given: tuple, wider: tuple) -> str:
    if name == "ic_sampler":
        return (f"ic_sampler: expected a batch of initial conditions (B, C, *N), i.e. (B, "
                f"{', '.join(map(str, wider))}) for this model, got shape {given}: an axis is "
                "missing (a single state needs its batch axis, u[None]; a batch without "
                "its channel axis needs u[:, None])")
    return (f"{name}: expected trajectories (samples, time, C, *N), got shape {given}: the "
            f"channel axis is missing (this model steps states {wider}; add it with "
            f"{name}[:, :, None])")


def check_ref_stepper(ref_stepper, shape: tuple, dtype, *, name: str = "ref_stepper") -> None:
    """Check, by tracing only, that `ref_stepper` is a JAX function of one state `shape`
    `(C, *N)` that the library can trace and vmap, returning a state of that shape.

    Raises:
        TypeError: naming `name`, for a stepper that cannot be traced (NumPy calls on
            its input, Python branching on its values).
        ValueError: naming `name`, for an output of another shape.
    """
    shape = tuple(shape)
    batch = jax.ShapeDtypeStruct((1, *shape), dtype)
    try:
        out = jax.eval_shape(jax.vmap(ref_stepper), batch)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
            jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError) as err:
        raise TypeError(
            f"{name}: expected a JAX function of one state {shape} (C, *N), which the "
            "library traces (jit) and vmaps over the batch, so it must use jax.numpy on "
            f"its input, not NumPy or Python branches on its values; got "
            f"{getattr(ref_stepper, '__name__', type(ref_stepper).__name__)}, which fails "
            f"when traced with {type(err).__name__}"
        ) from None
    if tuple(getattr(out, "shape", ())) != (1, *shape):
        got = tuple(out.shape[1:]) if hasattr(out, "shape") else type(out).__name__
        raise ValueError(f"{name}: expected it to map one state of shape {shape} to the "
                         f"same shape, got {got}")


def _param_dtype(adapter):
    """The dtype jax computes the model's first floating-point parameter in (None when
    it has none)."""
    for leaf in jax.tree_util.tree_leaves(adapter.params):
        dtype = getattr(leaf, "dtype", None)  # arrays only: Python scalars take any dtype
        if dtype is not None and jnp.issubdtype(dtype, jnp.floating):
            return np.dtype(jax.dtypes.canonicalize_dtype(dtype))
    return None


def _adapter(emulator):
    """The emulator's adapter, or None for something that is not a model (its own checks
    name it)."""
    try:
        return adapt(emulator)
    except TypeError:
        return None


def check_emulator_data(emulator, data, *, name: str = "data", min_levels: int = 1,
                        allow_nonfinite: bool = False, configuration=None):
    """`data` as one jax array `(batch, time, C, *N)` the emulator can step.

    Integer or bool data is cast to the emulator's parameter dtype (the values are
    exact up to 2**24 in float32); a float dtype other than the parameters' (of any
    model kind: the first floating-point parameter's) is refused,
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
        own = getattr(_adapter(emulator), "library_emulator", False) and (
            configuration is None or isinstance(configuration, BaseConfiguration)
        )
        if leaves and all(hasattr(x, "shape") for x in leaves) and not own:
            # a user module or configuration may handle PyTree data: check values only
            if not allow_nonfinite:
                for path, leaf in jax.tree_util.tree_leaves_with_path(data):
                    if not _concrete(jnp.all(jnp.isfinite(leaf)), True):
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
    adapter = _adapter(emulator)
    target = None if adapter is None else _param_dtype(adapter)
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
    ndim = declared_state_ndim(emulator)
    d = None if ndim is None else ndim - 1
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
    check_time_levels(data.shape, min_levels, name=name)
    data = jnp.asarray(data)
    if not allow_nonfinite:
        finite = _concrete(jnp.isfinite(data).reshape(data.shape[0], data.shape[1], -1).all(-1),
                           np.ones((1,), bool))
        if not finite.all():
            s, t = np.argwhere(~finite)[0]
            raise ValueError(
                f"{name}: expected finite values, got NaN/inf at sample {s}, time level {t} "
                "(pass allow_nonfinite=True to compute on it anyway)"
            )
    return data


def _concrete(value, traced):
    """`value` as numpy, or `traced` inside an outer jit: there shapes and dtypes are
    checked at trace time, values only by a caller holding them."""
    return traced if isinstance(value, jax.core.Tracer) else np.asarray(value)
