"""JSON descriptions of equinox model skeletons, and the models they rebuild.

A skeleton is a model's structure without its weights: the constructor arguments of
each layer. `describe_skeleton` knows a fixed set of layer types (equinox's `Conv`,
`Conv1d/2d/3d`, `Linear`, `Sequential`, `Lambda` of a named activation, and pdequinox's
`arch.ConvNet`); a description names only these types and plain values, so building
it runs no code a file could choose. A description is kept only if the skeleton it
builds has the model's exact structure (checked when saving), so anything it cannot
describe faithfully gets None: such a model is loaded with `like=`.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Callable

import jax
import numpy as np

from ._activations import ACTIVATIONS, activation_name

__all__ = ["describe_skeleton", "build_skeleton", "array_leaves", "with_array_leaves"]

_CONVS = ("Conv", "Conv1d", "Conv2d", "Conv3d")
_PDX_CONV_NET = "pdequinox.arch.ConvNet"


def _equinox() -> ModuleType:
    # equinox (0.1 s to import) loads only when an equinox model is described, rebuilt
    # or saved: the built-in emulators never need it
    import equinox

    return equinox


class _Unsupported(Exception):
    """A part of the model no description covers."""


def _dtype(array) -> str:
    return str(np.dtype(array.dtype))


def _plain(value):
    """Tuples (possibly nested) as lists, for JSON."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _describe(node) -> dict:
    eqx = _equinox()
    cls = type(node)  # exact types: a subclass may hold or do more than its base
    if cls in (eqx.nn.Conv, eqx.nn.Conv1d, eqx.nn.Conv2d, eqx.nn.Conv3d):
        spec = {
            "type": f"equinox.nn.{cls.__name__}", "in_channels": node.in_channels,
            "out_channels": node.out_channels, "kernel_size": _plain(node.kernel_size),
            "stride": _plain(node.stride), "padding": _plain(node.padding),
            "dilation": _plain(node.dilation), "groups": node.groups,
            "use_bias": node.use_bias, "padding_mode": node.padding_mode,
            "dtype": _dtype(node.weight),
        }
        if cls is eqx.nn.Conv:
            spec["num_spatial_dims"] = node.num_spatial_dims
        return spec
    if cls is eqx.nn.Linear:
        return {"type": "equinox.nn.Linear", "in_features": node.in_features,
                "out_features": node.out_features, "use_bias": node.use_bias,
                "dtype": _dtype(node.weight)}
    if cls is eqx.nn.Sequential:
        return {"type": "equinox.nn.Sequential", "layers": [_describe(layer) for layer in node.layers]}
    if cls is eqx.nn.Lambda:
        return {"type": "equinox.nn.Lambda", "fn": _activation(node.fn)}
    pdx = sys.modules.get("pdequinox")  # a pdequinox model exists only once it is imported
    if pdx is not None and cls is pdx.arch.ConvNet:
        return _describe_pdx_conv_net(node)
    raise _Unsupported(cls.__name__)


def _activation(fn) -> str:
    name = activation_name(fn)
    if name is None:
        raise _Unsupported(repr(fn))
    return name


def _describe_pdx_conv_net(net) -> dict:
    first, last = net.layers[0], net.layers[-1]
    depth = len(net.layers) - 1
    default_final = getattr(sys.modules.get("pdequinox.arch._conv_net"), "_identity", None)
    spec = {
        "type": _PDX_CONV_NET, "num_spatial_dims": first.num_spatial_dims,
        "in_channels": first.in_channels, "out_channels": last.out_channels,
        "hidden_channels": first.out_channels if depth else 16, "depth": depth,
        "activation": _activation(net.activation), "kernel_size": first.kernel_size[0],
        "use_bias": first.use_bias, "use_final_bias": last.use_bias,
        "boundary_mode": first.boundary_mode,
    }
    if net.final_activation is not default_final:
        spec["final_activation"] = _activation(net.final_activation)
    return spec


