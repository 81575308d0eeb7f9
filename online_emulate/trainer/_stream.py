"""Training on windows streamed from the reference solver into an on-device buffer."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._checks import check_callable, check_int, check_positive_int, check_required, key_data
from .._compile import jit
from .._rollout import batched, bind, stop_gradient
from ..callback import Callback, CallbackContext
from ..configuration import BaseConfiguration
from ..data import WindowSampler
from ..emulators import adapt
from ..estimators import BPTT, Estimator
from ..estimators._base import check_estimator
from ._base import Trainer, check_callbacks, check_configuration, optax_transform
from ._checkpoint import restore_tree
from ._guard import DEFAULT_DIVERGENCE_FACTOR, advance, check_divergence_factor
from ._history import TrainingHistory
from ._program import batch_sharding, make_loss_and_grad
from ._progress import ProgressBar
from ._solver_streams import SolverStreams
from ._stream_buffer import POLICIES, BufferState, draw, init_buffer, offer
from ._update_rules import OptaxRule

__all__ = ["StreamTrainer", "solver_in_the_loop_windows"]

# what each of the run's keys is folded with
_STREAM_KEY, _BUFFER_KEY, _BATCH_KEY = 1, 2, 3


def solver_in_the_loop_windows(emulator_step: Callable, ref_step: Callable, starts,
                               *, horizon: int, window_length: int):
    """Windows that start where the emulator goes and continue with the solver.

    From each start state `s` the emulator takes `horizon` steps (no gradient), `v =
    f^horizon(s)`; the window is `(v, P(v), ..., P^(L-1)(v))` with the solver `P`: the
    solver's answer at a state the emulator itself visits (solver-in-the-loop, DAgger).

    Arguments:
        emulator_step, ref_step: batch steps `(K, C, *N) -> (K, C, *N)`.
        starts: `(K, C, *N)`.
        horizon: emulator steps (>= 1).
        window_length: L.

    Returns:
        `(K, L, C, *N)`.
    """
    v = jax.lax.fori_loop(0, horizon, lambda _, u: emulator_step(u), starts)
    v = stop_gradient(v).astype(starts.dtype)

    def level(u, _):
        return ref_step(u).astype(u.dtype), u

    _, levels = jax.lax.scan(level, v, None, length=window_length)
    return jnp.moveaxis(levels, 0, 1)


class StreamTrainer(Trainer):
    """Train an emulator on windows streamed from the reference solver, never stored.

    A pool of `num_streams` solver streams runs inside the compiled training loop: each
    advances `ref_stepper` from a fresh initial condition `ic_sampler(key, num)` and
    starts again from a new one after `stream_length` steps (`SolverStreams`). After
    every solver step each stream whose current trajectory holds a whole window of
    `configuration.num_time_levels` levels writes it into an on-device buffer of
    `buffer_size` windows (`sampling="fifo"`, the default, replaces the oldest window;
    `"reservoir"` keeps a uniform sample of every window made so far; see
    `online_emulate.trainer._stream_buffer`). Each training step first advances the
    pool `solver_steps_per_step` times, then draws `batch_size` windows uniformly (with
    replacement) from the buffer and updates the parameters with the configuration's
    loss and `estimator`'s gradient, as `GeneralTrainer` does on stored windows. Before
    the first step the pool fills the buffer (about `buffer_size / num_streams` solver
    steps of each stream).

    FIFO is the default because it keeps the two properties streaming is for: every
    window is drawn `batch_size / (num_streams * solver_steps_per_step)` times in
    expectation whenever it was made, and none is older than `buffer_size /
    (num_streams * solver_steps_per_step)` steps. A reservoir's share of new windows
    falls as 1 / (windows so far): late in a run it trains on the first windows
    (`benchmarks/stream_buffer.py` measures the usage and age of both).

    With `solver_in_the_loop=K`, each step also writes K windows made where the emulator
    goes: from the first level of K of the drawn windows the emulator (current
    parameters, no gradient) takes `solver_in_the_loop_horizon` steps, and the solver
    continues the window from the emulator's state (`solver_in_the_loop_windows`).

    Nothing is stored on the host and nothing grows with `num_training_steps`: the
    program's memory is set by `buffer_size` (the buffer, `(buffer_size, L, C, *N)`),
    `num_streams` and `batch_size` (`benchmarks/stream_memory.py` prints the compiled
    temporary memory for several run lengths).

    Arguments:
        configuration: an `online_emulate.configuration` object (what the loss is).
        ref_stepper: the solver on ONE state `(C, *N)` (jittable); also the
            configuration's reference stepper (diverted and mix chains).
        ic_sampler: `ic_sampler(key, num) -> (num, C, *N)`, traced inside the program
            (e.g. `lambda key, num: problem.sample_initial_conditions(num, key)` for a
            built-in problem).
        optimizer: an optax `GradientTransformation` (K-FAC is not supported here).
        num_training_steps: parameter updates per call.
        batch_size: windows per step.
        buffer_size: windows the buffer holds.
        estimator: how the gradient is computed (default exact `BPTT()`).
        num_streams: solver streams (default `batch_size`).
        stream_length: solver steps per initial condition (default 50, APEBench's
            training trajectories; at least `num_time_levels - 1`).
        solver_steps_per_step: solver steps of every stream per training step (default 1).
        sampling: `"fifo"` (default) or `"reservoir"`.
        solver_in_the_loop: windows made from the emulator's states per step (default 0;
            at most `batch_size`).
        solver_in_the_loop_horizon: emulator steps before the solver takes over (default 1).
        residuum_fn: `residuum_fn(next, prev)` on batches (Residuum).
        callbacks: `online_emulate.callback.Callback` objects; they see the buffer as
            their data (`ctx.data`, `(buffer_size, L, C, *N)`) at their first call.
        steps_per_call: steps per compiled chunk (default 200).
        progress_bar: show a bar (default True); its epoch counts buffer passes.
        clip_grad_norm: clip the global gradient norm to this value first, when set.
        checkpoint_path: where every call and `resume()` writes its final state when
            it ends, a divergence the kept state, and `save_checkpoint()` without a path
            the current one.
        data_parallel: shard each minibatch over all local devices along the batch axis
            (`batch_size` a multiple of the device count).
        divergence_factor: on a divergence the trainer keeps the latest state (with its
            streams and buffer) whose loss and gradient were finite and whose loss was at
            most this factor times the best of the 100 steps before it (default 1e3; see
            `TrainingDiverged`).

    Calling `trainer(emulator, key=...)` returns `(trained_emulator, history)` and does
    not modify the emulator; `history.loss[i]` is the pre-update loss of step i. Every
    call starts fresh (a new buffer, new streams, step 0); `resume()` continues the last
    call, and `resume_from=` a checkpoint (which holds the buffer and the streams)
    continues a saved run exactly as the uninterrupted run goes on.

    Raises:
        TypeError / ValueError: invalid arguments (here and at call, before compiling).
        TrainingDiverged: a non-finite loss, gradient or update; the exception carries an
            emulator with the kept parameters (see `divergence_factor`) and their loss (and
            a checkpoint if configured). The trainer keeps the streams and the buffer of
            that state too: a resume draws the same windows and evaluates that loss again.
    """

    def __init__(
        self,
        configuration: BaseConfiguration,
        *,
        ref_stepper: Callable,
        ic_sampler: Callable,
        optimizer: optax.GradientTransformation,
        num_training_steps: int,
        batch_size: int,
        buffer_size: int,
        estimator: Estimator | None = None,
        num_streams: int | None = None,
        stream_length: int = 50,
        solver_steps_per_step: int = 1,
        sampling: str = "fifo",
        solver_in_the_loop: int = 0,
        solver_in_the_loop_horizon: int = 1,
        residuum_fn: Callable | None = None,
        callbacks: Sequence[Callback] = (),
        steps_per_call: int = 200,
        progress_bar: bool = True,
        clip_grad_norm: float | None = None,
        checkpoint_path: str | None = None,
        data_parallel: bool = False,
        divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
    ):
        check_configuration(configuration)
        self.configuration = configuration
        self.window_length = int(configuration.num_time_levels)
        check_callable("ref_stepper", ref_stepper, expected="a solver on one state (C, *N)")
        check_callable("ic_sampler", ic_sampler,
                       expected="a callable ic_sampler(key, num) -> (num, C, *N)")
        if configuration.needs_residuum_fn:
            check_required("residuum_fn", residuum_fn,
                           f"residuum_fn(next, prev) on batches ({type(configuration).__name__} "
                           "needs it)")
        check_callable("residuum_fn", residuum_fn, allow_none=True)
        self.ref_stepper, self.ic_sampler, self.residuum_fn = ref_stepper, ic_sampler, residuum_fn
        if getattr(optimizer, "is_kfac", False):
            raise TypeError(
                "optimizer: expected an optax.GradientTransformation (K-FAC compiles its own "
                "step and cannot run inside the streaming loop; use "
                "online_emulate.optim.KFACPreconditioner in an optax.chain), got "
                f"{type(optimizer).__name__}"
            )
        self.optimizer, self.clip_grad_norm = optimizer, clip_grad_norm
        self.divergence_factor = check_divergence_factor(divergence_factor)
        self.rule = OptaxRule(optax_transform(optimizer, clip_grad_norm),
                              divergence_factor=self.divergence_factor)
        self.num_training_steps = check_positive_int("num_training_steps", num_training_steps)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.buffer_size = check_positive_int("buffer_size", buffer_size)
        self.num_streams = check_positive_int("num_streams", num_streams, allow_none=True) or batch_size
        self.stream_length = check_int(
            "stream_length", stream_length, minimum=max(1, self.window_length - 1),
            meaning="a trajectory holds one window of the configuration")
        self.solver_steps_per_step = check_positive_int("solver_steps_per_step",
                                                        solver_steps_per_step)
        if sampling not in POLICIES:
            raise ValueError(f"sampling: expected one of {list(POLICIES)}, got {sampling!r}")
        self.sampling = sampling
        self.solver_in_the_loop = check_int("solver_in_the_loop", solver_in_the_loop, minimum=0,
                                            maximum=self.batch_size, meaning="batch_size")
        self.solver_in_the_loop_horizon = check_positive_int("solver_in_the_loop_horizon",
                                                             solver_in_the_loop_horizon)
        self.steps_per_call = check_positive_int("steps_per_call", steps_per_call)
        self.estimator = check_estimator(BPTT() if estimator is None else estimator,
                                         configuration, ref_stepper=ref_stepper,
                                         residuum_fn=residuum_fn)
        self.callbacks = check_callbacks(callbacks)
        self.progress_bar, self.checkpoint_path = progress_bar, checkpoint_path
        self.data_parallel = bool(data_parallel)
        if self.data_parallel and self.batch_size % jax.device_count() != 0:
            raise ValueError(
                f"batch_size: expected a multiple of the {jax.device_count()} devices "
                f"(data_parallel), got {self.batch_size}"
            )
        self.streams = SolverStreams(ref_stepper, ic_sampler, num_streams=self.num_streams,
                                     stream_length=self.stream_length,
                                     window_length=self.window_length)
        self._compiled = None
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the run: parameters, optimizer state, step, key, history, streams and
        buffer (the compiled programs are kept)."""
        super().reset()
        self.stream_state = None
        self.buffer = None
        self._model_spec = None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds: the trainer state, the streams and the buffer."""
        return {**self._run_state(), "streams": self.stream_state, "buffer": self.buffer}

    # --------------------------------------------------------------- program
    def _state_shape(self, key):
        """`(C, *N)` and dtype of the streamed states (checked, nothing compiled)."""
        out = jax.eval_shape(lambda k: self.ic_sampler(k, self.num_streams), key)
        shape = tuple(getattr(out, "shape", ()))
        if len(shape) < 2 or shape[0] != self.num_streams:
            raise ValueError(
                f"ic_sampler: expected ic_sampler(key, {self.num_streams}) to return an array "
                f"({self.num_streams}, C, *N), got {getattr(out, 'shape', type(out).__name__)}"
            )
        one = jax.ShapeDtypeStruct(shape[1:], out.dtype)
        nxt = jax.eval_shape(self.ref_stepper, one)
        if tuple(getattr(nxt, "shape", ())) != shape[1:]:
            raise ValueError(
                f"ref_stepper: expected it to map one state of shape {shape[1:]} to the same "
                f"shape, got {getattr(nxt, 'shape', type(nxt).__name__)}"
            )
        return shape[1:], out.dtype

    def _keys(self, key):
        """The streams' and the buffer's keys of the run's `key`."""
        return tuple(jax.random.fold_in(key, t) for t in (_STREAM_KEY, _BUFFER_KEY))

    def _tick(self, stream_state, buffer, keys):
        """One tick of the pool, its whole windows offered to the buffer."""
        skey, bkey = keys
        stream_state = self.streams.advance(stream_state, skey)
        return stream_state, offer(buffer, stream_state.window,
                                   self.streams.complete(stream_state), bkey,
                                   policy=self.sampling)

    def _feed(self, stream_state, buffer, key):
        """`solver_steps_per_step` ticks (a training step's solver work)."""
        keys = self._keys(key)
        (stream_state, buffer), _ = jax.lax.scan(
            lambda carry, _: (self._tick(*carry, keys), None), (stream_state, buffer), None,
            length=self.solver_steps_per_step)
        return stream_state, buffer

    def _prefill_fn(self, state_shape, dtype):
        """`prefill(key) -> (streams, buffer)`: the pool at its first initial conditions
        and ticks until the buffer is full."""
        streams, M, L = self.streams, self.buffer_size, self.window_length

        def prefill(key):
            keys = self._keys(key)
            s = streams.init(keys[0])
            s = s._replace(window=s.window.astype(dtype))
            b = offer(init_buffer(M, (L, *state_shape), dtype), s.window, streams.complete(s),
                      keys[1], policy=self.sampling)
            return jax.lax.while_loop(lambda c: c[1].count < M,
                                      lambda c: self._tick(*c, keys), (s, b))

        return prefill

    def _chunk_fn(self, model):
        """The (not yet compiled) chunk: feed, draw, update, with the divergence anchor
        (`_guard`) of every trainer."""
        sharding = batch_sharding() if self.data_parallel else None
        bound = self._bound
        update = self.rule.update(make_loss_and_grad(bound, sharding=sharding))
        while_loop = bound.while_loop
        capacity, B, K = self.steps_per_call, self.batch_size, self.solver_in_the_loop
        factor = self.divergence_factor
        ref_step = batched(self.ref_stepper)
        apply = model.apply

        def chunk(params, opt_state, stream_state, buffer, key, step0, num_steps, anchor):
            loss_dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
            losses = jnp.full((capacity,), jnp.nan, loss_dtype)
            batch_key = jax.random.fold_in(key, _BATCH_KEY)
            buffer_key = self._keys(key)[1]

            def keep_going(carry):
                return (carry[0] < num_steps) & jnp.logical_not(carry[-1])

            def body(carry):
                i, params, opt_state, stream_state, buffer, anchor, losses, _ = carry
                step = step0 + i
                stream_state, buffer = self._feed(stream_state, buffer, key)
                batch = draw(buffer, jax.random.fold_in(batch_key, step), B)
                if K:
                    made = solver_in_the_loop_windows(
                        batched(bind(apply, params)), ref_step, batch[:K, 0],
                        horizon=self.solver_in_the_loop_horizon,
                        window_length=self.window_length)
                    buffer = offer(buffer, made, jnp.ones((K,), bool), buffer_key,
                                   policy=self.sampling)
                new_params, new_opt_state, loss, finite, usable = update(params, opt_state, batch)
                anchor = advance(anchor, i, step, loss, usable, factor)
                losses = losses.at[i].set(loss.astype(loss_dtype))
                # a bad step ends the loop: what it leaves in params is never used
                return (i + 1, new_params, new_opt_state, stream_state, buffer, anchor, losses,
                        ~finite)

            carry = (jnp.int32(0), params, opt_state, stream_state, buffer, anchor, losses,
                     jnp.bool_(False))
            i, params, opt_state, stream_state, buffer, anchor, losses, bad = while_loop(
                keep_going, body, carry)
            return (params, opt_state, stream_state, buffer, losses, i - bad.astype(i.dtype),
                    bad, anchor)

        return chunk

    def _program(self, adapter, state_shape, dtype):
        """`(prefill, chunk)`, compiled once per model signature and state layout."""
        self._bound.prepare((self.batch_size, *state_shape))
        signature = (adapter.signature(), state_shape, str(dtype))
        if self._compiled is None or self._compiled[0] != signature:
            self._compiled = (signature, jit(self._prefill_fn(state_shape, dtype)),
                              jit(self._chunk_fn(adapter), jit_fn=self._bound.jit))
        return self._compiled[1], self._compiled[2]

    # ------------------------------------------------------------------ call
    def _train(self, emulator, key, *, resume_from):
        """Train from `emulator`; return `(trained_emulator, history)`.

        Arguments:
            emulator: a brainstate Module, an equinox Module or an `(apply, params)` pair.
            key: int seed or PRNG key (initial conditions, buffer and minibatch draws);
                positional or keyword. Ignored with `resume_from`.
            resume_from: a checkpoint written by a StreamTrainer of the same settings;
                training continues from its parameters, optimizer state, streams and
                buffer up to `num_training_steps` in total.

        Returns:
            `(trained, history)`: `trained` is of the kind of `emulator`.

        Raises:
            TypeError / ValueError: bad emulator, key or sampler (before compiling).
            TrainingDiverged: on a NaN/inf loss or gradient.
        """
        if resume_from is None and key is None:
            raise TypeError("key: expected an int seed or a jax PRNG key, got None")
        new_key = None if resume_from is not None else key_data(key)
        state_shape, dtype = self._state_shape(new_key if new_key is not None
                                               else jnp.zeros((2,), jnp.uint32))
        adapter = adapt(emulator, state_ndim=len(state_shape))
        bound = self.estimator.bind(self.configuration, adapter, state_shape=state_shape,
                                    dtype=dtype, ref_stepper=self.ref_stepper,
                                    residuum_fn=self.residuum_fn, name="ic_sampler")
        self.reset()
        self._adapter, self._bound = adapter, bound
        prefill, chunk = self._program(adapter, state_shape, dtype)

        def init():
            self.opt_state = self.rule.init(adapter.params)
            self.stream_state, self.buffer = prefill(self.key)

        self._begin_run(emulator, adapter, resume_from=resume_from, key=new_key, init=init,
                        resume=lambda path: self._resume(path, adapter.params, prefill))
        return self._run(adapter, chunk, self.num_training_steps)

    def _resume(self, path, params, prefill):
        blob = self._load_run(path, params, kind="StreamTrainer", extra=("streams", "buffer"))
        streams, buffer = jax.tree_util.tree_map(
            lambda x: np.zeros(x.shape, x.dtype), jax.eval_shape(prefill, self.key))
        where = os.fspath(path)
        as_tree = lambda t: jax.tree_util.tree_map(jnp.asarray, t)  # noqa: E731
        self.opt_state = as_tree(restore_tree(blob["opt_state"], self.rule.init(params),
                                              path=where, name="optimizer state"))
        self.stream_state = type(streams)(*as_tree(restore_tree(
            tuple(blob["streams"]), tuple(streams), path=where, name="streams")))
        self.buffer = BufferState(*as_tree(restore_tree(
            tuple(blob["buffer"]), tuple(buffer), path=where, name="buffer")))

    def resume(self, num_training_steps: int | None = None) -> tuple[Any, TrainingHistory]:
        """Continue the last call for `num_training_steps` more steps (default: the
        trainer's `num_training_steps`) with its streams, buffer and optimizer state.

        Returns:
            `(trained, history)`: `history` is a new object holding every step since the
            fresh start.

        Raises:
            RuntimeError: if the trainer has not been called yet.
            ValueError: for a non-positive `num_training_steps`.
        """
        extra = self._continued_history("num_training_steps", num_training_steps,
                                        self.num_training_steps)
        return self._run(self._adapter, self._compiled[2], self.step + extra)

    def _callback_context(self) -> CallbackContext:
        M, L = self.buffer_size, self.window_length
        return self._context(self._adapter.apply, data=self.buffer.windows,
                             sampler=WindowSampler(M, L, L, min(self.batch_size, M), False),
                             residuum_fn=self.residuum_fn)

    def _run(self, adapter, chunk, target_step):
        bar = ProgressBar(
            total=target_step, initial=self.step,
            enabled=self.progress_bar,
            epochs_per_step=self.batch_size / self.buffer_size, desc="stream",
        )

        def launch(limit, anchor):
            n = min(self.steps_per_call, limit)
            args = (self.params, self.opt_state, self.stream_state, self.buffer, self.key,
                    jnp.int32(self.step))

            def call(k):
                *state, losses, done, bad, anchor_out = chunk(
                    *args, jnp.int32(n if k is None else k), anchor)
                return tuple(state), losses, done, bad, anchor_out

            return call

        return self._run_update_chunks(adapter, target_step, launch, bar,
                                       self._callback_context)

    def _install(self, state: tuple) -> None:
        self.params, self.opt_state, self.stream_state, self.buffer = state

    def __repr__(self):
        return (
            f"StreamTrainer({self.configuration!r}, steps={self.num_training_steps}, "
            f"batch_size={self.batch_size}, buffer_size={self.buffer_size}, "
            f"num_streams={self.num_streams}, sampling={self.sampling!r}, "
            f"estimator={self.estimator!r})"
        )
