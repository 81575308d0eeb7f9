"""Store a trained model for inference and load it elsewhere, without pickle.

`save_emulator` stores every model kind the trainers accept, in one `.npz` of arrays
plus a JSON description (`online_emulate._storage`):

* a built-in emulator (`LinearStencil`, `ConvNet`): its architecture and weights;
  `load_emulator(path)` rebuilds it;
* an equinox module: its array leaves (equinox's leaf order) and, where the layers are
  ones the library can describe (`_skeleton.describe_skeleton`: equinox convolutions,
  `Linear`, `Sequential`, `Lambda` of a named activation, pdequinox's `ConvNet`), a
  description of its skeleton; `load_emulator(path)` rebuilds those, any other is
  loaded into a model of the same architecture, `load_emulator(path, like=model)`;
* an `(apply, params)` pair: its parameters; `load_emulator(path, like=apply)` gives
  the pair back (a function cannot be stored without running code to load it);
* your own brainstate module: its `ParamState`s; `load_emulator(path, like=module)`.

Loading executes nothing from the file: a description selects one of a fixed set of
layer types and named activations, and every array is checked against the model it
goes into.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from .._storage import load_checkpoint, restore_tree, save_checkpoint
from ._activations import ACTIVATIONS, activation_name
from ._adapters import adapt
from ._conv_net import ConvNet
from ._functional import Params, get_params, set_params
from ._linear_stencil import LinearStencil
from ._skeleton import array_leaves, build_skeleton, describe_skeleton, with_array_leaves

__all__ = ["describe_emulator", "build_emulator", "save_emulator", "load_emulator", "save_weights", "load_weights"]

def _conv_spec(conv) -> dict:
    return {
        "kernel_size": [int(k) for k in conv.kernel_size],
        "use_bias": conv.bias is not None,
        "dtype": str(np.dtype(conv.weight.value.dtype)),
    }


def describe_emulator(emulator: brainstate.nn.Module) -> dict:
    """A JSON description from which `build_emulator` makes the same architecture.

    Raises:
        TypeError: for an emulator that is not a built-in one (use `save_weights`).
        ValueError: for a ConvNet whose activation is not one of jax's named ones.
    """
    base = {
        "num_spatial_dims": int(emulator.num_spatial_dims) if hasattr(emulator, "num_spatial_dims") else None,
        "in_channels": getattr(emulator, "in_channels", None),
        "out_channels": getattr(emulator, "out_channels", None),
    }
    if type(emulator) is LinearStencil:
        return {"kind": "LinearStencil", **base, **_conv_spec(emulator.conv)}
    if type(emulator) is ConvNet:
        name = activation_name(emulator.activation)
        if name is None:
            raise ValueError(
                f"emulator: expected an activation with a stored name (one of "
                f"{', '.join(ACTIVATIONS)}), got {emulator.activation!r}; store the weights "
                "with save_weights"
            )
        spec = _conv_spec(emulator.layers[0])
        return {
            "kind": "ConvNet", **base, **spec, "hidden_channels": int(emulator.hidden_channels),
            "depth": int(emulator.depth), "activation": name, "residual": bool(emulator.residual),
        }
    raise TypeError(
        f"emulator: expected a built-in LinearStencil or ConvNet (what save_emulator "
        f"stores), got {type(emulator).__name__}; for your own module store the weights with "
        "save_weights and restore them with set_params(model, load_weights(path))"
    )


def build_emulator(spec: dict) -> LinearStencil | ConvNet:
    """The (freshly initialised) emulator a `describe_emulator` dict describes.

    Raises:
        ValueError: for a description this version cannot build.
    """
    try:
        kind = spec["kind"]
        common = dict(
            kernel_size=tuple(spec["kernel_size"]), use_bias=bool(spec["use_bias"]),
            dtype=jnp.dtype(spec["dtype"]),
        )
        args = (spec["num_spatial_dims"], spec["in_channels"], spec["out_channels"])
        if kind == "LinearStencil":
            return LinearStencil(*args, **common)
        if kind == "ConvNet":
            if spec["activation"] not in ACTIVATIONS:
                raise ValueError(
                    f"spec['activation']: expected one of {sorted(ACTIVATIONS)}, got "
                    f"{spec['activation']!r}"
                )
            return ConvNet(
                *args, hidden_channels=spec["hidden_channels"], depth=spec["depth"],
                activation=ACTIVATIONS[spec["activation"]], residual=spec["residual"], **common,
            )
    except (KeyError, TypeError) as err:
        raise ValueError(f"spec: expected a complete emulator description, got one failing "
                         f"with {type(err).__name__}: {err}") from None
    raise ValueError(f"spec: expected kind LinearStencil or ConvNet, got {kind!r}")


def _class_name(model) -> str:
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def save_emulator(path: str | os.PathLike, emulator: Any) -> str:
    """Store a model of any kind the trainers accept in one `.npz` (atomically, process
    0 only; see the module docstring for what is stored per kind).

    Arguments:
        path: the file (conventionally `*.npz`).
        emulator: a built-in emulator, an equinox module, an `(apply, params)` pair or
            a brainstate module.

    Returns:
        The path, as a string.

    Raises:
        TypeError: for anything that is not a model (see `emulators.adapt`).
        ValueError: for a built-in ConvNet whose activation has no stored name.
    """
    adapter = adapt(emulator)
    if type(emulator) in (LinearStencil, ConvNet):
        return save_checkpoint(path, {"params": get_params(emulator)}, model=describe_emulator(emulator))
    if adapter.kind == "equinox":
        model = {"kind": "equinox", "type": _class_name(emulator),
                 "skeleton": describe_skeleton(emulator)}
        return save_checkpoint(path, {"params": array_leaves(emulator)}, model=model)
    if adapter.kind == "pair":
        model = {"kind": "pair", "apply": getattr(emulator[0], "__qualname__", None)}
        return save_checkpoint(path, {"params": adapter.params}, model=model)
    model = {"kind": "brainstate", "type": _class_name(emulator)}
    return save_checkpoint(path, {"params": get_params(emulator)}, model=model)


def load_emulator(path: str | os.PathLike, *, like: Any = None) -> Any:
    """The model `save_emulator` stored at `path` (no code from the file is executed).

    Arguments:
        path: the file.
        like: what the weights go into, where the file cannot say how to build the
            model: a model of the same architecture (an equinox module whose layers
            have no stored description, your own brainstate module; its own weights
            are not used and it is not modified), or for an `(apply, params)` pair
            the function `apply` (or a pair whose params serve as the template).
            Given for a built-in emulator or a described equinox module, the weights
            go into `like` instead of a rebuilt model.

    Returns:
        A model of the stored kind: a built-in emulator, an equinox module, an
        `(apply, params)` pair or a brainstate module.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: naming `path`, for a foreign, truncated or mismatched file, a file
            holding weights only (see `load_weights`), or one that needs `like=`.
    """
    where = os.fspath(path)
    blob = load_checkpoint(path)
    spec, params = blob.get("model"), blob.get("params")
    if spec is None:
        if like is not None:
            return _into_like(like, params, where)
        raise ValueError(
            f"path: expected a stored emulator (architecture and weights), got weights "
            f"only in {where!r}; pass like=a model of the same architecture, or build the "
            "model yourself and call set_params(model, load_weights(path))"
        )
    kind = spec.get("kind")
    if kind == "equinox":
        if like is None and spec.get("skeleton") is None:
            raise ValueError(
                f"like: expected a model of the stored architecture ({spec.get('type')}, "
                f"whose layers have no stored description) to load {where!r} into, got None"
            )
        if like is None:
            like = _rebuilt(build_skeleton, spec["skeleton"], where)
        if not isinstance(params, list):
            raise ValueError(f"path: expected a list of equinox array leaves, got "
                             f"{type(params).__name__} in {where!r}")
        return with_array_leaves(like, params, path=where)
    if kind == "pair":
        if like is None:
            raise ValueError(
                f"like: expected the function apply(params, u) of the stored (apply, params) "
                f"pair (apply={spec.get('apply')}; a function is not stored), got None"
            )
        if callable(like):
            return (like, jax.tree_util.tree_map(jnp.asarray, params))
        return _into_like(like, params, where)
    if kind == "brainstate" and like is None:
        raise ValueError(
            f"like: expected a brainstate module of the stored architecture "
            f"({spec.get('type')}) to load {where!r} into, got None"
        )
    if like is not None:
        return _into_like(like, params, where)
    emulator = _rebuilt(build_emulator, spec, where)
    _set_checked(emulator, params, path)
    return emulator


def _rebuilt(build: Callable, spec: dict, where: str):
    try:
        return build(spec)
    except ValueError as err:
        raise ValueError(f"path: expected a valid emulator description, got one in "
                         f"{where!r} failing with: {err}") from None


def _into_like(like, params, where: str):
    """A model of `like`'s kind holding the stored `params` (checked against `like`)."""
    try:
        adapter = adapt(like)
    except TypeError:
        raise TypeError(f"like: expected a model of the stored architecture (see "
                        f"emulators.adapt), got {type(like).__name__}") from None
    if adapter.kind == "equinox" and isinstance(params, list):
        return with_array_leaves(like, params, path=where)
    if adapter.kind == "brainstate":
        emulator = copy.deepcopy(like)
        _set_checked(emulator, params, where)
        return emulator
    stored = restore_tree(params, adapter.params, path=where, name="parameter tree")
    return adapter.merge(jax.tree_util.tree_map(jnp.asarray, stored))


