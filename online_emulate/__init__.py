"""online_emulate: unrolled and online training of autoregressive neural PDE emulators.

A configuration (`online_emulate.configuration`) says what the loss is; an estimator
(`online_emulate.estimators`) says how its gradient is computed; trainers
(`online_emulate.trainer`, streaming included) combine them with data and an optax
or K-FAC optimizer. One brainstate emulator (`online_emulate.emulators`) serves all.
"""

__version__ = "0.1.0"

import importlib as _importlib

# Subpackages load on first attribute access (PEP 562), so `import online_emulate` costs
# nothing and plotting (matplotlib) or the braintrace bridge (`online`) load only when used.
_SUBPACKAGES = frozenset({
    "callback", "cli", "configuration", "data", "emulators", "estimators", "loss",
    "metrics", "online", "optim", "plot", "sample_data", "trainer",
})
_FROM_ESTIMATORS = frozenset({"value_and_grad", "gradient_fidelity"})


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"{__name__}.{name}")
    if name in _FROM_ESTIMATORS:
        return getattr(_importlib.import_module(f"{__name__}.estimators"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBPACKAGES | _FROM_ESTIMATORS)

__all__ = [
    "callback",
    "configuration",
    "data",
    "emulators",
    "estimators",
    "loss",
    "metrics",
    "plot",
    "sample_data",
    "trainer",
    "value_and_grad",
    "gradient_fidelity",
]
