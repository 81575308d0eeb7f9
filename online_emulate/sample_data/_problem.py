"""Problem metadata and the by-name registry used by trainers and the CLI."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from types import MappingProxyType
from typing import Any, Callable, Mapping

from jaxtyping import Array, Float, PRNGKeyArray

from ._advection import (
    advection_1d_initial_conditions,
    advection_1d_periodic,
    advection_1d_stepper,
)
from ._burgers import burgers_1d, make_burgers_1d_stepper
from ._burgers_2d import burgers_2d, make_burgers_2d_stepper
from ._diffusion import diffusion_1d, make_diffusion_1d_stepper
from ._kuramoto_sivashinsky import (
    kuramoto_sivashinsky_1d,
    make_kuramoto_sivashinsky_1d_stepper,
)
from .._checks import check_int
from ._exponax import PDES, initial_conditions


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """One reference problem: its layout, its data generator and its stepper.

    Attributes:
        name: registry name (e.g. `"burgers_1d"`).
        num_spatial_dims: number of spatial axes D.
        num_channels: number of channels C.
        num_points: grid points per spatial axis N.
        dt: time step between two levels (`1.0` for `"advection_1d"`, whose
            time is measured in steps; its speed is given by `params["cfl"]`).
        make_data: `make_data(num_samples, temporal_horizon, key)` -> float32
            array `(num_samples, temporal_horizon + 1, C, *N)` (every problem,
            `"advection_1d"` included, returns `temporal_horizon + 1` levels).
        ref_stepper: the stepper that made the data, acting on one sample
            `(C, *N)`; jit/vmap/grad compatible.
        params: every parameter the problem was built with (read-only mapping).
        sample_initial_conditions: `sample_initial_conditions(num, key)` -> float32
            `(num, C, *N)`: the first level of `make_data(num, T, key)` (drawn
            the same way from the same key, after the same warm-up steps), without
            the rollout. With `ref_stepper` it lets a trainer stream the problem
            from its solver (`trainer.StreamTrainer`); it can be traced (a traced
            `key` inside `jax.jit`; `num` is static).
    """

    name: str
    num_spatial_dims: int
    num_channels: int
    num_points: int
    dt: float
    make_data: Callable[..., Float[Array, "num_samples time C ..."]]
    ref_stepper: Callable[[Float[Array, "C ..."]], Float[Array, "C ..."]]
    params: Mapping[str, Any]
    sample_initial_conditions: Callable[..., Float[Array, "num C ..."]]

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape `(C, *N)` of one state."""
        return (self.num_channels,) + (self.num_points,) * self.num_spatial_dims


@dataclasses.dataclass(frozen=True, eq=False)
class ProblemSpec:
    """Registry entry: how to build a `Problem` of one kind.

    Call it (`spec(**overrides)`) to build the problem; `defaults` lists every
    parameter that may be overridden and its default value.
    """

    name: str
    num_spatial_dims: int
    num_channels: int
    defaults: Mapping[str, Any]
    stepper_keys: tuple[str, ...]
    data_fn: Callable[..., Any]
    stepper_fn: Callable[..., Any]
    description: str
    #: `ic_fn(num_points, num_samples, key=, **data parameters)`: the data's first level
    ic_fn: Callable[..., Any]
    extra_levels: int = 0

    def __call__(self, **overrides) -> Problem:
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise TypeError(
                f"{unknown[0]}: expected a parameter of problem {self.name!r} (one of "
                f"{sorted(self.defaults)}), got unexpected parameter(s) {unknown}"
            )
        params = {**self.defaults, **overrides}
        num_points = params["num_points"]
        stepper_kwargs = {k: params[k] for k in self.stepper_keys}
        data_kwargs = {k: v for k, v in params.items() if k != "num_points"}
        ref_stepper = self.stepper_fn(num_points, **stepper_kwargs)
        data_fn = self.data_fn
        extra_levels = self.extra_levels

        def make_data(num_samples: int, temporal_horizon: int, key: PRNGKeyArray):
            temporal_horizon = check_int("temporal_horizon", temporal_horizon, minimum=1)
            return data_fn(
                num_points,
                num_samples,
                temporal_horizon=temporal_horizon + extra_levels,
                key=key,
                **data_kwargs,
            )

        make_data.__doc__ = (
            f"Data of problem {self.name!r}: make_data(num_samples, temporal_horizon, "
            "key) -> float32 (num_samples, temporal_horizon + 1, C, *N)."
        )
        ic_fn = self.ic_fn

        def sample_initial_conditions(num: int, key: PRNGKeyArray):
            num = check_int("num", num, minimum=1)
            return ic_fn(num_points, num, key=key, **data_kwargs)

        sample_initial_conditions.__doc__ = (
            f"Initial conditions of problem {self.name!r}: sample_initial_conditions(num, "
            "key) -> float32 (num, C, *N), make_data(num, T, key)[:, 0] without the rollout."
        )
        return Problem(
            name=self.name,
            num_spatial_dims=self.num_spatial_dims,
            num_channels=self.num_channels,
            num_points=int(num_points),
            dt=float(params.get("dt", 1.0)),
            make_data=make_data,
            ref_stepper=ref_stepper,
            params=MappingProxyType(dict(params)),
            sample_initial_conditions=sample_initial_conditions,
        )


