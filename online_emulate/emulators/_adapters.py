"""One adapter per kind of model: the only place that knows what a model is.

Trainers, estimators, metrics, callbacks and plots see a model through `adapt(model)`:
a pure `apply(params, u)`, a parameter PyTree `params`, and `merge(params)` giving back a
model of the kind that was passed in. Three kinds are accepted:

* a brainstate `Module` (the built-in `LinearStencil` / `ConvNet`, or your own): the
  parameters are its `ParamState`s as a nested dict (`get_params`). The built-in
  emulators take one state or a batch, channel-first; your own module is called on a
  channel-LAST batch `(B, *N, C)` (the layout of `braintrace.nn` convolutions, which
  eligibility traces need: the field is the direct output of the last ETP op) and must
  return one of the same shape.
* an equinox `Module` (e.g. `equinox.nn.Conv1d`, a pdequinox network): the parameters
  are its floating-point arrays (`equinox.partition(model, equinox.is_inexact_array)`),
  it is called on ONE state `(C, *N)` as in trainax, and training returns an equinox
  module of the same type.
* an `(apply, params)` pair with `apply(params, u)` pure, called on ONE state `(C, *N)`.

Models called on one state are `jax.vmap`-ed over the batch where the library needs a
batch; brainstate modules get a leading singleton axis where it needs one state. On CPU,
the convolutions of equinox modules, pairs and user brainstate modules are evaluated as
matrix products (`_matmul_convs.matmul_convolutions`; same values up to float
rounding), except under `lax_conv_ops()`, where K-FAC needs the convolution primitives
(with kernels in the order kfac-jax reads, `_matmul_convs.kernel_space_first`), and
except for eligibility traces: ETrace compiles `recurrent_module(state_shape)`, user
modules on braintrace ETP ops as they are, every other model (the built-in emulators
included) with its parameter-consuming operations lifted into braintrace ETP ops
(`_lift.LiftedModule`).
"""

from __future__ import annotations

import contextlib
import copy
import sys
import warnings
from typing import Any, Callable

import brainstate
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike
from jaxtyping import PyTree

from .._cache import BoundedCache, cache_key, identity_key
from .._rollout import bind
from ._functional import Params, _lookup, _nest, set_params
from . import _lift
from ._lift import LiftedModule, uses_etp_ops
from ._matmul_convs import kernel_space_first, matmul_convolutions
from ._conv_net import ConvNet
from ._hidden import declaring_hidden_states
from ._linear_stencil import LinearStencil
from ._ops import channel_first_convs, lax_conv_ops, lax_ops, using_lax_conv_ops

__all__ = ["ModelAdapter", "adapt", "as_stepper", "functional", "model_name", "declared_state_ndim"]

# lifted modules by model signature, state shape and conv-bias layout (`_lifted`); each
# entry keeps its model alive, so no other model is named by its identity meanwhile
_LIFTED = BoundedCache(16)


# the layout ETrace lifts a built-in emulator in, per algorithm (and scope): "first"
# (channel-first convolutions, `_ops.channel_first_convs`) or "last" (their own). Measured
# on the built-in ConvNet 26 ch x 9 convolutions, ms per step, first / last, interleaved
# (benchmarks/RESULTS.md, "The built-in emulators lifted"): D_RTRL 28-30 / 39 (N=160,
# B=20), ES_D_RTRL 7.9-8.1 / 6.2-6.7, the coupled scope 163-168 / 455-458 (N=64, B=8).
# Read when a model is lifted, so that a benchmark can measure one against the other.
BUILTIN_LIFT_LAYOUT = {"d_rtrl": "first", "d_rtrl/coupled": "first", "es_d_rtrl": "last"}


def _merge(graphdef, flat, others, params):
    """A brainstate module of the graph `graphdef` holding `params`."""
    states = brainstate.util.NestedDict.from_flat(
        {path: ts.replace(_lookup(params, path)) for path, ts in flat.items()})
    return brainstate.graph.treefy_merge(graphdef, states, others)


def _undeclared(value, name):
    return value


# the emulators ETrace lifts although they declare their own layout (`_lifts_own_model`)
_BUILTIN_EMULATORS = (ConvNet, LinearStencil)


def declared_state_ndim(model: Any) -> int | None:
    """Axes of one state `(C, *N)` that `model` (a model, or any stepper) declares by its
    `num_spatial_dims` (the built-in emulators, exponax steppers); None otherwise."""
    d = getattr(model, "num_spatial_dims", None)
    return d + 1 if isinstance(d, int) else None