def _build(spec: dict, key) -> Any:
    eqx = _equinox()
    kind = spec["type"]
    args = {k: v for k, v in spec.items() if k != "type"}
    if kind.startswith("equinox.nn.") and kind[11:] in _CONVS:
        if isinstance(args["padding"], list):  # pairs per axis (a string stays one)
            args["padding"] = [tuple(p) if isinstance(p, list) else p for p in args["padding"]]
        return getattr(eqx.nn, kind[11:])(**args, key=key)
    if kind == "equinox.nn.Linear":
        return eqx.nn.Linear(**args, key=key)
    if kind == "equinox.nn.Sequential":
        keys = jax.random.split(key, max(len(args["layers"]), 1))
        return eqx.nn.Sequential([_build(layer, k) for layer, k in zip(args["layers"], keys)])
    if kind == "equinox.nn.Lambda":
        return eqx.nn.Lambda(_named(args["fn"]))
    if kind == _PDX_CONV_NET:
        import pdequinox  # optional: only a pdequinox model's description needs it

        for name in ("activation", "final_activation"):
            if name in args:
                args[name] = _named(args[name])
        return pdequinox.arch.ConvNet(**args, key=key)
    raise ValueError(f"spec['type']: expected one of the described layer types, got {kind!r}")


def _named(name: str) -> Callable:
    if name not in ACTIVATIONS:
        raise ValueError(f"spec: expected an activation named one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def build_skeleton(spec: dict) -> Any:
    """The model a `describe_skeleton` description describes, freshly initialised.

    Raises:
        ValueError: for a description this version cannot build.
        ImportError: for a pdequinox model when pdequinox is not installed.
    """
    try:
        return _build(spec, jax.random.PRNGKey(0))
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"spec: expected a complete model description, got one failing "
                         f"with {type(err).__name__}: {err}") from None


def _same_structure(a, b) -> bool:
    eqx = _equinox()
    leaves_a, def_a = jax.tree_util.tree_flatten(a)
    leaves_b, def_b = jax.tree_util.tree_flatten(b)
    if def_a != def_b:
        return False
    for x, y in zip(leaves_a, leaves_b):
        if eqx.is_array(x) or eqx.is_array(y):
            if not (eqx.is_array(x) and eqx.is_array(y) and x.shape == y.shape and x.dtype == y.dtype):
                return False
        elif x is not y:
            return False
    return True


def describe_skeleton(model: Any) -> dict | None:
    """A JSON description from which `build_skeleton` makes a model of `model`'s exact
    structure (every layer, static field and array shape and dtype), or None when
    `model` holds a part no description covers."""
    try:
        spec = _describe(model)
        rebuilt = build_skeleton(spec)
    except (_Unsupported, ValueError, ImportError, AttributeError, IndexError, TypeError):
        return None
    return spec if _same_structure(rebuilt, model) else None


def array_leaves(model: Any) -> list:
    """The array leaves of `model`, in `jax.tree_util` order (equinox's leaf order)."""
    is_array = _equinox().is_array
    return [leaf for leaf in jax.tree_util.tree_leaves(model) if is_array(leaf)]


def with_array_leaves(like: Any, arrays: list, *, path: str) -> Any:
    """`like` with its array leaves replaced by `arrays` (same order), checked one by one.

    Raises:
        ValueError: naming `path`, for a different number of arrays or a shape or dtype
            that differs from `like`'s.
    """
    leaves, treedef = jax.tree_util.tree_flatten(like)
    is_array = _equinox().is_array
    where = [i for i, leaf in enumerate(leaves) if is_array(leaf)]
    if len(where) != len(arrays):
        raise ValueError(f"path: expected {len(where)} arrays (those of like=), got "
                         f"{len(arrays)} in {path!r}")
    for n, (i, stored) in enumerate(zip(where, arrays)):
        want = (tuple(leaves[i].shape), np.dtype(leaves[i].dtype))
        got = (tuple(np.shape(stored)), np.asarray(stored).dtype)
        if want != got:
            raise ValueError(f"path: expected array {n} as {want} (like=), got {got} in {path!r}")
        leaves[i] = jax.numpy.asarray(stored)
    return jax.tree_util.tree_unflatten(treedef, leaves)
