"""Bounded caches keyed by value: what the estimators compile or choose once per problem,
and the modules the model adapters lift for eligibility traces.

Estimators are immutable, so nothing they compute is stored on them; a cache here is
keyed by the estimator's value and the problem's (configuration options, functions,
array shapes), so equal objects built anew share an entry.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import weakref
from typing import Any, Callable, Hashable

import jax
import numpy as np

__all__ = ["BoundedCache", "cache_key", "identity_key", "shapes_key"]


#: id(x) -> (weak reference to x, its token), for the objects keyed by identity
_IDENTITIES: dict[int, tuple[weakref.ref, int]] = {}
_TOKENS = itertools.count()


def identity_key(x: Any) -> Hashable:
    """`("id", n)`: `n` names `x` while it lives and is never given to another object
    (a dead object's `id` is reused by later ones). An object that takes no weak
    reference is named by its `id`: whoever keys by it must keep it alive."""
    entry = _IDENTITIES.get(id(x))
    if entry is not None and entry[0]() is x:
        return ("id", entry[1])
    try:
        ref = weakref.ref(x, lambda _, i=id(x): _IDENTITIES.pop(i, None))
    except TypeError:
        return ("id", id(x))
    _IDENTITIES[id(x)] = (ref, next(_TOKENS))
    return ("id", _IDENTITIES[id(x)][1])


def cache_key(x: Any) -> Hashable:
    """A hashable stand-in for `x`: dataclass options by value (arrays by their
    contents), tuples and lists element by element, other hashables as themselves,
    anything else (a traced array, a module holding arrays) by identity
    (`identity_key`)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x),) + tuple(cache_key(getattr(x, f.name)) for f in dataclasses.fields(x))
    if isinstance(x, (tuple, list)):
        return (type(x),) + tuple(cache_key(v) for v in x)
    if isinstance(x, (np.ndarray, jax.Array)) and not isinstance(x, jax.core.Tracer):
        a = np.asarray(x)
        return ("array", a.shape, str(a.dtype), a.tobytes())
    try:
        hash(x)
    except TypeError:
        return identity_key(x)
    return x


def shapes_key(tree: Any) -> Hashable:
    """The structure, shapes and dtypes of a PyTree of arrays (not their values)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(np.shape(x)), str(getattr(x, "dtype", type(x)))) for x in leaves)


class BoundedCache:
    """At most `size` entries, the least recently used dropped first.

    `get(key, build, keep=...)` returns the entry of `key`, building it on a miss;
    `keep` (the objects the key names by identity) is held with the entry, so an
    identity key is never reused by another object while the entry lives.
    """

    def __init__(self, size: int):
        self.size = size
        self._entries: collections.OrderedDict = collections.OrderedDict()

    def get(self, key: Hashable, build: Callable[[], Any], *, keep: Any = None) -> Any:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key][0]
        value = build()
        self._entries[key] = (value, keep)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def items(self):
        """`(key, value)` pairs, oldest first."""
        return [(k, v) for k, (v, _) in self._entries.items()]