def model_name(model) -> str:
    """A short description of `model` for error messages."""
    if isinstance(model, tuple):
        fn = model[0] if model else None
        return f"(apply, params) pair with apply={getattr(fn, '__name__', type(fn).__name__)}"
    return f"{type(model).__module__.split('.')[0]} {type(model).__name__}"


class ModelAdapter:
    """The library's view of one model.

    Attributes:
        model: the model passed in (never modified).
        kind: "brainstate", "equinox" or "pair".
        params: the trainable parameters (a PyTree for optax and `jax.grad`).
        apply: `apply(params, u)` on one state `(C, *N)` or a batch `(B, C, *N)`
            (told apart by `state_ndim`), pure, with plain lax ops. The same function
            object for the life of the adapter (callbacks cache compiled code on it).
        state_ndim: axes of one state, `1 + num_spatial_dims` (None when unknown).
        one_sample: whether the user's model itself is called on one state.
    """

    kind = ""
    one_sample = True
    #: whether apply rewrites the model's convolutions (`_matmul_convs`): as matrix
    #: products on CPU, with kernels in kfac-jax's order under `lax_conv_ops()`; the
    #: built-in emulators need neither (their convolutions are written for both)
    rewrites_convolutions = False
    #: whether the model is one of the library's emulators (they step one array)
    library_emulator = False

    def __init__(self, model: Any, state_ndim: int | None):
        self.model = model
        self.state_ndim = state_ndim if state_ndim is not None else self._own_state_ndim()
        self.apply = self._make_apply()

    # -- per kind ------------------------------------------------------------------
    def _own_state_ndim(self) -> int | None:
        return None

    def _call(self, params, u):
        """The user's model on its own convention (one state, or a batch)."""
        raise NotImplementedError

    def merge(self, params: PyTree) -> Any:
        """A model of the input's kind holding `params` (the input is not modified)."""
        raise NotImplementedError

    def signature(self) -> tuple:
        """Hashable description: equal signatures may share compiled programs."""
        return (
            self.kind,
            jax.tree_util.tree_structure(self.params),
            tuple((x.shape, x.dtype) for x in jax.tree_util.tree_leaves(self.params)),
        )

    def check_state(self, shape: tuple, dtype: DTypeLike, *, name: str = "data") -> None:
        """Check that the model maps one state of `shape` `(C, *N)` to the same shape
        (by `jax.eval_shape`: nothing is computed or compiled).

        Raises:
            ValueError: naming `name` (for a rank or channel mismatch) or `emulator`.
        """
        one = jax.ShapeDtypeStruct(tuple(shape), dtype)
        # the shape ETrace lifts the model at when no other is given (pre-flight checks)
        self._checked = (tuple(shape), dtype)
        try:
            out = jax.eval_shape(self.apply, self.params, one)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"emulator: expected a model that takes one state of shape {tuple(shape)} "
                f"from {name}, got the {model_name(self.model)}, which fails with: {err}"
            ) from None
        if tuple(getattr(out, "shape", ())) != tuple(shape):
            raise ValueError(
                f"emulator: expected the {model_name(self.model)} to map one state of "
                f"shape {tuple(shape)} to the same shape, got "
                f"{getattr(out, 'shape', type(out).__name__)}"
            )

    def recurrent_module(self, state_shape: tuple[int, ...] | None = None, *,
                         algorithm: str = "d_rtrl") -> brainstate.nn.Module:
        """The brainstate module an eligibility-trace learner (ETrace) compiles: the
        model's step with its parameter-consuming operations lifted to braintrace ETP
        ops (`_lift.LiftedModule`, one per state shape, kept on the adapter).

        Arguments:
            state_shape: the batched states `(B, C, *N)`; default the shape last given
                to `check_state`.
            algorithm: the ETrace algorithm, "d_rtrl" or "es_d_rtrl" (braintrace wants
                a channel-first convolution's bias in a different shape for each), with
                "/coupled" for the coupled scope (`_lift.KERNEL_ORDER`: its fastest
                lifting differs).

        Raises:
            TypeError: naming the parameter and the operation that cannot be lifted, or
                when no state shape is known.
        """
        return self._lifted(state_shape, self._batch_step(), channel_last=False,
                            algorithm=algorithm)

    def _batch_step(self) -> Callable:
        call = self._call
        return jax.vmap(call, in_axes=(None, 0)) if self.one_sample else call

    def _lifted(self, state_shape, fn, *, channel_last, algorithm="d_rtrl",
                keep_model=True):
        # `channel_last` is part of the key: a built-in emulator is lifted in either layout;
        # `keep_model`: the cache entry keeps the model alive (its step closes over it)
        if state_shape is not None:
            one, dtype = tuple(state_shape[1:]), _params_dtype(self.params)
        elif getattr(self, "_checked", None) is not None:
            one, dtype = self._checked
        else:
            raise TypeError(
                f"state_shape: expected the batched states (B, C, *N) the {model_name(self.model)} "
                "steps (ETrace lifts its operations at that shape), got None"
            )
        base = algorithm.split("/")[0]
        conv_bias = "state" if base == "es_d_rtrl" else "vector"
        # shared by adapters of models with one signature (value_and_grad adapts its
        # model at every call): ETrace then finds its compiled learner again
        kernel_order = _lift.KERNEL_ORDER.get(algorithm, _lift.KERNEL_ORDER[base])
        if kernel_order == "factored_patch_op" and algorithm != "d_rtrl":
            # only D_RTRL's diagonal scope drops the convolutions from the
            # hidden-to-hidden Jacobian, which the factored trace assumes is zero
            kernel_order = "patch_op"
        key = (self._lift_key(), one, str(jnp.dtype(dtype)), conv_bias, kernel_order,
               bool(channel_last))
        return _LIFTED.get(key, lambda: LiftedModule(
            fn, self.params, one, jnp.dtype(dtype), channel_last=channel_last,
            model=model_name(self.model), conv_bias=conv_bias, kernel_order=kernel_order),
            keep=self.model if keep_model else None)

    def _lift_key(self):
        return self.signature()

    # -- shared --------------------------------------------------------------------
    def _make_apply(self) -> Callable:
        call, one_sample = self._call, self.one_sample
        batch_call = jax.vmap(call, in_axes=(None, 0)) if one_sample else call
        rewritten = {fn: matmul_convolutions(fn) for fn in (call, batch_call)}
        for_kfac = {fn: kernel_space_first(fn) for fn in (call, batch_call)}

        def run(fn, params, u):
            if not self.rewrites_convolutions:
                return fn(params, u)
            # K-FAC traces under lax_conv_ops: its graph matcher needs convolutions, with
            # kernels in the order kfac-jax can read
            if using_lax_conv_ops():
                return for_kfac[fn](params, u)
            # on CPU, a user's convolutions become matrix products: XLA:CPU runs
            # convolution primitives inside the trainers' loops several times slower
            if jax.default_backend() == "cpu":
                return rewritten[fn](params, u)
            return fn(params, u)

        def apply(params, u):
            nd = self.state_ndim
            if nd is None:
                return run(call, params, u)
            if u.ndim == nd:
                return run(call, params, u) if one_sample else run(call, params, u[None])[0]
            if u.ndim == nd + 1:
                return run(batch_call, params, u)
            raise ValueError(
                f"u: expected one state with {nd} axes (channel, *space) or a batch with "
                f"{nd + 1} axes, got shape {tuple(u.shape)}"
            )

        # with a known state rank, apply tells one state from a batch: configurations
        # may then step batches whole (`_rollout.bind`) instead of vmapping one state
        apply.steps_batches = self.state_ndim is not None
        return apply

    def __repr__(self):
        return f"{type(self).__name__}({model_name(self.model)})"


