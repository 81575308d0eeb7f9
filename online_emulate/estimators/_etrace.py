"""braintrace eligibility-trace estimators (D_RTRL, ES_D_RTRL)."""

from __future__ import annotations

import copy
import importlib
from typing import Callable, ClassVar

import brainstate
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from .._checks import check_real, check_required
from .._frozen import frozen
from ..configuration import BaseConfiguration
from ..emulators._functional import _lookup, _nest
from ..emulators import ModelAdapter
from ._base import Model, OnlineEstimator, first_level, online_spec_for, run_window
from .._cache import BoundedCache, cache_key

__all__ = ["ETrace"]

RECURRENCES = ("diagonal", "coupled")


def _signature(emulator, state_shape) -> tuple:
    """What a compiled learner depends on: the emulator's structure (not its values)."""
    graphdef, _ = brainstate.graph.treefy_split(emulator)
    # a ParamState may hold a dict of arrays (braintrace.nn layers)
    params = tuple(
        (path, str(jax.tree_util.tree_structure(st.value)),
         tuple((tuple(x.shape), str(x.dtype)) for x in jax.tree_util.tree_leaves(st.value)))
        for path, st in emulator.states(brainstate.ParamState).items())
    return (type(emulator), graphdef, params, tuple(state_shape))



#: compiled learners, per (estimator, emulator structure, state shape); each holds a
#: private copy of the emulator, never the user's
_LEARNERS = BoundedCache(16)


class _Runner:
    """One compiled braintrace learner and its carry operations (`CarryOps`).

    The learner is built on the runner's own copy of the emulator, so it keeps no
    user emulator alive and serves every emulator of the same structure: the
    parameters are written into the copy's States at every step. Its carry is
    `(u, [values of the learner's other States])`: the field, channel-first, plus the
    eligibility traces (and inner hidden states and counters), so it persists across
    parameter updates as plain arrays.
    """

    jittable = False

    def __init__(self, emulator, state_shape, algorithm, decay, recurrence):
        # the braintrace bridge (and braintrace, scipy.stats) loads when a learner is first
        # built, not when the estimators are imported
        bridge = importlib.import_module("..online", __package__)
        self.emulator = copy.deepcopy(emulator)
        self.model = bridge.RecurrentEmulator(self.emulator, state_shape)
        self.learner = bridge.compile_learner(self.model, algorithm, decay=decay,
                                              recurrence=recurrence)
        ids = {id(st): path for path, st in self.emulator.states(brainstate.ParamState).items()}
        self.learner_to_emulator = {
            lpath: ids[id(st)] for lpath, st in self.learner.param_states.items()
        }
        self.emulator_states = dict(self.emulator.states(brainstate.ParamState).items())
        params = {id(st) for st in self.emulator_states.values()}
        field = id(self.model.u)
        self.aux_states = [st for st in self.learner.states().values()
                           if id(st) not in params and id(st) != field]
        self.aux_zeros = [jax.tree_util.tree_map(lambda v: jnp.zeros_like(jnp.asarray(v)),
                                                 st.value) for st in self.aux_states]
        self.dummy = jnp.zeros((state_shape[0], 1), self.model.dtype)
        seen = {}
        for st in [*self.emulator_states.values(), *self.learner.states().values()]:
            seen.setdefault(id(st), st)
        self.touched_states = list(seen.values())
        self._fns = {}

    # a lifted model (`emulators.LiftedModule`) holds its weight operands, computed from
    # the model's parameter PyTree; a brainstate module holds the parameters themselves
    def _write_params(self, params):
        if hasattr(self.emulator, "write_params"):
            self.emulator.write_params(params)
            return
        for path, st in self.emulator_states.items():
            st.value = _lookup(params, path)

    def _grads(self, params, grads):
        if hasattr(self.emulator, "param_grads"):
            return self.emulator.param_grads(params, {p[-1]: g for p, g in grads.items()})
        return _nest(grads)

    # -- CarryOps --------------------------------------------------------------------
    def init(self, params, u0, x):
        return (jnp.asarray(u0, self.model.dtype), list(self.aux_zeros))

    def reset(self, carry, where, u=None):
        state, aux = carry
        if u is not None:
            state = jnp.where(where, u.astype(state.dtype), state)
        # a reset or cut state does not depend on theta: the traces start afresh
        aux = jax.tree_util.tree_map(lambda v: jnp.where(where, jnp.zeros_like(v), v), aux)
        return (state, aux)

    def step(self, params, carry, x, term):
        u, aux = carry
        # every State this step writes gets its entry value back at the end: the carry
        # holds the traces, and a State left holding them would be a second loop carry
        # (brainstate's scan carries what a body writes), which XLA fills with a copy of
        # each trace every step (B * N * |K| floats per layer; benchmarks/RESULTS.md,
        # "D_RTRL's floor")
        entry = [st.value for st in self.touched_states]
        self._write_params(params)
        for st, value in zip(self.aux_states, aux):
            st.value = value
        self.model.set_field(u)
        prev = jax.lax.stop_gradient(u)
        learner = self.learner

        def objective():
            nxt = self.model.to_channel_first(learner(self.dummy))
            return term(prev, nxt, x)

        g, loss = brainstate.transform.grad(objective, learner.param_states,
                                            return_value=True)()
        grads = self._grads(params, {self.learner_to_emulator[k]: v for k, v in g.items()})
        carry = (self.model.field(), [st.value for st in self.aux_states])
        for st, value in zip(self.touched_states, entry):
            st.value = value
        return carry, loss, grads

    def flush(self, params, carry, term):
        return carry, jax.tree_util.tree_map(jnp.zeros_like, params)

    def holds(self, num_steps: int) -> bool:
        return False

    def state(self, carry):
        return carry[0]

    # -- whole windows -----------------------------------------------------------------
    def window_fn(self, configuration, spec, ref_stepper, residuum_fn):
        """The brainstate-jitted `(params, data) -> (loss, grads)` over one window."""
        parts = (configuration, ref_stepper, residuum_fn)
        key = tuple(cache_key(x) for x in parts)
        if key not in self._fns:
            fn = brainstate.transform.jit(
                lambda params, data: run_window(self, spec, params, data, ref_stepper=ref_stepper,
                                                residuum_fn=residuum_fn,
                                                scan=brainstate.transform.scan))
            # the parts are kept with the program so an identity key is never reused
            self._fns[key] = (fn, parts)
        return self._fns[key][0]

    def value_and_grad(self, configuration, spec, params, data, *, ref_stepper, residuum_fn):
        return self.window_fn(configuration, spec, ref_stepper, residuum_fn)(params, data)


