"""1-D Kuramoto-Sivashinsky (conservative / fluid form) by exponax's ETDRK2 solver."""

from __future__ import annotations

import exponax as ex
from jaxtyping import Array, Float, PRNGKeyArray

from ._exponax import PDES, make_stepper, trajectories

_SPEC = PDES["ks_1d"]


def make_kuramoto_sivashinsky_1d_stepper(
    num_points: int = 64,
    *,
    dt: float = 0.5,
    domain_extent: float = 32.0,
) -> ex.stepper.KuramotoSivashinskyConservative:
    """Reference stepper of the 1-D periodic Kuramoto-Sivashinsky equation in its
    conservative (fluid-dynamics) form.

    PDE on the periodic domain (0, domain_extent):

        u_t + 1/2 (u^2)_x + u_xx + u_xxxx = 0,

    integrated by exponax ``KuramotoSivashinskyConservative`` (ETDRK2, 2/3
    dealiasing). The dynamics are chaotic for domain lengths above about 22.

    Arguments:
        num_points: grid points N (int >= 2).
        dt: time step (> 0).
        domain_extent: domain length L (> 0).

    Returns:
        An exponax stepper (an equinox module): ``stepper(u)`` maps one state
        ``(1, N)`` to the next; jit/vmap/grad compatible.

    Raises:
        TypeError / ValueError: naming the offending argument.
    """
    return make_stepper(
        _SPEC,
        num_points,
        dt=dt,
        domain_extent=domain_extent,
    )


def kuramoto_sivashinsky_1d(
    num_points: int = 64,
    num_samples: int = 20,
    *,
    temporal_horizon: int = 100,
    key: PRNGKeyArray,
    dt: float = 0.5,
    domain_extent: float = 32.0,
    highest_init_mode: int = 5,
    warmup_steps: int = 200,
) -> Float[Array, "num_samples temporal_horizon+1 1 num_points"]:
    """Trajectories of 1-D periodic Kuramoto-Sivashinsky,
    u_t + 1/2 (u^2)_x + u_xx + u_xxxx = 0, on its chaotic attractor.

    Initial states: exponax ``RandomTruncatedFourierSeries`` (Fourier modes
    ``<= highest_init_mode``, zero mean, max |u| = 1), one per sample from
    ``jax.random.split(key, num_samples)``, then ``warmup_steps`` discarded steps
    (default 200 steps = 100 time units) so the trajectories start on the
    attractor. The stepper is :func:`make_kuramoto_sivashinsky_1d_stepper`.

    Arguments:
        num_points: grid points N (int >= 2, > 2 * highest_init_mode).
        num_samples: number of trajectories (int >= 1).
        temporal_horizon: number of steps T (int >= 1); T + 1 levels are returned.
        key: JAX PRNG key.
        dt, domain_extent: see :func:`make_kuramoto_sivashinsky_1d_stepper`.
        highest_init_mode: highest Fourier mode of the initial state (int >= 1).
        warmup_steps: steps taken and discarded before the first level (int >= 0).

    Returns:
        float32 array ``(num_samples, temporal_horizon + 1, 1, num_points)``.

    Raises:
        TypeError / ValueError: naming the offending argument.
    """
    return trajectories(
        _SPEC,
        num_points,
        num_samples,
        temporal_horizon=temporal_horizon,
        key=key,
        dt=dt,
        domain_extent=domain_extent,
        highest_init_mode=highest_init_mode,
        warmup_steps=warmup_steps,
    )