def _spec(name, channels_dims, data_fn, stepper_fn, stepper_keys, description, ic_fn,
          extra_levels=0):
    # The overridable parameters and their defaults are the data generator's own keyword
    # defaults, so the registry cannot drift from the functions.
    skip = {"num_samples", "temporal_horizon", "key"}
    defaults = {
        k: p.default
        for k, p in inspect.signature(data_fn).parameters.items()
        if k not in skip and p.default is not inspect.Parameter.empty
    }
    dims, channels = channels_dims
    return ProblemSpec(
        name=name,
        num_spatial_dims=dims,
        num_channels=channels,
        defaults=MappingProxyType(defaults),
        stepper_keys=tuple(stepper_keys),
        data_fn=data_fn,
        stepper_fn=stepper_fn,
        description=description,
        ic_fn=ic_fn,
        extra_levels=extra_levels,
    )


def _pde(name, data_fn, stepper_fn, description):
    pde = PDES[name]
    return _spec(name, (pde.num_spatial_dims, pde.num_channels), data_fn, stepper_fn,
                 pde.physics_names, description, functools.partial(initial_conditions, pde))


PROBLEMS: Mapping[str, ProblemSpec] = MappingProxyType(
    {
        "advection_1d": _spec(
            "advection_1d", (1, 1), advection_1d_periodic,
            lambda n, cfl: advection_1d_stepper(n, cfl), ("cfl",),
            "exact 1-D advection u_t + c u_x = 0 (Fourier shift by cfl cells per step)",
            advection_1d_initial_conditions, extra_levels=1,
        ),
        "diffusion_1d": _pde(
            "diffusion_1d", diffusion_1d, make_diffusion_1d_stepper,
            "1-D diffusion u_t = nu u_xx (exact spectral)",
        ),
        "burgers_1d": _pde(
            "burgers_1d", burgers_1d, make_burgers_1d_stepper,
            "1-D viscous Burgers u_t + b 1/2 (u^2)_x = nu u_xx (ETDRK2)",
        ),
        "ks_1d": _pde(
            "ks_1d", kuramoto_sivashinsky_1d, make_kuramoto_sivashinsky_1d_stepper,
            "1-D Kuramoto-Sivashinsky u_t + 1/2 (u^2)_x + u_xx + u_xxxx = 0 (ETDRK2)",
        ),
        "burgers_2d": _pde(
            "burgers_2d", burgers_2d, make_burgers_2d_stepper,
            "2-D viscous Burgers u_t + b 1/2 div(u u^T) = nu Laplacian(u) (ETDRK2)",
        ),
    }
)


def get_problem(name: str, **overrides) -> Problem:
    """Build the registered problem `name` with some parameters overridden.

    Arguments:
        name: one of `PROBLEMS` (`"advection_1d"`, `"diffusion_1d"`,
            `"burgers_1d"`, `"ks_1d"`, `"burgers_2d"`).
        **overrides: parameters to change from `PROBLEMS[name].defaults`
            (`num_points`, physics parameters such as `dt` or `diffusivity`,
            `highest_init_mode`, `warmup_steps`, `cfl` for advection).

    Returns:
        A `Problem`.

    Raises:
        ValueError: unknown `name` (the message lists the valid names) or an
            invalid parameter value.
        TypeError: a parameter that the problem does not have, or of the wrong type.
    """
    if not isinstance(name, str) or name not in PROBLEMS:
        raise ValueError(
            f"name: expected one of {sorted(PROBLEMS)}, got {name!r}"
        )
    return PROBLEMS[name](**overrides)
