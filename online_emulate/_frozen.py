"""The one immutability scheme of the library's option objects (configurations,
estimators): frozen dataclasses, validated at construction, by a hand-written
`__init__` (estimators) or in `__post_init__` after the generated one (the chain
configurations, whose options are declared with their checks).

A frozen dataclass refuses attribute assignment (`dataclasses.FrozenInstanceError`, an
AttributeError) and lists its options as `dataclasses.fields` (for repr, equality and
cache keys). Nothing mutable is stored on such an object: caches live where the work
happens (a `Bound`, or a bounded module-level cache keyed by the object's value).
"""

from __future__ import annotations

import dataclasses

__all__ = ["Frozen", "frozen"]


def frozen(cls=None, *, eq: bool = True, init: bool = False):
    """`dataclasses.dataclass(frozen=True, init=init, repr=False, eq=eq)`.

    Arguments:
        cls: the class (when used as a bare decorator).
        eq: value equality and hashing over the fields (False: identity, for objects
            holding arrays).
        init: generate `__init__` from the fields (positional ones first, then the
            keyword-only ones); False: the class writes its own.
    """
    wrap = dataclasses.dataclass(frozen=True, init=init, repr=False, eq=eq)
    return wrap if cls is None else wrap(cls)


class Frozen:
    """Base of the frozen option objects: `__init__` validates, then calls `_set` once."""

    def _set(self, **fields) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)
