"""1-D viscous Burgers by exponax's ETDRK2 spectral solver."""

from __future__ import annotations

import exponax as ex
from jaxtyping import Array, Float, PRNGKeyArray

from ._exponax import PDES, make_stepper, stepper_docs, trajectories, trajectory_docs

_SPEC = PDES["burgers_1d"]


@stepper_docs
def make_burgers_1d_stepper(
    num_points: int = 64, *, dt: float = 0.01, domain_extent: float = 1.0,
    diffusivity: float = 0.01, convection_scale: float = 1.0,
) -> ex.stepper.Burgers:
    """Reference stepper of 1-D periodic viscous Burgers.

    PDE on the periodic domain (0, domain_extent):

        u_t + b * 1/2 (u^2)_x = nu * u_xx,   b = convection_scale, nu = diffusivity,

    integrated by exponax `Burgers` (ETDRK2, 2/3 dealiasing).
    """
    return make_stepper(_SPEC, **locals())


@trajectory_docs
def burgers_1d(
    num_points: int = 64, num_samples: int = 20, *, temporal_horizon: int = 100,
    key: PRNGKeyArray, dt: float = 0.01, domain_extent: float = 1.0, diffusivity: float = 0.01,
    convection_scale: float = 1.0, highest_init_mode: int = 5, warmup_steps: int = 0,
) -> Float[Array, "num_samples temporal_horizon+1 1 num_points"]:
    """Trajectories of 1-D periodic viscous Burgers, u_t + b 1/2 (u^2)_x = nu u_xx.

    The stepper is `make_burgers_1d_stepper` with the same physics arguments.
    """
    return trajectories(_SPEC, **locals())
