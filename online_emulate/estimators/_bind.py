"""The binding of an estimator to one problem (`bind`): the pre-flight done once, and
what every caller (value_and_grad, the trainers, K-FAC, gradient_fidelity) needs; equal
problems share one `Bound` and so one compiled program."""

from __future__ import annotations

from typing import Any, Callable

import brainstate
import jax
from jax.typing import DTypeLike
from jaxtyping import Array, Float, PyTree

from .._frozen import Frozen, frozen
from .._input_checks import check_model_state, check_ref_stepper
from ..configuration import BaseConfiguration
from ..emulators import ModelAdapter, adapt
from .._cache import BoundedCache, cache_key

__all__ = ["Bound", "bind"]

#: one binding per problem; its compiled `value_and_grad` is reused by every call
_BOUND = BoundedCache(16)


@frozen(eq=False)
class Bound(Frozen):
    """An estimator bound to a configuration and a model, checked once.

    Attributes:
        estimator, configuration, ref_stepper, residuum_fn: as given to `bind`.
        model: the adapted model view (`ModelAdapter`): `model.params`, `model.apply`,
            `model.merge(params)`.
        state_shape: one state `(C, *N)` (None for PyTree data of a user configuration).
        loss_and_grad: `(params, batch) -> (loss, grads)`, not compiled (to be placed
            inside a caller's compiled loop with `jit` / `while_loop`).
        value_and_grad: `loss_and_grad` compiled once for this binding; traceable by
            an outer `jax.jit` where the estimator is jittable.
        jit, while_loop, cond, scan: the transformations the estimator's gradient runs
            under (jax's, or brainstate's for the estimators that advance brainstate
            States).
    """

    estimator: Any
    configuration: BaseConfiguration
    model: ModelAdapter
    state_shape: tuple | None
    ref_stepper: Callable | None
    residuum_fn: Callable | None
    loss_and_grad: Callable
    value_and_grad: Callable
    jit: Callable
    while_loop: Callable
    cond: Callable
    scan: Callable

    def __init__(self, estimator: Any, configuration: BaseConfiguration, model: ModelAdapter,
                 state_shape: tuple | None, ref_stepper: Callable | None,
                 residuum_fn: Callable | None):
        def loss_and_grad(params: PyTree, batch: PyTree) -> tuple[Float[Array, ""], PyTree]:
            return estimator.value_and_grad(configuration, model, params, batch,
                                            ref_stepper=ref_stepper, residuum_fn=residuum_fn)

        # braintrace estimators jit themselves with brainstate and write States inside
        # their gradient: those writes must happen under brainstate's transformations
        plain = estimator.jittable
        t = jax.lax if plain else brainstate.transform
        self._set(estimator=estimator, configuration=configuration, model=model,
                  state_shape=state_shape, ref_stepper=ref_stepper, residuum_fn=residuum_fn,
                  loss_and_grad=loss_and_grad,
                  value_and_grad=jax.jit(loss_and_grad) if plain else loss_and_grad,
                  jit=jax.jit if plain else t.jit, while_loop=t.while_loop, cond=t.cond,
                  scan=t.scan)

    def carry_ops(self, batch_shape: tuple[int, ...], *, horizon: int) -> Any:
        """The estimator's carry operations (`CarryOps`) for batched states `batch_shape`
        `(B, C, *N)` and `horizon` steps between updates (online estimators only)."""
        return self.estimator.carry_ops(self.model, tuple(batch_shape), horizon=horizon)

    def carry_init(self, ops: Any) -> Callable:
        """`ops.init`, compiled with jax where the estimator is jittable (a braintrace
        learner's init runs as it is: it writes States)."""
        return jax.jit(ops.init) if self.estimator.jittable else ops.init

    def prepare(self, batch_shape: tuple[int, ...]) -> None:
        """Build what the estimator compiles per batch shape (ETrace's learner) now."""
        if hasattr(self.estimator, "prepare"):
            self.estimator.prepare(self.model, tuple(batch_shape))

    def __repr__(self):
        return f"Bound({self.estimator!r}, {self.configuration!r}, {self.model!r})"


def bind(
    estimator: Any,
    configuration: BaseConfiguration,
    model: Any,
    *,
    state_shape: tuple[int, ...] | None,
    dtype: DTypeLike | None = None,
    ref_stepper: Callable | None = None,
    residuum_fn: Callable | None = None,
    name: str = "data",
    given: tuple[int, ...] | None = None,
) -> Bound:
    """The estimator bound to `configuration` and `model`: the pre-flight once
    (`Estimator.bind`).

    Arguments:
        estimator: how the gradient is computed.
        configuration: what the loss is.
        model: a brainstate Module, an equinox Module, an `(apply, params)` pair or its
            `ModelAdapter`.
        state_shape: one state `(C, *N)` the model steps (None: PyTree data of a user
            configuration, not checked).
        dtype: the states' dtype (default: the parameters').
        ref_stepper, residuum_fn: as the configuration needs them.
        name, given: where the states come from and its full shape, for the error
            messages (`data`, `ic_sampler`, `reference_data`).

    Returns:
        a `Bound`, shared by equal problems.

    Raises:
        TypeError / ValueError: the model does not step such states, a needed reference
            is missing or does not step them, or ETrace cannot trace the model.
    """
    adapter = adapt(model, state_ndim=None if state_shape is None else len(state_shape))
    shape = None if state_shape is None else tuple(int(n) for n in state_shape)
    dtype = jax.tree_util.tree_leaves(adapter.params)[0].dtype if dtype is None else dtype
    key = (estimator, cache_key(configuration), adapter.signature(), shape, str(dtype),
           cache_key(ref_stepper), cache_key(residuum_fn))

    def build():
        if shape is not None:
            check_model_state(adapter, shape, dtype, name=name, given=given)
            if ref_stepper is not None:
                check_ref_stepper(ref_stepper, shape, dtype)
        if hasattr(configuration, "check_references"):
            configuration.check_references(ref_stepper=ref_stepper, residuum_fn=residuum_fn)
        if not estimator.jittable:
            # a model braintrace cannot trace, or whose operations cannot be lifted, fails
            # here (one state of the batch suffices to tell)
            adapter.recurrent_module(None if shape is None else (1, *shape),
                                     algorithm=getattr(estimator, "algorithm", "d_rtrl"))
        # the binding outlives the call: it holds a model of its own, never the user's
        view = adapt(adapter.merge(adapter.params), state_ndim=adapter.state_ndim)
        return Bound(estimator, configuration, view, shape, ref_stepper, residuum_fn)

    return _BOUND.get(key, build, keep=(configuration, ref_stepper, residuum_fn))
