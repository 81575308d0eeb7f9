"""Reference trajectories and reference steppers for training PDE emulators.

Every data generator returns float32 arrays laid out `(samples, time, C, *N)`;
every stepper acts on one state `(C, *N)` and is the exact stepper that produced
that problem's data (usable as `ref_stepper` of diverted-chain configurations).
`get_problem(name, **overrides)` bundles both with metadata and with
`sample_initial_conditions(num, key)`, the data's first level without the rollout
(what a trainer that streams from the solver draws).
"""

from ._advection import (
    advection_1d_initial_conditions,
    advection_1d_periodic,
    advection_1d_stepper,
)
from ._burgers import burgers_1d, make_burgers_1d_stepper
from ._burgers_2d import burgers_2d, make_burgers_2d_stepper
from ._diffusion import diffusion_1d, make_diffusion_1d_stepper
from ._kuramoto_sivashinsky import (
    kuramoto_sivashinsky_1d,
    make_kuramoto_sivashinsky_1d_stepper,
)
from ._problem import PROBLEMS, Problem, ProblemSpec, get_problem

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
