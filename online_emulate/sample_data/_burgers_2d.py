"""2-D viscous Burgers (two velocity channels) by exponax's ETDRK2 solver."""

from __future__ import annotations

import exponax as ex
from jaxtyping import Array, Float, PRNGKeyArray

from ._exponax import PDES, make_stepper, stepper_docs, trajectories, trajectory_docs

_SPEC = PDES["burgers_2d"]


@stepper_docs
def make_burgers_2d_stepper(
    num_points: int = 32, *, dt: float = 0.01, domain_extent: float = 1.0,
    diffusivity: float = 0.02, convection_scale: float = 1.0,
) -> ex.stepper.Burgers:
    """Reference stepper of 2-D periodic viscous Burgers for the velocity
    u = (u_1, u_2) on the square (0, L)^2 with N x N points.

    PDE (per component i, summation over j):

        (u_i)_t + b * 1/2 d_j (u_j u_i) = nu * Laplacian(u_i),
        b = convection_scale, nu = diffusivity,

    integrated by exponax `Burgers` (ETDRK2, 2/3 dealiasing).
    """
    return make_stepper(_SPEC, **locals())


@trajectory_docs
def burgers_2d(
    num_points: int = 32, num_samples: int = 20, *, temporal_horizon: int = 100,
    key: PRNGKeyArray, dt: float = 0.01, domain_extent: float = 1.0, diffusivity: float = 0.02,
    convection_scale: float = 1.0, highest_init_mode: int = 4, warmup_steps: int = 0,
) -> Float[Array, "num_samples temporal_horizon+1 2 num_points num_points"]:
    """Trajectories of 2-D periodic viscous Burgers,
    u_t + b 1/2 div(u u^T) = nu Laplacian(u), for the two-component velocity u.

    The stepper is `make_burgers_2d_stepper` with the same physics arguments.
    """
    return trajectories(_SPEC, **locals())
