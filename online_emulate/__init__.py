"""online_emulate: unrolled and online training of autoregressive neural PDE emulators.

A configuration (`online_emulate.configuration`) says what the loss is; an estimator
(`online_emulate.estimators`) says how its gradient is computed; trainers
(`online_emulate.trainer`, `online_emulate.online`) combine them with data and an optax
or K-FAC optimizer. One brainstate emulator (`online_emulate.emulators`) serves all.
"""

__version__ = "0.1.0"

from . import (
    callback,
    configuration,
    data,
    emulators,
    estimators,
    loss,
    metrics,
    plot,
    sample_data,
    trainer,
)
from .estimators import gradient_fidelity, value_and_grad

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
