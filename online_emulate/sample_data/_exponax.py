"""The one exponax path behind every spectral problem: a spec names the exponax solver
and its physics arguments; validation, the cached stepper and the ETDRK rollout are
shared."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable

import equinox as eqx
import exponax as ex
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_int, check_key, check_real
from ._band_limit import check_band_limit

__all__ = [
    "PDESpec", "PDES", "make_stepper", "trajectories", "initial_conditions", "check_band_limit",
    "stepper_docs", "trajectory_docs",
]

# How each physics argument is checked (see check_real).
_SIGNS = {"positive": dict(positive=True), "nonnegative": dict(nonnegative=True), "real": {}}


@dataclasses.dataclass(frozen=True)
class PDESpec:
    """One exponax problem.

    Attributes:
        solver: class name in `exponax.stepper` (built as
            `solver(num_spatial_dims, domain_extent, num_points, dt, **options)`).
        num_spatial_dims: number of spatial axes D.
        num_channels: number of channels C of one state.
        physics: `(name, sign)` pairs in validation order; `sign` is
            `"positive"`, `"nonnegative"` or `"real"`. `dt` and
            `domain_extent` go to the solver positionally, the others as keywords.
    """

    solver: str
    num_spatial_dims: int
    num_channels: int
    physics: tuple[tuple[str, str], ...]

    @property
    def physics_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.physics)


_STEPPER_DOCS = """
    Returns:
        An exponax stepper (an equinox module): `stepper(u)` maps one state
        `(C, *N)` to the next; jit/vmap/grad compatible.

    Raises:
        TypeError / ValueError: naming the offending argument.
"""

_TRAJECTORY_DOCS = """
    Initial states: per channel an exponax `RandomTruncatedFourierSeries` (Fourier
    modes `<= highest_init_mode` along each axis, zero mean, max |u| = 1), one per
    sample from `jax.random.split(key, num_samples)`, advanced `warmup_steps`
    discarded steps. The physics arguments are those of the problem's stepper.

    Arguments:
        num_points: grid points N per axis (int >= 2, > 2 * highest_init_mode).
        num_samples: number of trajectories (int >= 1).
        temporal_horizon: number of steps T (int >= 1); T + 1 levels are returned.
        key: JAX PRNG key.
        highest_init_mode: highest Fourier mode of the initial state (int >= 1).
        warmup_steps: steps taken and discarded before the first level (int >= 0).

    Returns:
        float32 array `(num_samples, temporal_horizon + 1, C, *N)`.

    Raises:
        TypeError / ValueError: naming the offending argument.
