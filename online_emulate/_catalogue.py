"""A catalogue: names -> factories of option objects (configurations, estimators), in
registration order. The command line's choices and error messages and `estimators.plan`'s
rows are read from one, so an entry registered from outside the package is in them all."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping

__all__ = ["Catalogue"]


class Catalogue:
    """Names -> `factory(options)`, each with the defaults of the options it takes.

    Arguments:
        option: what a name is given as, for error messages ("--estimator").
    """

    def __init__(self, option: str):
        self.option, self._entries = option, {}

    def register(self, name: str, factory: Callable[[Mapping], Any], **defaults: Any) -> None:
        """Add `name`; its `defaults` replace the options that are missing or None.

        Raises:
            ValueError: `name` is registered already.
        """
        if name in self._entries:
            raise ValueError(f"name: expected a name new to the {self.option} catalogue, got {name!r}")
        self._entries[name] = (factory, defaults)

    @contextlib.contextmanager
    def registered(self, name: str, factory: Callable[[Mapping], Any], **defaults: Any) -> Iterator[None]:
        """`register` for the duration of a `with` block."""
        self.register(name, factory, **defaults)
        try:
            yield
        finally:
            del self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def takes(self, name: str) -> dict[str, Any]:
        """The options with defaults that `name` takes, and the defaults."""
        return dict(self._lookup(name)[1])

    def make(self, name: str, options: Mapping[str, Any] = {}) -> Any:  # noqa: B006 (only read)
        """The object of `name` from `options`.

        Raises:
            ValueError: `name` is not registered (naming those that are), or the factory's.
        """
        factory, defaults = self._lookup(name)
        return factory({**options, **{k: v for k, v in defaults.items() if options.get(k) is None}})

    def _lookup(self, name: str) -> tuple:
        if name not in self._entries:
            raise ValueError(f"{self.option}: expected one of {', '.join(self._entries)}, got {name!r}")
        return self._entries[name]
