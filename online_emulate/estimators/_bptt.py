"""Exact reverse-mode gradients through the rollout (optionally checkpointed)."""

from __future__ import annotations

import functools
from typing import Callable

import jax
from jaxtyping import Array, Float, PyTree

from .._checks import check_positive_int
from .._frozen import frozen
from .._rollout import bind
from ..configuration import BaseConfiguration
from ._base import Estimator, Model, model_apply
from ._budget import choose_exact_scheme
from .._cache import BoundedCache, cache_key, shapes_key
from ._checkpoint_scan import (binomial_checkpoint_scan, sqrt_checkpoint_scan,
                               step_checkpoint_scan)

__all__ = ["BPTT"]

#: the scheme a memory budget resolved to, per (estimator, problem)
_SCHEMES = BoundedCache(256)

_SCANS = {None: jax.lax.scan, "step": step_checkpoint_scan, "sqrt": sqrt_checkpoint_scan,
          "binomial": binomial_checkpoint_scan}


@frozen
class BPTT(Estimator):
    """Backpropagation through time: `jax.value_and_grad` of `configuration.loss`.

    Every scheme gives the same gradient up to floating-point reassociation and supports
    every configuration, since the scan is injected through
    `configuration.loss(..., scan=...)`; they differ in memory and recomputation.

    Arguments:
        checkpoint: None (plain scan: memory O(T) step intermediates), "step"
            (`jax.checkpoint` per step: O(T) carries), "sqrt" (nested sqrt(T)
            segments: O(sqrt(T)) carries, about one extra forward pass) or
            "binomial" (equinox's online binomial checkpointing: at most
            `num_checkpoints` stored carries per rollout loop, whatever T; fewer
            checkpoints recompute more).
        num_checkpoints: the number of stored carries of "binomial" (positive int);
            only with `checkpoint="binomial"`.
        memory_budget_bytes: instead of `checkpoint`, a compiled temp-memory budget
            (positive int, bytes). On first use for a (configuration, parameter and
            data shape) the cheapest exact scheme that fits is picked by compiling:
            plain BPTT, else "sqrt", else "binomial" with the largest
            `num_checkpoints` that fits (see `estimators.plan`).

    Raises:
        ValueError: unknown `checkpoint`; `num_checkpoints` missing, not a positive int
            or given without "binomial"; `memory_budget_bytes` not a positive int or
            given with `checkpoint`. `value_and_grad` raises a ValueError naming the
            smallest budget that would work when no exact scheme fits the budget.
    """

    def __init__(self, *, checkpoint: str | None = None, num_checkpoints: int | None = None,
                 memory_budget_bytes: int | None = None):
        if checkpoint not in _SCANS:
            raise ValueError(
                "checkpoint: expected None, 'step', 'sqrt' or 'binomial', got "
                f"{checkpoint!r}"
            )
        if checkpoint == "binomial" and num_checkpoints is None:
            raise ValueError(
                "num_checkpoints: expected an int >= 1 with checkpoint='binomial' (how many "
                "states the rollout may keep), got None"
            )
        if checkpoint == "binomial":
            num_checkpoints = check_positive_int("num_checkpoints", num_checkpoints)
        elif num_checkpoints is not None:
            raise ValueError(
                "num_checkpoints: expected None unless checkpoint='binomial', got "
                f"{num_checkpoints!r} with checkpoint={checkpoint!r}"
            )
        if memory_budget_bytes is not None:
            memory_budget_bytes = check_positive_int("memory_budget_bytes", memory_budget_bytes)
            if checkpoint is not None:
                raise ValueError(
                    "memory_budget_bytes: picks the checkpointing scheme itself; expected "
                    f"checkpoint=None with it, got checkpoint={checkpoint!r}"
                )
        self._set(checkpoint=checkpoint, num_checkpoints=num_checkpoints,
                  memory_budget_bytes=memory_budget_bytes)

    checkpoint: str | None
    num_checkpoints: int | None
    memory_budget_bytes: int | None

    @property
    def _choices(self) -> dict:
        """The schemes this budget resolved to so far, per problem (read-only copy)."""
        return {k[1]: v for k, v in _SCHEMES.items() if k[0] == self}

    def __repr__(self):
        if self.memory_budget_bytes is not None:
            return f"BPTT(memory_budget_bytes={self.memory_budget_bytes})"
        if self.checkpoint is None:
            return "BPTT()"
        if self.checkpoint == "binomial":
            return f"BPTT(checkpoint='binomial', num_checkpoints={self.num_checkpoints})"
        return f"BPTT(checkpoint={self.checkpoint!r})"

    @property
    def scan(self):
        """The scan implementation handed to `configuration.loss`.

        Raises:
            ValueError: for `BPTT(memory_budget_bytes=...)`, whose scan depends on the
                problem (use `resolve`).
        """
        if self.memory_budget_bytes is not None:
            raise ValueError(
                f"scan: expected a BPTT with a fixed scheme, got {self!r}, which picks its "
                "scan per problem; call resolve(configuration, apply, params, data, ...) first"
            )
        if self.checkpoint == "binomial":
            return functools.partial(binomial_checkpoint_scan, checkpoints=self.num_checkpoints)
        return _SCANS[self.checkpoint]

    def resolve(
        self,
        configuration: BaseConfiguration,
        model: Model,
        params: PyTree,
        data: PyTree,
        *,
        ref_stepper: Callable | None = None,
        residuum_fn: Callable | None = None,
    ) -> "BPTT":
        """The fixed-scheme `BPTT` this estimator runs for this problem.

        For a fixed `checkpoint` it is `self`; with `memory_budget_bytes` it is the
        cheapest exact scheme whose compiled temp memory fits the budget (cached per
        configuration, functions and array shapes; works on traced arguments).

        Raises:
            ValueError: no exact scheme fits the budget (the message names the
                smallest budget that would work).
        """
        if self.memory_budget_bytes is None:
            return self
        apply = model_apply(model)
        parts = (configuration, apply, ref_stepper, residuum_fn)
        key = (self, tuple(cache_key(x) for x in parts), shapes_key(params), shapes_key(data))
        return _SCHEMES.get(key, lambda: choose_exact_scheme(
            BPTT, configuration, apply, params, data, self.memory_budget_bytes,
            ref_stepper=ref_stepper, residuum_fn=residuum_fn,
        ).estimator, keep=parts)

    def value_and_grad(
        self,
        configuration: BaseConfiguration,
        model: Model,
        params: PyTree,
        data: PyTree,
        *,
        ref_stepper: Callable | None = None,
        residuum_fn: Callable | None = None,
    ) -> tuple[Float[Array, ""], PyTree]:
        """`(loss, d loss / d params)` of `configuration` with stepper `apply(params, .)`.

        Arguments:
            configuration: any configuration (its scan is replaced by this scheme's).
            model: a `ModelAdapter` or a pure `apply(params, u)`.
            params: the parameters to differentiate.
            data: the window `(batch, time, C, *N)` (or PyTree).
            ref_stepper, residuum_fn: as the configuration needs them.

        Returns:
            `(loss, grads)`, grads with the structure of `params`.
        """
        apply = model_apply(model)
        scan = self.resolve(configuration, apply, params, data, ref_stepper=ref_stepper,
                            residuum_fn=residuum_fn).scan

        def loss_fn(p):
            return configuration.loss(
                bind(apply, p), data, ref_stepper=ref_stepper,
                residuum_fn=residuum_fn, scan=scan,
            )

        return jax.value_and_grad(loss_fn)(params)

