"""Store a trained emulator for inference and load it elsewhere, without pickle.

`save_emulator` writes the architecture of a built-in emulator (`LinearStencil`,
`ConvNet`) as JSON and its weights as arrays, in one `.npz`; `load_emulator` rebuilds
it. A user-defined module has no description the library can trust, so for it only
the weights are stored (`save_weights`), and the user restores them into a model they
build themselves:

    model = MyEmulator(...)                     # same architecture as when saved
    set_params(model, load_weights("w.npz"))    # checked against the model's layout
"""

from __future__ import annotations

import os

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from .._storage import load_checkpoint, save_checkpoint
from ._conv_net import ConvNet
from ._functional import Params, get_params, set_params
from ._linear_stencil import LinearStencil

__all__ = ["describe_emulator", "build_emulator", "save_emulator", "load_emulator", "save_weights", "load_weights"]

# activations a description may name (a stored name selects one of these; nothing else)
_ACTIVATIONS = {
    "relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh, "silu": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus, "elu": jax.nn.elu,
    "leaky_relu": jax.nn.leaky_relu,
}


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
        names = [n for n, f in _ACTIVATIONS.items() if f is emulator.activation]
        if not names:
            raise ValueError(
                f"emulator: expected an activation with a stored name (one of "
                f"{', '.join(_ACTIVATIONS)}), got {emulator.activation!r}; store the weights "
                "with save_weights"
            )
        spec = _conv_spec(emulator.layers[0])
        return {
            "kind": "ConvNet", **base, **spec, "hidden_channels": int(emulator.hidden_channels),
            "depth": int(emulator.depth), "activation": names[0], "residual": bool(emulator.residual),
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
            if spec["activation"] not in _ACTIVATIONS:
                raise ValueError(
                    f"spec['activation']: expected one of {sorted(_ACTIVATIONS)}, got "
                    f"{spec['activation']!r}"
                )
            return ConvNet(
                *args, hidden_channels=spec["hidden_channels"], depth=spec["depth"],
                activation=_ACTIVATIONS[spec["activation"]], residual=spec["residual"], **common,
            )
    except (KeyError, TypeError) as err:
        raise ValueError(f"spec: expected a complete emulator description, got one failing "
                         f"with {type(err).__name__}: {err}") from None
    raise ValueError(f"spec: expected kind LinearStencil or ConvNet, got {kind!r}")


def save_emulator(path: str | os.PathLike, emulator: LinearStencil | ConvNet) -> str:
    """Store a built-in emulator (architecture + weights) in one `.npz` (atomically,
    process 0 only). Returns the path.

    Raises:
        TypeError / ValueError: see `describe_emulator`.
    """
    spec = describe_emulator(emulator)
    return save_checkpoint(path, {"params": get_params(emulator)}, model=spec)


def load_emulator(path: str | os.PathLike) -> LinearStencil | ConvNet:
    """Rebuild the emulator `save_emulator` stored at `path` (no code is executed).

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: naming `path`, for a foreign, truncated or mismatched file, or a file
            holding weights only (see `load_weights`).
    """
    blob = load_checkpoint(path)
    if blob.get("model") is None:
        raise ValueError(
            f"path: expected a stored emulator (architecture and weights), got weights "
            f"only in {os.fspath(path)!r}; build the model yourself and call "
            "set_params(model, load_weights(path))"
        )
    try:
        emulator = build_emulator(blob["model"])
    except ValueError as err:
        raise ValueError(f"path: expected a valid emulator description, got one in "
                         f"{os.fspath(path)!r} failing with: {err}") from None
    _set_checked(emulator, blob.get("params"), path)
    return emulator


def _set_checked(emulator, params, path):
    expected = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), get_params(emulator))
    got = jax.tree_util.tree_map(lambda x: (np.shape(x), np.asarray(x).dtype), params)
    if got != expected:
        raise ValueError(f"path: expected weights matching the model's {expected}, got {got} "
                         f"in {os.fspath(path)!r}")
    set_params(emulator, jax.tree_util.tree_map(jnp.asarray, params))


def save_weights(path: str | os.PathLike, emulator_or_params: brainstate.nn.Module | Params) -> str:
    """Store only the weights (a module's `get_params`, or a parameter dict). Returns
    the path. Restore with `set_params(model, load_weights(path))`."""
    params = emulator_or_params
    if not isinstance(params, dict):
        params = get_params(emulator_or_params)
    return save_checkpoint(path, {"params": params})


def load_weights(path: str | os.PathLike) -> dict:
    """The parameter dict stored by `save_weights` or `save_emulator` (numpy arrays)."""
    blob = load_checkpoint(path)
    if "params" not in blob:
        raise ValueError(f"path: expected stored weights, got none in {os.fspath(path)!r}")
    return blob["params"]
