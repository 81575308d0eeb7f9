"""2-D viscous Burgers (two velocity channels) by exponax's ETDRK2 solver."""

from __future__ import annotations

import exponax as ex
from jaxtyping import Array, Float, PRNGKeyArray

from ._exponax import PDES, make_stepper, trajectories

_SPEC = PDES["burgers_2d"]


def make_burgers_2d_stepper(
    num_points: int = 32,
    *,
    dt: float = 0.01,
    domain_extent: float = 1.0,
    diffusivity: float = 0.02,
    convection_scale: float = 1.0,
) -> ex.stepper.Burgers:
    """Reference stepper of 2-D periodic viscous Burgers for the velocity
    u = (u_1, u_2) on the square (0, L)^2 with N x N points.

    PDE (per component i, summation over j):

        (u_i)_t + b * 1/2 d_j (u_j u_i) = nu * Laplacian(u_i),
        b = convection_scale, nu = diffusivity,

    integrated by exponax ``Burgers`` (ETDRK2, 2/3 dealiasing).

    Arguments:
        num_points: grid points N per axis (int >= 2).
        dt: time step (> 0).
        domain_extent: side length L (> 0).
        diffusivity: nu (>= 0).
        convection_scale: b (real).

    Returns:
        An exponax stepper (an equinox module): ``stepper(u)`` maps one state
        ``(2, N, N)`` to the next; jit/vmap/grad compatible.

    Raises:
        TypeError / ValueError: naming the offending argument.
    """
    return make_stepper(
        _SPEC,
        num_points,
        dt=dt,
        domain_extent=domain_extent,
        diffusivity=diffusivity,
        convection_scale=convection_scale,
    )


def burgers_2d(
    num_points: int = 32,
    num_samples: int = 20,
    *,
    temporal_horizon: int = 100,
    key: PRNGKeyArray,
    dt: float = 0.01,
    domain_extent: float = 1.0,
    diffusivity: float = 0.02,
    convection_scale: float = 1.0,
    highest_init_mode: int = 4,
    warmup_steps: int = 0,
) -> Float[Array, "num_samples temporal_horizon+1 2 num_points num_points"]:
    """Trajectories of 2-D periodic viscous Burgers,
    u_t + b 1/2 div(u u^T) = nu Laplacian(u), for the two-component velocity u.

    Initial states: per channel an exponax ``RandomTruncatedFourierSeries``
    (Fourier modes ``<= highest_init_mode`` along each axis, zero mean, max |u| = 1),
    combined by ``RandomMultiChannelICGenerator``; one per sample from
    ``jax.random.split(key, num_samples)``. The stepper is
    :func:`make_burgers_2d_stepper` with the same physics arguments.

    Arguments:
        num_points: grid points N per axis (int >= 2, > 2 * highest_init_mode).
        num_samples: number of trajectories (int >= 1).
        temporal_horizon: number of steps T (int >= 1); T + 1 levels are returned.
        key: JAX PRNG key.
        dt, domain_extent, diffusivity, convection_scale: see
            :func:`make_burgers_2d_stepper`.
        highest_init_mode: highest Fourier mode of the initial state (int >= 1).
        warmup_steps: steps taken and discarded before the first level (int >= 0).

    Returns:
        float32 array ``(num_samples, temporal_horizon + 1, 2, num_points, num_points)``.

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
        convection_scale=convection_scale,
        highest_init_mode=highest_init_mode,
        warmup_steps=warmup_steps,
    )
