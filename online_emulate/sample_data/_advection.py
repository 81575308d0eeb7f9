"""Exact 1-D periodic advection: random band-limited initial states moved by a
Fourier phase shift (the data set of trainax's quickstart)."""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_int, check_key, check_real
from .._random import host_key, split, uniform
from ._band_limit import check_band_limit


def _shift_phase(num_points: int, cfl: float) -> np.ndarray:
    """Fourier multipliers exp(-i 2 pi m cfl / N), m = 0..N//2, for a shift by
    `cfl` cells in the +x direction."""
    modes = np.arange(num_points // 2 + 1, dtype=np.float64)
    return np.exp(-2j * np.pi * modes * cfl / num_points)


def advection_1d_stepper(
    num_points: int = 30, cfl: float = 0.75
) -> Callable[[Float[Array, "C num_points"]], Float[Array, "C num_points"]]:
    """Exact time stepper of 1-D advection on a periodic grid of `num_points` cells.

    PDE (periodic domain, grid spacing dx, time step dt):

        u_t + c u_x = 0,      cfl = c * dt / dx,

    solved exactly for band-limited states: one step is the shift

        u_{t+1}(x) = u_t(x - cfl * dx),

    applied as the Fourier multiplier exp(-i 2 pi m cfl / N) on mode m. Sign
    convention: `cfl > 0` moves the field in the +x direction (towards larger
    indices), `cfl < 0` in the -x direction. The natural linear emulator is the
    first-order upwind (FOU) stencil: for `cfl < 0` (trainax's quickstart uses
    -0.75) `u_new[j] = (1 + cfl) * u[j] - cfl * u[j + 1]`, i.e. the correlation
    kernel `[1 + cfl, -cfl]` over `(u[j], u[j + 1])`; for `cfl > 0`
    `u_new[j] = cfl * u[j - 1] + (1 - cfl) * u[j]`.

    A component at the Nyquist mode (even `num_points`) cannot be shifted by a
    real multiplier; it is scaled by cos(pi * cfl) (the real part), so the step is
    exact only for states without Nyquist content (all generated data).

    Arguments:
        num_points: number of grid cells N (int >= 2).
        cfl: Courant number c * dt / dx (any real number; the step is exact).

    Returns:
        A pure function `stepper(u) -> u_next` acting on one sample of shape
        `(C, num_points)` (any leading axes; the shift acts on the last axis).
        It is compatible with `jax.jit`, `jax.vmap` and `jax.grad`.

    Raises:
        TypeError / ValueError: for a non-integer or too small `num_points` or a
            non-finite `cfl`.
    """
    num_points = check_int("num_points", num_points, minimum=2)
    cfl = check_real("cfl", cfl)
    phase = _shift_phase(num_points, cfl)

    def stepper(u: Float[Array, "C num_points"]) -> Float[Array, "C num_points"]:
        if u.shape[-1] != num_points:
            raise ValueError(
                f"advection_1d_stepper: expected the last axis of `u` to have "
                f"{num_points} points, got shape {u.shape}"
            )
        u_hat = jnp.fft.rfft(u, axis=-1)
        u_hat = u_hat * jnp.asarray(phase, dtype=u_hat.dtype)
        return jnp.fft.irfft(u_hat, n=num_points, axis=-1).astype(u.dtype)

    return stepper



@functools.partial(jax.jit, static_argnums=(1, 2))
def _draw_coefficients(
    key: PRNGKeyArray, num_samples: int, highest_init_mode: int
) -> tuple[Float[Array, "num_samples M"], Float[Array, "num_samples M"]]:
    """Sine and cosine amplitudes a_m, b_m ~ U(-1, 1), m = 1..M, per sample: one
    key per sample (`split(key, num_samples)`), each split in three (sine,
    cosine, unused offset). Jitted apart from the grid evaluation so that its
    (slow to compile) random-bit generation is reused across grid sizes."""

    def draw(sample_key):
        sine_key, cosine_key, _ = jax.random.split(sample_key, 3)
        shape = (highest_init_mode,)
        a = jax.random.uniform(sine_key, shape, minval=-1.0, maxval=1.0)
        b = jax.random.uniform(cosine_key, shape, minval=-1.0, maxval=1.0)
        return a, b

    return jax.vmap(draw)(jax.random.split(key, num_samples))


def _coefficients(num_points, num_samples, cfl, highest_init_mode, key):
    """Validate the arguments shared by the trajectories and their first level; the
    checked `num_points` and `cfl` and the drawn sine and cosine amplitudes."""
    num_points = check_int("num_points", num_points, minimum=2)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    cfl = check_real("cfl", cfl)
    highest_init_mode = check_int("highest_init_mode", highest_init_mode, minimum=1)
    check_band_limit(highest_init_mode, num_points)
    check_key("key", key)
    return (num_points, cfl, *draw_coefficients(key, num_samples, highest_init_mode))


def draw_coefficients(key, num_samples, highest_init_mode):
    """`_draw_coefficients`, drawn on the host where `_random.host_key` allows (the same
    bits; the compiled threefry program costs about half a second in a fresh process)."""
    words = host_key(key)
    if words is None or jax.dtypes.canonicalize_dtype(float) != np.float32:
        return _draw_coefficients(key, num_samples, highest_init_mode)
    sine_keys, cosine_keys, _ = np.moveaxis(split(split(words, num_samples), 3), -2, 0)
    shape = (highest_init_mode,)
    return (uniform(sine_keys, shape, -1.0, 1.0), uniform(cosine_keys, shape, -1.0, 1.0))


def advection_1d_periodic(
    num_points: int = 30,
    num_samples: int = 20,
    *,
    cfl: float = 0.75,
    highest_init_mode: int = 5,
    temporal_horizon: int = 100,
    key: PRNGKeyArray,
) -> Float[Array, "num_samples temporal_horizon 1 num_points"]:
    """Trajectories of exact 1-D periodic advection (drop-in for trainax's
    `advection_1d_periodic`).

    PDE: u_t + c u_x = 0 on a periodic grid of N cells, advanced by the exact
    shift `u_{t+1}(x) = u_t(x - cfl * dx)` (see `advection_1d_stepper` for
    the sign convention: `cfl < 0` moves the field in the -x direction).

    Initial states: `u_0(x) = sum_{m=1}^{highest_init_mode} a_m sin(m x) +
    b_m cos(m x)` on `x_j = 2 pi j / N` with independent `a_m, b_m ~ U(-1, 1)`
    (zero mean). The random draws follow trainax 0.0.2 (`key` split into one key
    per sample, each split in three: sine, cosine, unused offset), so the same key
    gives the same data up to float rounding. The coefficients do not depend on
    `num_points`: one key gives the same continuous field at every resolution.

    Time levels: like trainax, the result holds `temporal_horizon` levels
    `u_0 .. u_{temporal_horizon-1}` (NOT `temporal_horizon + 1`, unlike the
    exponax-based generators of this package; `Problem.make_data` of
    `"advection_1d"` returns `temporal_horizon + 1` levels like every problem).

    Arguments:
        num_points: number of grid cells N (int >= 2, > 2 * highest_init_mode).
        num_samples: number of trajectories (int >= 1).
        cfl: Courant number c * dt / dx (real).
        highest_init_mode: highest Fourier mode M of the initial state (int >= 1).
        temporal_horizon: number of time levels (int >= 1).
        key: JAX PRNG key.

    Returns:
        float32 array of shape `(num_samples, temporal_horizon, 1, num_points)`.

    Raises:
        TypeError / ValueError: naming the offending argument.
    """
    temporal_horizon = check_int("temporal_horizon", temporal_horizon, minimum=1)
    num_points, cfl, sine_amplitudes, cosine_amplitudes = _coefficients(
        num_points, num_samples, cfl, highest_init_mode, key)
    # Level t is u_0 shifted by t * cfl cells: the one-step multiplier to the power
    # t, with the phases computed in float64 (no error accumulates over steps).
    modes = np.arange(num_points // 2 + 1, dtype=np.float64)
    steps = np.arange(temporal_horizon, dtype=np.float64)
    phases = np.exp(-2j * np.pi * np.outer(steps * cfl, modes) / num_points)
    return _advect_series(
        sine_amplitudes, cosine_amplitudes, np.asarray(phases, np.complex64), num_points
    )


@functools.partial(jax.jit, static_argnums=(3,))
def _advect_series(sine_amplitudes, cosine_amplitudes, phases, num_points):
    """Evaluate u_0(x) = sum_m a_m sin(m x) + b_m cos(m x) on x_j = 2 pi j / N and
    return the levels `irfft(rfft(u_0) * phases[t])`."""
    highest_init_mode = sine_amplitudes.shape[-1]
    x = jnp.arange(num_points) * (2.0 * jnp.pi / num_points)
    angles = jnp.arange(1, highest_init_mode + 1)[:, None] * x[None, :]
    u0 = sine_amplitudes @ jnp.sin(angles) + cosine_amplitudes @ jnp.cos(angles)
    u0_hat = jnp.fft.rfft(u0.astype(jnp.float32), axis=-1)
    u_hat = u0_hat[:, None, :] * phases.astype(u0_hat.dtype)[None]
    u = jnp.fft.irfft(u_hat, n=num_points, axis=-1).astype(jnp.float32)
    return u[:, :, None, :]


def advection_1d_initial_conditions(
    num_points: int = 30,
    num_samples: int = 20,
    *,
    key: PRNGKeyArray,
    highest_init_mode: int = 5,
    cfl: float = 0.75,
) -> Float[Array, "num_samples 1 num_points"]:
    """The first level of `advection_1d_periodic` with the same arguments and key
    (the same coefficient draws, evaluated the same way), without the shifted levels.

    Arguments:
        num_points, num_samples, key, highest_init_mode: as for
            `advection_1d_periodic`.
        cfl: accepted so that a problem's parameters can be passed whole; the initial
            states do not depend on it.

    Returns:
        float32 array `(num_samples, 1, num_points)`.

    Raises:
        TypeError / ValueError: naming the offending argument.
    """
    num_points, _, sine_amplitudes, cosine_amplitudes = _coefficients(
        num_points, num_samples, cfl, highest_init_mode, key)
    # level 0 of the series: the phase of step 0 is exactly one
    phases = np.ones((1, num_points // 2 + 1), np.complex64)
    return _advect_series(sine_amplitudes, cosine_amplitudes, phases, num_points)[:, 0]
