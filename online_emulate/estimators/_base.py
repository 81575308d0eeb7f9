"""What every gradient estimator shares: the configuration pairing, and the carry
contract (`CarryOps`) through which online estimators run."""

from __future__ import annotations

from typing import Callable, ClassVar, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike
from jaxtyping import Array, Float, PyTree

from .._catalogue import Catalogue
from .._frozen import Frozen, frozen
from .._rollout import rollout, tree_add
from ..configuration import BaseConfiguration
from ..configuration._catalogue import online_entries
from ..emulators import ModelAdapter
from ._bind import bind

__all__ = ["Estimator", "OnlineEstimator", "CarryOps", "ESTIMATORS", "check_estimator",
           "online_spec_for", "first_level", "run_window", "model_apply", "Model"]

#: what an estimator is given as the model: the library's adapter of a model
#: (`online_emulate.emulators.adapt(...)`), or a pure `apply(params, u)` function
Model = ModelAdapter | Callable

#: the command line's estimators by name (filled by `_catalogue`); the error messages
#: here list its entries, so an estimator registered there is named in them too
ESTIMATORS = Catalogue("--estimator")


def catalogued(online: bool | None = None) -> str:
    """The catalogue's estimators as made with their defaults (only the online ones, or
    only the others, when `online` says which), e.g. "BPTT(), TruncatedBPTT(1)"."""
    made = (ESTIMATORS.make(name) for name in ESTIMATORS.names())
    return ", ".join(repr(e) for e in made if online is None or e.online == online)


@frozen
class Estimator(Frozen):
    """Base class of gradient estimators: frozen dataclasses (`online_emulate._frozen`)
    whose `__init__` validates the keyword-only options; equal and hashable by value.

    Subclasses implement
    `value_and_grad(configuration, model, params, data, *, ref_stepper, residuum_fn)`
    returning `(loss, grads)` with `grads` shaped like `params`. `model` is the one view
    of the model an estimator gets: a `ModelAdapter` (`online_emulate.emulators.adapt`),
    or a pure `apply(params, u)` for the estimators that need nothing else (all but
    ETrace, which compiles the adapter's brainstate module).

    Attributes:
        online: whether the estimator runs forward in time from `configuration.online_spec()`.
        jittable: whether `value_and_grad` may be called inside `jax.jit` / `jax.grad`
            (pure in `params` and `data`).
    """

    online: ClassVar[bool] = False
    jittable: ClassVar[bool] = True

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
        raise NotImplementedError

    #: `estimator.bind(configuration, model, *, state_shape, ...)`: see `_bind.bind`
    bind = bind

def model_apply(model: Model) -> Callable:
    """The pure `apply(params, u)` of an estimator's model view.

    Raises:
        TypeError: if `model` is neither a `ModelAdapter` nor callable.
    """
    if isinstance(model, ModelAdapter):
        return model.apply
    if callable(model):
        return model
    raise TypeError(
        "model: expected a ModelAdapter (online_emulate.emulators.adapt(model)) or a pure "
        f"apply(params, u), got {type(model).__name__}"
    )


def check_estimator(estimator, configuration: BaseConfiguration | None = None, *,
                    online: bool = False, ref_stepper: Callable | None = None,
                    residuum_fn: Callable | None = None):
    """`estimator`, checked before anything compiles: an `Estimator` (an online one with
    `online`), and with a `configuration`, an online estimator only where the
    configuration suits it (`online_spec_for`).

    Raises:
        TypeError: naming `estimator`, listing the catalogue's estimators.
        ValueError: as `online_spec_for`.
    """
    if not isinstance(estimator, OnlineEstimator if online else Estimator):
        got = repr(estimator) if online else type(estimator).__name__
        raise TypeError(
            f"estimator: expected an online_emulate.estimators {'online ' * online}estimator "
            f"({catalogued(True if online else None)}), got {got}"
        )
    if configuration is not None and estimator.online:
        # an unsupported configuration/estimator pair fails here, not mid-compile
        online_spec_for(configuration, estimator, ref_stepper=ref_stepper,
                        residuum_fn=residuum_fn)
    return estimator


