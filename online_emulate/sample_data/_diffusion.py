"""1-D diffusion by exponax's exact (ETDRK0) spectral solver."""

from __future__ import annotations

import exponax as ex
from jaxtyping import Array, Float, PRNGKeyArray

from ._exponax import PDES, make_stepper, trajectories

_SPEC = PDES["diffusion_1d"]


def make_diffusion_1d_stepper(
    num_points: int = 64,
    *,
    dt: float = 0.01,
    domain_extent: float = 1.0,
    diffusivity: float = 0.01,
) -> ex.stepper.Diffusion:
    """Reference stepper of 1-D periodic diffusion.

    PDE on the periodic domain (0, domain_extent):

        u_t = nu * u_xx,      nu = diffusivity,

    solved exactly in Fourier space (exponax ``Diffusion``, mode k multiplied by
    exp(-nu (2 pi k / L)^2 dt) per step).

    Arguments:
        num_points: grid points N (int >= 2).
        dt: time step (> 0).
        domain_extent: domain length L (> 0).
        diffusivity: nu (>= 0).

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
        diffusivity=diffusivity,
    )


def diffusion_1d(
    num_points: int = 64,
    num_samples: int = 20,
    *,
    temporal_horizon: int = 100,
    key: PRNGKeyArray,
    dt: float = 0.01,
    domain_extent: float = 1.0,
    diffusivity: float = 0.01,
    highest_init_mode: int = 5,
    warmup_steps: int = 0,
) -> Float[Array, "num_samples temporal_horizon+1 1 num_points"]:
    """Trajectories of 1-D periodic diffusion, u_t = nu * u_xx.

    Initial states: exponax ``RandomTruncatedFourierSeries`` (Fourier modes
    ``<= highest_init_mode``, zero mean, max |u| = 1), one per sample from
    ``jax.random.split(key, num_samples)``. The stepper is
    :func:`make_diffusion_1d_stepper` with the same physics arguments.

    Arguments:
        num_points: grid points N (int >= 2, > 2 * highest_init_mode).
        num_samples: number of trajectories (int >= 1).
        temporal_horizon: number of steps T (int >= 1); T + 1 levels are returned.
        key: JAX PRNG key.
        dt, domain_extent, diffusivity: see :func:`make_diffusion_1d_stepper`.
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
        diffusivity=diffusivity,
        highest_init_mode=highest_init_mode,
        warmup_steps=warmup_steps,
    )
