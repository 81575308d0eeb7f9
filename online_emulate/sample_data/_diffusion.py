"""1-D diffusion by exponax's exact (ETDRK0) spectral solver."""

from __future__ import annotations

import exponax as ex
from jaxtyping import Array, Float, PRNGKeyArray

from ._exponax import PDES, make_stepper, stepper_docs, trajectories, trajectory_docs

_SPEC = PDES["diffusion_1d"]


@stepper_docs
def make_diffusion_1d_stepper(
    num_points: int = 64, *, dt: float = 0.01, domain_extent: float = 1.0,
    diffusivity: float = 0.01,
) -> ex.stepper.Diffusion:
    """Reference stepper of 1-D periodic diffusion.

    PDE on the periodic domain (0, domain_extent):

        u_t = nu * u_xx,      nu = diffusivity,

    solved exactly in Fourier space (exponax `Diffusion`, mode k multiplied by
    exp(-nu (2 pi k / L)^2 dt) per step).
    """
    return make_stepper(_SPEC, **locals())


@trajectory_docs
def diffusion_1d(
    num_points: int = 64, num_samples: int = 20, *, temporal_horizon: int = 100,
    key: PRNGKeyArray, dt: float = 0.01, domain_extent: float = 1.0, diffusivity: float = 0.01,
    highest_init_mode: int = 5, warmup_steps: int = 0,
) -> Float[Array, "num_samples temporal_horizon+1 1 num_points"]:
    """Trajectories of 1-D periodic diffusion, u_t = nu * u_xx.

    The stepper is `make_diffusion_1d_stepper` with the same physics arguments.
    """
    return trajectories(_SPEC, **locals())
