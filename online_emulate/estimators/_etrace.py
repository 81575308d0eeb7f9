"""braintrace eligibility-trace estimators (D_RTRL, ES_D_RTRL)."""

from __future__ import annotations

import weakref

import brainstate
import jax
import jax.numpy as jnp

from ..emulators._functional import _nest
from ._base import Estimator, first_level, online_spec_for, teacher_reset, weight_at

__all__ = ["ETrace"]

_RUNNERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class _Runner:
    """One compiled braintrace learner for an (emulator, state shape, algorithm)."""

    def __init__(self, emulator, state_shape, algorithm, decay):
        from ..online import RecurrentEmulator, compile_learner  # avoid an import cycle

        self.emulator = emulator
        self.model = RecurrentEmulator(emulator, state_shape)
        self.learner = compile_learner(self.model, algorithm, decay=decay)
        ids = {id(st): path for path, st in emulator.states(brainstate.ParamState).items()}
        self.learner_to_emulator = {
            lpath: ids[id(st)] for lpath, st in self.learner.param_states.items()
        }
        self.emulator_states = dict(emulator.states(brainstate.ParamState).items())
        self.traces = [st for st in self.learner.states(brainstate.ShortTermState).values()
                       if st not in set(self.model.states(brainstate.HiddenState).values())]
        self.dummy = jnp.zeros((state_shape[0], 1), self.model.dtype)
        self._fns = {}

    def _build(self, spec, ref_stepper, residuum_fn):
        model, learner = self.model, self.learner
        hidden = list(model.states(brainstate.HiddenState).values())
        traces = self.traces

        def run(flat_params, data):
            for path, value in flat_params.items():
                self.emulator_states[path].value = value
            for st in hidden + traces:
                st.value = jax.tree_util.tree_map(jnp.zeros_like, st.value)
            model.set_field(first_level(data))

            def objective(t, w):
                prev, hit = teacher_reset(spec, t, model.field(), data)
                if spec.reset_every is not None:
                    model.set_field(prev)
                    for st in traces:  # the reset state does not depend on theta
                        st.value = jax.tree_util.tree_map(
                            lambda v: jnp.where(hit, jnp.zeros_like(v), v), st.value)
                prev = jax.lax.stop_gradient(prev)
                nxt = model.to_channel_first(learner(self.dummy))
                term = spec.step_loss(t, prev, nxt, data, ref_stepper=ref_stepper,
                                      residuum_fn=residuum_fn)
                return w * term

            grad_fn = brainstate.transform.grad(objective, learner.param_states,
                                                return_value=True)

            weights = jnp.asarray(spec.weights)
            wt = weight_at(spec)

            def body(carry, _):
                g_acc, l_acc, t = carry
                g, l = grad_fn(t, wt(t))
                return (jax.tree_util.tree_map(jnp.add, g_acc, g), l_acc + l, t + 1), None

            g0 = {k: jax.tree_util.tree_map(jnp.zeros_like, v.value)
                  for k, v in learner.param_states.items()}
            # A counter in the carry instead of xs = arange(T): nothing of length T is
            # materialised, so the temp memory does not grow with T.
            (g, loss, _), _ = brainstate.transform.scan(
                body, (g0, jnp.zeros((), weights.dtype), jnp.zeros((), jnp.int32)), None,
                length=spec.num_steps,
            )
            return loss, g

        return run


