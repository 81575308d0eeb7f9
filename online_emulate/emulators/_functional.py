"""The pure-function view of a brainstate emulator.

Configurations, `jax.grad`, optax and K-FAC work on a parameter PyTree and a pure
function; the brainstate module keeps the same parameters for online learning. These
helpers convert between the two without copying the model definition.
"""

from __future__ import annotations

from typing import Any

import brainstate
import jax

__all__ = ["get_params", "set_params"]

Params = dict[str, Any]


def _param_states(emulator) -> dict[tuple, Any]:
    return dict(emulator.states(brainstate.ParamState).items())


def _nest(flat: dict[tuple, Any]) -> Params:
    """{('a', 'b'): x} -> {'a': {'b': x}} (integer path keys stay ints: list layers)."""
    out: Params = {}
    for path, value in flat.items():
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return out


def _lookup(params: Params, path: tuple):
    node = params
    for k in path:
        try:
            node = node[k]
        except (KeyError, IndexError, TypeError):
            raise ValueError(
                "params: expected the structure of get_params(emulator), got no entry "
                f"{'/'.join(map(str, path))}"
            ) from None
    return node


def _check_module(emulator) -> None:
    if not isinstance(emulator, brainstate.nn.Module):
        raise TypeError(
            "emulator: expected a brainstate.nn.Module (e.g. online_emulate.emulators."
            f"LinearStencil), got {type(emulator).__name__}"
        )


def get_params(emulator: brainstate.nn.Module) -> Params:
    """The trainable parameters of `emulator` as a plain nested dict of arrays.

    Raises:
        TypeError: if `emulator` is not a brainstate module.
    """
    _check_module(emulator)
    return _nest({path: state.value for path, state in _param_states(emulator).items()})


def set_params(emulator: brainstate.nn.Module, params: Params) -> brainstate.nn.Module:
    """Write a nested dict of arrays (as from `get_params`) into `emulator`, in place.

    Returns:
        The same emulator, for chaining.

    Raises:
        TypeError: if `emulator` is not a brainstate module.
        ValueError: if the structure or a shape of `params` differs from the emulator's.
    """
    _check_module(emulator)
    states = _param_states(emulator)
    current = _nest({path: state.value for path, state in states.items()})
    if jax.tree_util.tree_structure(current) != jax.tree_util.tree_structure(params):
        raise ValueError(
            "params: expected the structure of get_params(emulator), "
            f"{jax.tree_util.tree_structure(current)}, got "
            f"{jax.tree_util.tree_structure(params)}"
        )
    for path, state in states.items():
        value = _lookup(params, path)
        # a state may hold a dict of arrays (braintrace.nn layers: weight and bias)
        want = [tuple(x.shape) for x in jax.tree_util.tree_leaves(state.value)]
        got = [tuple(x.shape) for x in jax.tree_util.tree_leaves(value)]
        if want != got:
            raise ValueError(
                f"params: entry {'/'.join(map(str, path))} expected shape "
                f"{want[0] if len(want) == 1 else want}, got {got[0] if len(got) == 1 else got}"
            )
        state.value = value
    return emulator
