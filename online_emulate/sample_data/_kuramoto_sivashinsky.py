"""1-D Kuramoto-Sivashinsky (conservative / fluid form) by exponax's ETDRK2 solver."""

from __future__ import annotations

import exponax as ex
from jaxtyping import Array, Float, PRNGKeyArray

from ._exponax import PDES, make_stepper, stepper_docs, trajectories, trajectory_docs

_SPEC = PDES["ks_1d"]


@stepper_docs
def make_kuramoto_sivashinsky_1d_stepper(
    num_points: int = 64, *, dt: float = 0.5, domain_extent: float = 32.0,
) -> ex.stepper.KuramotoSivashinskyConservative:
    """Reference stepper of the 1-D periodic Kuramoto-Sivashinsky equation in its
    conservative (fluid-dynamics) form.

    PDE on the periodic domain (0, domain_extent):

        u_t + 1/2 (u^2)_x + u_xx + u_xxxx = 0,

    integrated by exponax `KuramotoSivashinskyConservative` (ETDRK2, 2/3
    dealiasing). The dynamics are chaotic for domain lengths above about 22.
    """
    return make_stepper(_SPEC, **locals())


@trajectory_docs
def kuramoto_sivashinsky_1d(
    num_points: int = 64, num_samples: int = 20, *, temporal_horizon: int = 100,
    key: PRNGKeyArray, dt: float = 0.5, domain_extent: float = 32.0, highest_init_mode: int = 5,
    warmup_steps: int = 200,
) -> Float[Array, "num_samples temporal_horizon+1 1 num_points"]:
    """Trajectories of 1-D periodic Kuramoto-Sivashinsky,
    u_t + 1/2 (u^2)_x + u_xx + u_xxxx = 0, on its chaotic attractor.

    The default `warmup_steps=200` (100 time units) starts every trajectory on the
    attractor. The stepper is `make_kuramoto_sivashinsky_1d_stepper`.
    """
    return trajectories(_SPEC, **locals())