def _set_checked(emulator, params, path):
    expected = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), get_params(emulator))
    got = jax.tree_util.tree_map(lambda x: (np.shape(x), np.asarray(x).dtype), params)
    if got != expected:
        raise ValueError(f"path: expected weights matching the model's {expected}, got {got} "
                         f"in {os.fspath(path)!r}")
    set_params(emulator, jax.tree_util.tree_map(jnp.asarray, params))


def save_weights(path: str | os.PathLike, emulator_or_params: brainstate.nn.Module | Params) -> str:
    """Store only the weights (a brainstate module's `get_params`, or a parameter dict).
    Returns the path. Restore with `set_params(model, load_weights(path))`.

    Raises:
        TypeError: for anything else (`save_emulator` stores every model kind).
    """
    params = emulator_or_params
    if not isinstance(params, (dict, brainstate.nn.Module)):
        raise TypeError(
            "emulator_or_params: expected a brainstate module or a parameter dict, got "
            f"{type(params).__name__}; save_emulator stores every model kind (equinox "
            "modules and (apply, params) pairs too)"
        )
    if not isinstance(params, dict):
        params = get_params(emulator_or_params)
    return save_checkpoint(path, {"params": params})


def load_weights(path: str | os.PathLike) -> dict:
    """The parameter dict stored by `save_weights` or `save_emulator` (numpy arrays)."""
    blob = load_checkpoint(path)
    if "params" not in blob:
        raise ValueError(f"path: expected stored weights, got none in {os.fspath(path)!r}")
    return blob["params"]
