"""Reference trajectories and reference steppers for training PDE emulators.

Every data generator returns float32 arrays laid out `(samples, time, C, *N)`;
every stepper acts on one state `(C, *N)` and is the exact stepper that produced
that problem's data (usable as `ref_stepper` of diverted-chain configurations).
`get_problem(name, **overrides)` bundles both with metadata and with
`sample_initial_conditions(num, key)`, the data's first level without the rollout
(what a trainer that streams from the solver draws).
"""

import importlib as _importlib

from ._advection import (
    advection_1d_initial_conditions,
    advection_1d_periodic,
    advection_1d_stepper,
)

# The exponax problems and the registry load exponax (about 0.35 s in a fresh process);
# they load on first access (PEP 562), so the exact advection data (the quickstart's)
# comes without it.
_LAZY = {
    "diffusion_1d": "_diffusion", "make_diffusion_1d_stepper": "_diffusion",
    "burgers_1d": "_burgers", "make_burgers_1d_stepper": "_burgers",
    "kuramoto_sivashinsky_1d": "_kuramoto_sivashinsky",
    "make_kuramoto_sivashinsky_1d_stepper": "_kuramoto_sivashinsky",
    "burgers_2d": "_burgers_2d", "make_burgers_2d_stepper": "_burgers_2d",
    "Problem": "_problem", "ProblemSpec": "_problem", "PROBLEMS": "_problem",
    "get_problem": "_problem",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(_importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "advection_1d_periodic",
    "advection_1d_stepper",
    "advection_1d_initial_conditions",
    "diffusion_1d",
    "make_diffusion_1d_stepper",
    "burgers_1d",
    "make_burgers_1d_stepper",
    "kuramoto_sivashinsky_1d",
    "make_kuramoto_sivashinsky_1d_stepper",
    "burgers_2d",
    "make_burgers_2d_stepper",
    "Problem",
    "ProblemSpec",
    "PROBLEMS",
    "get_problem",
]
