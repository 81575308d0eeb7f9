"""1-D Kuramoto-Sivashinsky (conservative / fluid form) by exponax's ETDRK2 solver."""

from __future__ import annotations

import functools

import exponax as ex
from jaxtyping import Array, Float, PRNGKeyArray

from ._etdrk_rollout import band_limited_ic, check_data_args, etdrk_trajectories
from ._validation import check_band_limit, check_int, check_real


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
    num_points = check_int("num_points", num_points, minimum=2)
    dt = check_real("dt", dt, positive=True)
    domain_extent = check_real("domain_extent", domain_extent, positive=True)
    return _build(num_points, dt, domain_extent)


@functools.lru_cache(maxsize=64)
def _build(num_points, dt, domain_extent):
    # Steppers are immutable; caching shares one object between a Problem's
    # ref_stepper and its data generator and skips rebuilding the ETDRK coefficients.
    return ex.stepper.KuramotoSivashinskyConservative(1, domain_extent, num_points, dt)


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
    num_points = check_int("num_points", num_points, minimum=2)
    num_samples, temporal_horizon, warmup_steps = check_data_args(
        num_samples, temporal_horizon, warmup_steps, key
    )
    highest_init_mode = check_int("highest_init_mode", highest_init_mode, minimum=1)
    check_band_limit(highest_init_mode, num_points)
    stepper = make_kuramoto_sivashinsky_1d_stepper(
        num_points, dt=dt, domain_extent=domain_extent
    )
    return etdrk_trajectories(
        stepper,
        band_limited_ic(1, 1, highest_init_mode),
        num_points=num_points,
        num_samples=num_samples,
        temporal_horizon=temporal_horizon,
        warmup_steps=warmup_steps,
        key=key,
    )