class BrainstateAdapter(ModelAdapter):
    kind = "brainstate"

    def __init__(self, model, state_ndim):
        self._graphdef, param_states, self._others = brainstate.graph.treefy_split(
            model, brainstate.ParamState, ...
        )
        self._flat = param_states.to_flat()
        self.params = _nest({path: ts.value for path, ts in self._flat.items()})
        # the built-in emulators take one state or a batch; a user module takes a batch
        self.one_sample = False
        self._own_layout = hasattr(model, "num_spatial_dims") and hasattr(model, "_forward")
        self.library_emulator = self._own_layout
        # a user module's convolutions (lax or braintrace.nn) are rewritten on this path;
        # eligibility traces compile the module itself (`recurrent_module`), untouched
        self.rewrites_convolutions = not self._own_layout
        super().__init__(model, state_ndim)

    def _own_state_ndim(self):
        return declared_state_ndim(self.model)

    def _module(self, params):
        return _merge(self._graphdef, self._flat, self._others, params)

    def _call(self, params, u):
        module = self._module(params)
        with lax_ops():
            if self._own_layout:
                return module(u)
            # a user module steps channel-last batches, like braintrace's layers; under
            # the configurations' vmap its ETP ops fall back to plain JAX ops, which is
            # what BPTT wants (braintrace's warning concerns learners, compiled elsewhere)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="ETP primitive .* decomposed")
                return jnp.moveaxis(module(jnp.moveaxis(u, 1, -1)), -1, 1)

    def merge(self, params):
        return set_params(copy.deepcopy(self.model), params)

    def signature(self):
        # the graph definition holds the module's options (an activation, a layout)
        graph = self._graphdef
        try:
            hash(graph)
        except TypeError:
            # a static attribute holds an array (braintrace layers keep their `b_init`):
            # keyed by content, what has no value by an identity that is never reused
            graph = cache_key(graph)
        return (type(self.model), graph) + super().signature()

    def check_state(self, shape, dtype, *, name="data"):
        model = self.model
        if self._own_layout:
            d, c = model.num_spatial_dims, model.in_channels
            if len(shape) != d + 1 or shape[0] != c:
                raise ValueError(
                    f"{name}: expected states ({c}, {', '.join(['N'] * d)}) for this {d}-D "
                    f"emulator with {c} channel(s), got one state of shape {tuple(shape)}"
                )
        super().check_state(shape, dtype, name=name)

    def _lift_key(self):
        if self._own_layout and self._lifts_own_model():
            # a built-in emulator's structure is its graph definition and parameter shapes
            return ("built-in",) + self.signature()
        # the lifted step closes over this module's non-parameter states
        return (identity_key(self.model),) + self.signature()

    def recurrent_module(self, state_shape=None, *, algorithm="d_rtrl"):
        # a user module on braintrace ETP ops compiles as it is; a user module with plain
        # jax ops is lifted (channel-last, as it steps); so is a built-in emulator, whose
        # own braintrace.conv traces ran D_RTRL 2.3x and ES_D_RTRL 6.8x slower than the
        # lifted form of the same network (benchmarks/RESULTS.md, "The built-in emulators
        # lifted")
        if self._own_layout and not self._lifts_own_model():
            return self.model
        # without a state shape nothing can be lifted: the module compiles as written
        if state_shape is None and getattr(self, "_checked", None) is None:
            return self.model
        if self._own_layout:
            # the step closes over the module's structure, not the module: the lifted
            # step is cached by structure and must keep no user emulator alive
            graphdef, flat, others = self._graphdef, self._flat, self._others
            first = BUILTIN_LIFT_LAYOUT.get(algorithm, "first") == "first"

            def own_step(params, u):
                # convolutions as conv_general_dilated primitives, which the lift reads,
                # in the layout `BUILTIN_LIFT_LAYOUT` names; the model's own hidden-state
                # declarations are the lift's to make (it declares every lifted op's output
                # that reaches another), and a plan traced while a learner counts its
                # states must not add them again
                layout = channel_first_convs() if first else contextlib.nullcontext()
                with lax_conv_ops(), layout, declaring_hidden_states(_undeclared):
                    return _merge(graphdef, flat, others, params)._forward(u)

            return self._lifted(state_shape, own_step, channel_last=not first,
                                algorithm=algorithm, keep_model=False)

        def step(params, u):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="ETP primitive .* decomposed")
                return self._module(params)(u)

        # a module that uses braintrace ETP ops is the user's own ETrace design: it
        # compiles as written (and braintrace's exclusions are reported as before)
        shape = state_shape or (1,) + self._checked[0]
        b, c, *n = shape
        probe = jax.ShapeDtypeStruct((b, *n, c), _params_dtype(self.params))
        if uses_etp_ops(step, self.params, probe):
            return self.model
        return self._lifted(state_shape, step, channel_last=True, algorithm=algorithm)

    def _lifts_own_model(self) -> bool:
        """Whether ETrace lifts this module although it declares its own layout: a
        built-in emulator does (a `LiftedModule` is already lifted; a user subclass of
        `Emulator` compiles as written)."""
        return type(self.model) in _BUILTIN_EMULATORS

    def field_step(self):
        """`(step, channel_last)`: the module's step on the batched field as braintrace
        stores it, channel-last `(B, *N, C)`: the layout the ETP convolutions write (a
        layout change between an ETP op and the hidden state it writes breaks
        braintrace's trace solve)."""
        if self._own_layout:
            return self.model._forward, getattr(self.model, "field_channel_last", True)
        return self.model, True