def online_spec_for(configuration, estimator, *, ref_stepper, residuum_fn):
    """`configuration.online_spec()`, or a ValueError naming what the pair supports.

    Raises:
        ValueError: if the configuration has no per-step decomposition (listing the
            estimators it supports), or a reference stepper / residuum function that
            the per-step loss needs is missing.
        TypeError: if `configuration` has no `online_spec` method.
    """
    if not hasattr(configuration, "online_spec"):
        raise TypeError(
            f"configuration: expected an online_emulate configuration with an "
            f"online_spec() method, got {type(configuration).__name__}"
        )
    try:
        spec = configuration.online_spec()
    except ValueError as err:
        fits = ", ".join(type(c).__name__ + ("" if switch is None else f"({switch}=True)")
                         for _, switch, c in online_entries())
        raise ValueError(
            f"estimator: expected an estimator that suits {configuration!r}, got "
            f"{estimator!r}, which runs forward in time and needs a loss that is a sum "
            f"of per-step terms of the current state. "
            f"This configuration supports only the estimators that are not online: "
            f"{catalogued(False)}. The online estimators ({catalogued(True)}) support "
            f"{fits}. (configuration said: {err})"
        ) from None
    if spec.uses_ref_stepper and ref_stepper is None:
        raise ValueError(f"ref_stepper: expected a reference stepper ({configuration!r} "
                         "needs it), got None")
    if spec.uses_residuum_fn and residuum_fn is None:
        raise ValueError(f"residuum_fn: expected a residuum function ({configuration!r} "
                         "needs it), got None")
    return spec


def first_level(data: PyTree) -> PyTree:
    """`data[:, 0]` on every leaf: the initial batched state."""
    return jax.tree_util.tree_map(lambda x: x[:, 0], data)


def weight_at(spec):
    """`t -> weights[t]` (t may be traced and >= num_steps, giving 0). Uniform weights
    become a scalar constant, so no length-T array enters the compiled loop (which
    would make memory grow with T)."""
    R = spec.num_steps
    try:
        w = np.asarray(spec.weights)
        uniform = bool(np.all(w == w[0]))
    except Exception:  # traced weights
        w, uniform = None, False
    if uniform:
        w0 = w[0]
        return lambda t: jnp.where(t < R, jnp.asarray(w0), jnp.zeros((), w.dtype))
    weights = jnp.asarray(spec.weights)
    return lambda t: jnp.where(t < R, weights[jnp.minimum(t, R - 1)], 0.0).astype(weights.dtype)


Term = Callable[[PyTree, PyTree, PyTree], Float[Array, ""]]


class CarryOps(Protocol):
    """The online contract: an estimator's carry, advanced one step at a time.

    A carry holds the current batched state `u` and what the estimator keeps about
    the past: TruncatedBPTT its window (states and step inputs since the window
    began), ForwardRTRL the sensitivity J = du/dtheta, ETrace braintrace's
    eligibility traces. All methods are pure functions of arrays (ETrace's advance
    brainstate States, so they run under brainstate transformations: `jittable`).

    * `init(params, u0, x) -> carry`: start at the batched state `u0`; `x` is an
      example step input (only its structure is used).
    * `reset(carry, where, u=None) -> carry`: an explicit reset event. Where the
      traced bool `where` holds, the gradient path through the past ends (a
      `cut_bptt` cut, a teacher-forcing reset, a new rollout) and, if `u` is given,
      the state is replaced by `u`.
    * `force(carry, alpha, u) -> carry` (ForwardRTRL and TruncatedBPTT only): a
      generalized teacher-forcing mix, the state becomes `(1 - alpha) * state + alpha *
      u` (`u` carries no gradient) and the gradient path through the past is scaled by
      `1 - alpha` (alpha = 1 is a reset).
    * `step(params, carry, x, term) -> (carry, loss, grads)`: one network step
      `nxt = apply(params, prev)`; `loss = term(prev, nxt, x)` (the weighted loss of
      the step, `x` its input: targets or a time index) and this step's gradient
      contribution, shaped like `params`.
    * `flush(params, carry, term) -> (carry, grads)`: gradient still held back
      (TruncatedBPTT's open window; zero for the others); the window restarts.
    * `holds(num_steps) -> bool` (static): whether a flush `num_steps` steps after the
      last one (or `init`) can return anything; callers skip the flush otherwise.
    * `state(carry) -> u`.

    The gradient of a rollout is the sum of the `step` contributions plus the final
    `flush`; the parameters may change between steps (streaming training).
    """

    jittable: bool

    def init(self, params: PyTree, u0: jax.Array, x: PyTree) -> PyTree: ...

    def reset(self, carry: PyTree, where: ArrayLike, u: jax.Array | None = None) -> PyTree: ...

    def step(
        self,
        params: PyTree,
        carry: PyTree,
        x: PyTree,
        term: Term,
    ) -> tuple[PyTree, Float[Array, ""], PyTree]: ...

    def flush(self, params: PyTree, carry: PyTree, term: Term) -> tuple[PyTree, PyTree]: ...

    def holds(self, num_steps: int) -> bool: ...

    def state(self, carry: PyTree) -> jax.Array: ...


