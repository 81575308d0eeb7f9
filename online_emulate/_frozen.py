"""The one immutability scheme of the library's option objects (configurations,
estimators): frozen dataclasses whose hand-written `__init__` validates the options
and stores them once.

A frozen dataclass refuses attribute assignment (`dataclasses.FrozenInstanceError`, an
AttributeError), lists its options as `dataclasses.fields` (for repr, equality and
cache keys) and keeps the constructors' real signatures (trainax's positional counts,
keyword-only options), which a generated `__init__` would not give. Nothing mutable is
stored on such an object: caches live where the work happens (a `Bound`, or a bounded
module-level cache keyed by the object's value).
"""

from __future__ import annotations

import dataclasses

__all__ = ["Frozen", "frozen"]


def frozen(cls=None, *, eq: bool = True):
    """`dataclasses.dataclass(frozen=True, init=False, repr=False, eq=eq)`.

    Arguments:
        cls: the class (when used as a bare decorator).
        eq: value equality and hashing over the fields (False: identity, for objects
            holding arrays).
    """
    wrap = dataclasses.dataclass(frozen=True, init=False, repr=False, eq=eq)
    return wrap if cls is None else wrap(cls)


class Frozen:
    """Base of the frozen option objects: `__init__` validates, then calls `_set` once."""

    def _set(self, **fields) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)