class EquinoxAdapter(ModelAdapter):
    kind = "equinox"
    rewrites_convolutions = True

    def __init__(self, model, state_ndim):
        # equinox is imported by whoever built the model; no import here
        self._eqx = eqx = sys.modules["equinox"]
        self.params, self._static = eqx.partition(model, eqx.is_inexact_array)
        super().__init__(model, state_ndim)

    def _call(self, params, u):
        return self._eqx.combine(params, self._static)(u)

    def merge(self, params):
        return self._eqx.combine(params, self._static)

    def signature(self):
        return (jax.tree_util.tree_structure(self.model),) + super().signature()


class PairAdapter(ModelAdapter):
    kind = "pair"
    rewrites_convolutions = True

    def __init__(self, model, state_ndim):
        self._fn, self.params = model
        super().__init__(model, state_ndim)

    def _call(self, params, u):
        return self._fn(params, u)

    def merge(self, params):
        return (self._fn, params)

    def signature(self):
        return (identity_key(self._fn),) + super().signature()


def _params_dtype(params):
    return jnp.result_type(*jax.tree_util.tree_leaves(params))


def _is_equinox(model) -> bool:
    # a model can only be an equinox module once equinox is imported, so equinox (an
    # optional dependency) is never loaded here
    eqx = sys.modules.get("equinox")
    return eqx is not None and isinstance(model, eqx.Module)