@frozen
class OnlineEstimator(Estimator):
    """An estimator that runs forward in time through a `CarryOps` carry.

    Subclasses implement `carry_ops(model, state_shape, *, horizon)` (`horizon`:
    the most steps between two flushes, which bounds TruncatedBPTT's window; and optionally
    `check(params, state_shape, dtype)`, called before anything is traced);
    `value_and_grad` runs the carry over the configuration's steps and sums, so the
    window gradient and the streaming trainer share one implementation.

    Attributes:
        persist_carry: whether a streaming trainer keeps the carry across parameter
            updates by default (True for RTRL-style estimators).
    """

    online: ClassVar[bool] = True
    persist_carry: ClassVar[bool] = True

    def carry_ops(self, model: Model, state_shape: tuple[int, ...], *, horizon: int) -> CarryOps:
        raise NotImplementedError

    def check(self, params: PyTree, state_shape: tuple[int, ...], dtype: DTypeLike) -> None:
        """Raise before any tracing if the estimator cannot run on this problem."""

    def value_and_grad(
        self,
        configuration: BaseConfiguration,
        model: Model,
        params: PyTree,
        data: jax.Array,
        *,
        ref_stepper: Callable | None = None,
        residuum_fn: Callable | None = None,
    ) -> tuple[Float[Array, ""], PyTree]:
        """`(loss, grads)`: the carry run over `configuration.online_spec()`'s steps, summed.

        Raises:
            ValueError: unsupported configuration, missing references, or an estimator
                specific limit (e.g. ForwardRTRL's memory budget).
            TypeError: `data` is not one array.
        """
        spec = online_spec_for(configuration, self, ref_stepper=ref_stepper,
                               residuum_fn=residuum_fn)
        u0 = first_level(data)
        if not hasattr(u0, "shape"):
            raise TypeError(
                f"data: expected one array (batch, time, C, *N) for {self!r}, got a "
                f"{type(data).__name__} PyTree"
            )
        out = jax.eval_shape(model_apply(model), params, u0)
        self.check(params, out.shape, out.dtype)
        ops = self.carry_ops(model, tuple(out.shape), horizon=spec.num_steps)
        return ops_value_and_grad(ops, configuration, spec, params, data,
                                  ref_stepper=ref_stepper, residuum_fn=residuum_fn)


def run_window(ops: CarryOps, spec, params, data, *, ref_stepper, residuum_fn, scan=jax.lax.scan):
    """Run the carry over the `spec.num_steps` steps of a window of `data` and sum.

    The rollout kernel (`online_emulate._rollout.rollout`) drives the carry: after each
    step the spec's cuts end the gradient path (`ops.reset(carry, where)`) and its
    teacher-forcing resets also replace the state by the next data level; the window's
    held-back gradient (`ops.flush`) is added at the end.

    Returns:
        `(loss, grads)`.
    """
    wt = weight_at(spec)

    def term(prev, nxt, t):
        return wt(t) * spec.step_loss(t, prev, nxt, data, ref_stepper=ref_stepper,
                                      residuum_fn=residuum_fn)

    carry = ops.init(params, first_level(data), jnp.zeros((), jnp.int32))
    u_dtype = ops.state(carry).dtype
    loss_dtype = jnp.result_type(jnp.asarray(spec.weights).dtype, u_dtype)

    def step(carry, t):
        carry, loss, grads = ops.step(params, carry, t, term)
        return carry, (loss.astype(loss_dtype), grads)

    def level(t):
        return jax.lax.dynamic_index_in_dim(data, t, axis=1, keepdims=False).astype(u_dtype)

    zeros = (jnp.zeros((), loss_dtype), jax.tree_util.tree_map(jnp.zeros_like, params))
    carry, (total, g) = rollout(
        step, carry, spec.num_steps, accumulate=zeros, events=spec.events, level=level,
        cut=ops.reset, reset=ops.reset, scan=scan,
    )
    if not ops.holds(spec.num_steps):
        return total, g
    _, dg = ops.flush(params, carry, term)
    return total, tree_add(g, dg)


def ops_value_and_grad(ops, configuration, spec, params, data, *, ref_stepper, residuum_fn):
    """`run_window` for a pure `ops`; `ops` that advance States provide their own."""
    if ops.jittable:
        return run_window(ops, spec, params, data, ref_stepper=ref_stepper,
                          residuum_fn=residuum_fn)
    return ops.value_and_grad(configuration, spec, params, data, ref_stepper=ref_stepper,
                              residuum_fn=residuum_fn)
