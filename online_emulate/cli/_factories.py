"""Build library objects from the command line's names and numbers."""

from __future__ import annotations

import jax
import optax

from .._catalogue import Catalogue
from ..configuration import CONFIGURATIONS
from ..estimators import ESTIMATORS
from ..emulators import ConvNet, LinearStencil
from ..optim import KFAC
from ..sample_data import PROBLEMS, get_problem

__all__ = [
    "CONFIGURATIONS",
    "ESTIMATORS",
    "EMULATORS",
    "OPTIMIZERS",
    "make_problem",
    "make_estimator",
    "make_residuum_fn",
]

#: by the emulator spec of config.json (kind, num_spatial_dims, channels, options, seed)
EMULATORS = Catalogue("--emulator")
EMULATORS.register("linear", lambda s: LinearStencil(
    s["num_spatial_dims"], s["channels"], s["channels"], kernel_size=s["kernel_size"], key=s["seed"]))
EMULATORS.register("convnet", lambda s: ConvNet(
    s["num_spatial_dims"], s["channels"], s["channels"], hidden_channels=s["hidden_channels"],
    depth=s["depth"], kernel_size=s["kernel_size"], residual=True, key=s["seed"]))
OPTIMIZERS = Catalogue("--optimizer")
OPTIMIZERS.register("adam", lambda o: optax.adam(o["learning_rate"]))
OPTIMIZERS.register("sgd", lambda o: optax.sgd(o["learning_rate"]))
OPTIMIZERS.register("kfac", lambda o: KFAC())


def make_problem(name: str, num_points: int | None = None):
    overrides = {} if num_points is None else {"num_points": num_points}
    return get_problem(name, **overrides)


def make_estimator(name: str, options=None):
    """The estimator `name` of the `ESTIMATORS` catalogue, from a run's `truncation`,
    `decay` and `num_checkpoints` (None: the estimator's default); refuses an option the
    estimator does not take."""
    options = options or {}
    for option, what in (("decay", "decay"), ("num_checkpoints", "checkpoint count")):
        takers = [n for n in ESTIMATORS.names() if option in ESTIMATORS.takes(n)]
        if options.get(option) is not None and name not in takers:
            raise ValueError(f"--{option.replace('_', '-')}: expected no {what} unless --estimator "
                             f"{' or '.join(takers)}, got --estimator {name}")
    return ESTIMATORS.make(name, options)


def make_residuum_fn(ref_stepper):
    """r(next, prev) = next - P(prev): zero exactly on the reference trajectories."""
    batched = jax.vmap(ref_stepper)

    def residuum_fn(nxt, prev):
        return nxt - batched(prev)

    return residuum_fn


PROBLEM_NAMES = tuple(PROBLEMS)