class ETrace(Estimator):
    """braintrace eligibility-trace gradients, memory independent of the rollout length.

    The emulator is wrapped as `online_emulate.online.RecurrentEmulator` (hidden state =
    the field u, plus ConvNet inner layer outputs) and compiled with `braintrace.compile`:

    * "d_rtrl": `ParamDimVjpAlgorithm` (D_RTRL). Trace eps_t = D_t eps_{t-1} + dh_t/dtheta,
      with the hidden-to-hidden Jacobian D_t replaced by its diagonal; g = sum_t
      dL_t/dh_t . eps_t. For a non-residual emulator the diagonal is zero and the result
      equals TruncatedBPTT(1) exactly; for a residual one it is the identity. Memory per
      conv layer ~ B * N * (C_out * C_in * kernel).
    * "es_d_rtrl": `IODimVjpAlgorithm` (ES_D_RTRL); the weight trace is factorised into
      input and output traces smoothed with `decay`; memory O(B * H).

    Equal to BPTT at T = 1; for T > 1 an approximation whose quality has to be measured
    (see `gradient_fidelity`). `value_and_grad` needs the brainstate `emulator` object;
    it is not traceable by an outer `jax.jit` (it jits itself with brainstate).

    Arguments:
        algorithm: "d_rtrl" or "es_d_rtrl".
        decay: ES_D_RTRL's smoothing in (0, 1); required for "es_d_rtrl", not allowed for
            "d_rtrl".

    Raises:
        ValueError: unknown algorithm, missing/invalid decay.
    """

    online = True
    jittable = False

    def __init__(self, algorithm: str = "d_rtrl", *, decay: float | None = None):
        if algorithm not in ("d_rtrl", "es_d_rtrl"):
            raise ValueError(f"algorithm: expected 'd_rtrl' or 'es_d_rtrl', got {algorithm!r}")
        if algorithm == "es_d_rtrl":
            if decay is None or isinstance(decay, bool) or not (0.0 < float(decay) < 1.0):
                raise ValueError(f"decay: ETrace('es_d_rtrl') needs a decay in (0, 1), got {decay!r}")
            decay = float(decay)
        elif decay is not None:
            raise ValueError(f"decay: only ETrace('es_d_rtrl') takes a decay, got {decay!r}")
        self._set(algorithm=algorithm, decay=decay)

    def _key(self):
        return (self.algorithm, self.decay)

    def __repr__(self):
        if self.decay is None:
            return f"ETrace({self.algorithm!r})"
        return f"ETrace({self.algorithm!r}, decay={self.decay})"

    def runner(self, emulator, state_shape):
        """The cached compiled learner for `emulator` and batched state shape `(B, C, *N)`."""
        per_emulator = _RUNNERS.setdefault(emulator, {})
        key = (tuple(state_shape), self.algorithm, self.decay)
        if key not in per_emulator:
            per_emulator[key] = _Runner(emulator, tuple(state_shape), self.algorithm, self.decay)
        return per_emulator[key]

    def prepare(self, emulator, state_shape) -> None:
        """Compile the learner for `emulator` and batched states `(B, C, *N)` now.

        Callers that trace `value_and_grad` inside their own brainstate transformation
        (the trainers) call this first, so the learner's States are created eagerly
        rather than as tracers of that transformation.
        """
        self.runner(emulator, state_shape)

    def _prepare(self, configuration, params, data, ref_stepper, residuum_fn, emulator):
        """Validate, compile (cached) and return `(brainstate-jitted fn, flat params, runner)`."""
        if emulator is None:
            raise TypeError("emulator: ETrace needs the brainstate emulator object, got None")
        spec = online_spec_for(configuration, self, ref_stepper=ref_stepper,
                               residuum_fn=residuum_fn)
        u0 = first_level(data)
        if not hasattr(u0, "shape"):
            raise TypeError("data: ETrace expects an array (batch, time, C, *N), not a PyTree")
        runner = self.runner(emulator, u0.shape)
        spec_key = (id(configuration), id(ref_stepper), id(residuum_fn))
        fn = runner._fns.get(spec_key)
        if fn is None:
            fn = brainstate.transform.jit(runner._build(spec, ref_stepper, residuum_fn))
            runner._fns[spec_key] = fn
            runner._keep = getattr(runner, "_keep", []) + [(configuration, ref_stepper, residuum_fn)]
        flat_params = {}
        for path in runner.emulator_states:
            node = params
            for k in path:
                node = node[k]
            flat_params[path] = node
        return fn, flat_params, runner

    def lowered(self, configuration, apply, params, data, *, ref_stepper=None,
                residuum_fn=None, emulator=None):
        """The lowered (not yet compiled) XLA program of `value_and_grad` (for memory
        analysis: `.compile().memory_analysis()`)."""
        fn, flat_params, runner = self._prepare(configuration, params, data, ref_stepper,
                                                residuum_fn, emulator)
        saved = {p: st.value for p, st in runner.emulator_states.items()}
        try:
            return fn.lower(flat_params, data)
        finally:
            for p, st in runner.emulator_states.items():
                st.value = saved[p]

    def value_and_grad(self, configuration, apply, params, data, *, ref_stepper=None,
                       residuum_fn=None, emulator=None):
        """`(loss, eligibility-trace gradient)` at `params` (written into a compiled copy
        of the emulator's states for the call; the emulator's own values are restored).

        Raises:
            TypeError: if `emulator` is not given.
            ValueError: unsupported configuration.
            ExcludedParameterError: a parameter braintrace would silently leave out.
        """
        fn, flat_params, runner = self._prepare(configuration, params, data, ref_stepper,
                                                residuum_fn, emulator)
        saved = {p: st.value for p, st in runner.emulator_states.items()}
        try:
            loss, g = fn(flat_params, data)
        finally:
            for p, st in runner.emulator_states.items():
                st.value = saved[p]
        grads = _nest({runner.learner_to_emulator[k]: v for k, v in g.items()})
        return loss, grads