@frozen
class ETrace(OnlineEstimator):
    """braintrace eligibility-trace gradients, memory independent of the rollout length.

    The emulator is wrapped as `online_emulate.online.RecurrentEmulator` (hidden state =
    the field u, plus ConvNet inner layer outputs) and compiled with `braintrace.compile`.
    The trace follows eps_t = D_t eps_{t-1} + dh_t/dtheta and the gradient is
    g = sum_t dL_t/dh_t . eps_t, where D_t stands for the hidden-to-hidden Jacobian:

    * `recurrence="diagonal"` (default, braintrace's default scope): the mixing ops
      (convolutions) are dropped from the transition before it is differentiated, so
      D_t is NOT the diagonal of the true Jacobian. For `u -> conv(u)` it is 0 (the
      result equals TruncatedBPTT(1) exactly); for a residual `u -> u + net(u)` it is
      the identity, and for residual ConvNets of depth >= 2 only the last layer's trace
      gets that identity (inner layers declared as hidden states get one-step traces).
    * `recurrence="coupled"` (`braintrace.ETraceConfig(recurrence_scope='coupled')`):
      D_t keeps the true diagonal of the hidden-to-hidden Jacobian, including the
      convolution's centre tap. For a kernel-1 `LinearStencil`, whose Jacobian is
      diagonal, this is exact RTRL.

    Algorithms:

    * "d_rtrl": per-parameter traces (D_RTRL). Memory per conv layer ~
      B * N * (C_out * C_in * kernel).
    * "es_d_rtrl": the weight trace factorised into input and output traces smoothed
      with `decay` (ES_D_RTRL); memory O(B * H).

    Equal to BPTT at T = 1; for T > 1 an approximation whose quality has to be measured
    (see `gradient_fidelity`). Cuts and teacher-forcing resets restart the traces. The
    carry (field + traces) persists across parameter updates in a streaming trainer.
    Its model view must be a `ModelAdapter` (`online_emulate.emulators.adapt(model)`) of
    any model kind: the built-in emulators (whose own ETP convolutions give the same
    numbers several times slower) and every model not written with braintrace ETP ops
    (an equinox module, an `(apply, params)` pair, a brainstate module on plain jax ops)
    have their convolutions,
    dense products and element-wise scales and biases lifted into braintrace ETP ops
    (`emulators._lift`; a parameter used by any other operation is a TypeError naming
    it and the operation), and braintrace builds the traces of that module;
    `value_and_grad` is not traceable by an outer raw `jax.jit` (it jits itself with
    brainstate). The compiled learner is kept in a bounded cache, one per estimator value, emulator structure and state shape.

    Arguments:
        algorithm: "d_rtrl" or "es_d_rtrl".
        decay: ES_D_RTRL's smoothing in (0, 1); required for "es_d_rtrl", not allowed for
            "d_rtrl".
        recurrence: "diagonal" (default) or "coupled" (see above).

    Raises:
        ValueError: unknown algorithm or recurrence, missing/invalid decay.
    """

    jittable: ClassVar[bool] = False
    algorithm: str
    decay: float | None
    recurrence: str

    def __init__(self, algorithm: str = "d_rtrl", *, decay: float | None = None,
                 recurrence: str = "diagonal"):
        if algorithm not in ("d_rtrl", "es_d_rtrl"):
            raise ValueError(f"algorithm: expected 'd_rtrl' or 'es_d_rtrl', got {algorithm!r}")
        if algorithm == "es_d_rtrl":
            check_required("decay", decay, "a number in (0, 1) (ETrace('es_d_rtrl') needs it)")
            decay = check_real("decay", decay, positive=True, maximum=1.0, maximum_inclusive=False)
        elif decay is not None:
            raise ValueError(f"decay: expected None (only ETrace('es_d_rtrl') takes a decay), got {decay!r}")
        if recurrence not in RECURRENCES:
            raise ValueError(f"recurrence: expected 'diagonal' or 'coupled', got {recurrence!r}")
        self._set(algorithm=algorithm, decay=decay, recurrence=recurrence)

    @property
    def _runners(self) -> dict:
        """The learners compiled for this estimator's value so far (read-only copy)."""
        return {k[1:]: v for k, v in _LEARNERS.items() if k[0] == self}

    def __repr__(self):
        extra = "" if self.decay is None else f", decay={self.decay}"
        if self.recurrence != "diagonal":
            extra += f", recurrence={self.recurrence!r}"
        return f"ETrace({self.algorithm!r}{extra})"

    def runner(self, model: Model, state_shape: tuple[int, ...]) -> _Runner:
        """The compiled learner for models structured like `model` and batched states
        `(B, C, *N)` (built on first use, then kept in a bounded cache).

        Raises:
            TypeError: `model` is not an adapter (a pure apply function), or has a
                parameter used by an operation that cannot be lifted.
        """
        if not isinstance(model, ModelAdapter):
            raise TypeError(
                "model: expected a model's adapter (online_emulate.emulators.adapt(model)), "
                "whose recurrent module ETrace compiles, got "
                f"{type(model).__name__}; BPTT(), TruncatedBPTT(k) and ForwardRTRL() "
                "take a pure apply function"
            )
        lifting = self.algorithm + ("" if self.recurrence == "diagonal" else "/coupled")
        emulator = model.recurrent_module(tuple(state_shape), algorithm=lifting)
        return _LEARNERS.get((self, *_signature(emulator, state_shape)), lambda: _Runner(
            emulator, tuple(state_shape), self.algorithm, self.decay, self.recurrence))

    def prepare(self, model: Model, state_shape: tuple[int, ...]) -> None:
        """Compile the learner for `model` (its adapter) and batched states `(B, C, *N)` now.

        Callers that trace `value_and_grad` inside their own brainstate transformation
        (the trainers) call this first, so the learner's States are created eagerly
        rather than as tracers of that transformation.
        """
        self.runner(model, state_shape)

    def carry_ops(self, model: Model, state_shape: tuple[int, ...], *, horizon: int) -> _Runner:
        return self.runner(model, state_shape)

    def lowered(
        self,
        configuration: BaseConfiguration,
        model: Model,
        params: PyTree,
        data: jax.Array,
        *,
        ref_stepper: Callable | None = None,
        residuum_fn: Callable | None = None,
    ) -> jax.stages.Lowered:
        """The lowered (not yet compiled) XLA program of `value_and_grad` (for memory
        analysis: `.compile().memory_analysis()`)."""
        spec = online_spec_for(configuration, self, ref_stepper=ref_stepper,
                               residuum_fn=residuum_fn)
        runner = self.runner(model, first_level(data).shape)
        return runner.window_fn(configuration, spec, ref_stepper, residuum_fn).lower(params, data)