def adapt(model: Any, *, state_ndim: int | None = None) -> ModelAdapter:
    """The adapter of `model` (see the module docstring for the accepted kinds).

    Arguments:
        model: a brainstate Module, an equinox Module or an `(apply, params)` pair.
        state_ndim: axes of one state `(C, *N)`; lets `apply` tell one state from a
            batch for models that do not know their own dimension.

    Raises:
        TypeError: naming what was expected, for anything else (or a pair whose first
            entry is not callable).
    """
    if isinstance(model, ModelAdapter):
        return model
    if isinstance(model, brainstate.nn.Module):
        return BrainstateAdapter(model, state_ndim)
    if _is_equinox(model):
        return EquinoxAdapter(model, state_ndim)
    if isinstance(model, tuple) and len(model) == 2 and callable(model[0]):
        return PairAdapter(model, state_ndim)
    raise TypeError(
        "emulator: expected a brainstate Module (e.g. online_emulate.emulators."
        "LinearStencil or your own), an equinox Module, or an (apply, params) pair with "
        f"apply(params, u) pure; got {type(model).__name__}"
    )


def as_stepper(model: Any, *, state_ndim: int | None = None,
               states: tuple[int, ...] | None = None, states_name: str = "states") -> Callable:
    """`u -> u_next` for any accepted model kind, at its current parameters.

    Models go through their adapter (so a brainstate module that takes a batch, or an
    `(apply, params)` pair, becomes a one-state stepper; with a known state rank it is a
    `BatchStepper`, which steps batches too); any other callable (e.g. an exponax
    reference stepper) is returned unchanged. `states`, the shape `(B, C, *N)` of the
    batches it will step, sets `state_ndim` and is checked against the rank the stepper
    declares (`num_spatial_dims`, as the built-in emulators and exponax steppers do).
    `states_name` is the name the caller's users know that shape by (the error names
    it).

    Raises:
        TypeError: if `model` is neither a model nor callable.
        ValueError: naming `states_name`, for `states` of fewer than 2 axes or of
            another rank than the stepper declares.
    """
    if states is not None:
        state_ndim, declared = max(len(states) - 1, 1), declared_state_ndim(model)
        if len(states) < 2 or declared not in (None, len(states) - 1):
            rank = ("at least 2 axes" if declared is None
                    else f"{declared + 1} axes for this {declared - 1}-D stepper")
            raise ValueError(f"{states_name}: expected a batch of states (batch, channel, "
                             f"*space), {rank}, got shape {tuple(states)} (add a leading "
                             "batch axis for a single state)")
    try:
        adapter = adapt(model, state_ndim=state_ndim)
    except TypeError:
        if callable(model):
            return model
        raise TypeError(
            "stepper: expected a callable one state (C, *N) -> next state, a brainstate "
            "or equinox Module, or an (apply, params) pair; got "
            f"{type(model).__name__}"
        ) from None
    return bind(adapter.apply, adapter.params)


def functional(
    emulator: brainstate.nn.Module,
) -> tuple[Callable[[Params, jax.Array], jax.Array], Any]:
    """Split a model into a pure function and its parameters.

    Arguments:
        emulator: a brainstate Module, an equinox Module or an `(apply, params)` pair
            (see `online_emulate.emulators.adapt`).

    Returns:
        `(apply, params)`: `apply(params, u)` evaluates the model with the given
        parameters on one state `(C, *N)` or (for models that know their dimension, like
        the built-in emulators) a batch `(B, C, *N)`, using plain lax ops (vmap-, jit-
        and grad-friendly). For a brainstate module `params` equals `get_params`. The
        model itself is not modified by calls of `apply`.

    Raises:
        TypeError: if `emulator` is none of the accepted kinds.
    """
    adapter = adapt(emulator)
    return adapter.apply, adapter.params