"""


_ARGUMENT_DOCS = {
    "num_points": "grid points N per axis (int >= 2)",
    "dt": "time step (> 0)",
    "domain_extent": "domain length L per axis (> 0)",
    "diffusivity": "nu (>= 0)",
    "convection_scale": "b (real)",
}


def stepper_docs(function: Callable) -> Callable:
    """Append the arguments (read off the signature of `function`), the return value
    and the errors every spectral problem's stepper factory shares to its docstring
    (its own text says the PDE)."""
    arguments = "".join(f"        {name}: {_ARGUMENT_DOCS[name]}.\n"
                        for name in inspect.signature(function).parameters)
    function.__doc__ = (function.__doc__.rstrip() + "\n\n    Arguments:\n" + arguments
                        + _STEPPER_DOCS)
    return function


def trajectory_docs(function: Callable) -> Callable:
    """Append the arguments, return value and errors every spectral problem's data
    generator shares to the docstring of `function` (its own text says the PDE)."""
    function.__doc__ = function.__doc__.rstrip() + "\n" + _TRAJECTORY_DOCS
    return function


def make_stepper(spec: PDESpec, num_points: int, **physics: Any) -> Callable:
    """Validate `num_points` and the physics arguments of `spec`, then return the
    (cached) exponax stepper. Raises TypeError / ValueError naming the argument."""
    num_points = check_int("num_points", num_points, minimum=2)
    values = tuple(
        check_real(name, physics[name], **_SIGNS[sign]) for name, sign in spec.physics
    )
    return _build(spec, num_points, values)


@functools.lru_cache(maxsize=256)
def _build(spec: PDESpec, num_points: int, values: tuple[float, ...]):
    # Steppers are immutable; caching shares one object between a Problem's ref_stepper
    # and its data generator and skips rebuilding the ETDRK coefficients.
    options = dict(zip(spec.physics_names, values))
    dt, domain_extent = options.pop("dt"), options.pop("domain_extent")
    solver = getattr(ex.stepper, spec.solver)
    return solver(spec.num_spatial_dims, domain_extent, num_points, dt, **options)


def _band_limited_ic(num_spatial_dims: int, num_channels: int, highest_init_mode: int):
    """exponax generator of random truncated Fourier series (modes `<=
    highest_init_mode` along every axis, zero mean, max |u| = 1) per channel."""
    single = ex.ic.RandomTruncatedFourierSeries(
        num_spatial_dims, cutoff=highest_init_mode, max_one=True
    )
    if num_channels == 1:
        return single
    return ex.ic.RandomMultiChannelICGenerator((single,) * num_channels)


def _first_states(stepper, ic_generator, num_points, num_samples, warmup_steps, key):
    # the one place that says how a data set's first level is drawn: the trajectories
    # and the streamed initial conditions both start here
    keys = jax.random.split(key, num_samples)
    u0 = jax.vmap(lambda k: ic_generator(num_points, key=k))(keys)
    if warmup_steps > 0:
        u0 = jax.vmap(ex.repeat(stepper, warmup_steps))(u0)
    return u0


@eqx.filter_jit
def _generate(stepper, ic_generator, num_points, num_samples, temporal_horizon, warmup_steps, key):
    u0 = _first_states(stepper, ic_generator, num_points, num_samples, warmup_steps, key)
    trajectories = jax.vmap(ex.rollout(stepper, temporal_horizon, include_init=True))(u0)
    return trajectories.astype(jnp.float32)


@eqx.filter_jit
def _generate_first(stepper, ic_generator, num_points, num_samples, warmup_steps, key):
    u0 = _first_states(stepper, ic_generator, num_points, num_samples, warmup_steps, key)
    return u0.astype(jnp.float32)


def _checked(spec, num_points, num_samples, key, highest_init_mode, warmup_steps, physics):
    """Validate the arguments shared by `trajectories` and `initial_conditions`; the
    stepper, the initial-condition generator and the checked integers."""
    num_points = check_int("num_points", num_points, minimum=2)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    check_key("key", key)
    highest_init_mode = check_int("highest_init_mode", highest_init_mode, minimum=1)
    check_band_limit(highest_init_mode, num_points)
    stepper = make_stepper(spec, num_points, **physics)
    ic_generator = _band_limited_ic(spec.num_spatial_dims, spec.num_channels, highest_init_mode)
    return stepper, ic_generator, num_points, num_samples, warmup_steps


def initial_conditions(
    spec: PDESpec,
    num_points: int,
    num_samples: int,
    *,
    key: PRNGKeyArray,
    highest_init_mode: int,
    warmup_steps: int,
    **physics: Any,
) -> Float[Array, "num_samples C ..."]:
    """The first level of `trajectories` with the same arguments and key, without the
    rollout: `num_samples` band-limited states (one key each,
    `jax.random.split(key, num_samples)`) advanced `warmup_steps` steps.
    Traceable (a traced key works inside `jax.jit`).

    Returns:
        float32 array `(num_samples, C, *N)`.

    Raises:
        TypeError / ValueError: naming the offending argument.
    """
    stepper, ic_generator, num_points, num_samples, warmup_steps = _checked(
        spec, num_points, num_samples, key, highest_init_mode, warmup_steps, physics)
    return _generate_first(stepper, ic_generator, num_points, num_samples, warmup_steps, key)


def trajectories(
    spec: PDESpec,
    num_points: int,
    num_samples: int,
    *,
    temporal_horizon: int,
    key: PRNGKeyArray,
    highest_init_mode: int,
    warmup_steps: int,
    **physics: Any,
) -> Float[Array, "num_samples temporal_horizon+1 C ..."]:
    """Validate every argument, draw `num_samples` band-limited initial states (one
    key each, `jax.random.split(key, num_samples)`), advance them `warmup_steps`
    steps (discarded), then roll out `temporal_horizon` steps with
    `exponax.rollout(stepper, temporal_horizon, include_init=True)` vmapped over
    samples.

    Returns:
        float32 array `(num_samples, temporal_horizon + 1, C, *N)`.

    Raises:
        TypeError / ValueError: naming the offending argument.
    """
    temporal_horizon = check_int("temporal_horizon", temporal_horizon, minimum=1)
    stepper, ic_generator, num_points, num_samples, warmup_steps = _checked(
        spec, num_points, num_samples, key, highest_init_mode, warmup_steps, physics)
    return _generate(
        stepper, ic_generator, num_points, num_samples, temporal_horizon, warmup_steps, key
    )


_SPATIAL = (("dt", "positive"), ("domain_extent", "positive"))
_VISCOUS = _SPATIAL + (("diffusivity", "nonnegative"),)

# The table of spectral problems: everything that differs between them.
PDES: dict[str, PDESpec] = {
    "diffusion_1d": PDESpec("Diffusion", 1, 1, _VISCOUS),
    "burgers_1d": PDESpec("Burgers", 1, 1, _VISCOUS + (("convection_scale", "real"),)),
    "ks_1d": PDESpec("KuramotoSivashinskyConservative", 1, 1, _SPATIAL),
    "burgers_2d": PDESpec("Burgers", 2, 2, _VISCOUS + (("convection_scale", "real"),)),
}
