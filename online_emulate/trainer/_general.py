"""The general trainer: configuration x estimator x data x optimizer."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import os

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._input_checks import check_emulator_data
from .._checks import check_positive_int, key_data
from ..callback import Callback, CallbackContext
from ..data import WindowSampler, check_trajectories, trajectory_shape
from ..emulators import adapt, describe_emulator
from ..estimators import BPTT
from ..estimators._base import online_spec_for
from ._checkpoint import load_checkpoint, restore_tree, save_checkpoint
from ._history import TrainingDiverged, TrainingHistory, _plain
from ._progress import ProgressBar

__all__ = ["GeneralTrainer"]


def _tree_where(pred, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def _all_finite(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


_all_finite_jit = jax.jit(_all_finite)


class GeneralTrainer:
    """Train an emulator on minibatches of trajectory windows under any configuration.

    Each step draws `batch_size` windows of `configuration.num_time_levels` time levels
    (see `online_emulate.data.WindowSampler`: every offset of every trajectory, a fresh
    shuffle per epoch, no ragged batches), evaluates the configuration's loss and its
    gradient with `estimator`, and applies `optimizer`. Gathering, gradient and update of
    up to `steps_per_call` steps run inside one jitted `lax.while_loop`, so Python is
    visited only between chunks (for the progress bar, callbacks and checkpoints).

    Arguments:
        configuration: an `online_emulate.configuration` object (what the loss is).
        data: trajectories `(samples, time, C, *N)` or a PyTree of such arrays.
        optimizer: an optax `GradientTransformation` (or `online_emulate.optim.KFAC`).
        num_training_steps: parameter updates per call.
        batch_size: windows per step.
        ref_stepper: reference stepper on ONE state (diverted/mix chains).
        residuum_fn: `residuum_fn(next, prev)` on batches (Residuum).
        callbacks: `online_emulate.callback.Callback` objects.
        estimator: how the gradient is computed (default exact `BPTT()`).
        sub_stacking: windows at every offset (True, default) or only at offset 0.
        steps_per_call: steps per jitted chunk (default 200).
        progress_bar: show a tqdm bar (console or notebook). Default True.
        clip_grad_norm: if set, clip the global gradient norm to this value first.
        checkpoint_path: where a divergence (and `save_checkpoint()` without a path)
            writes the last good state.
        data_parallel: shard each minibatch over all local devices (`jax.devices()`)
            with a `Mesh` + `NamedSharding` over the batch axis; `batch_size` must be a
            multiple of the device count. Results equal single-device training up to
            float rounding.
        check_finite_data: refuse trajectories holding NaN/inf (default True).
        do_sub_stacking: trainax's name for `sub_stacking` (overrides it when given).
        callback_fn: trainax's callback argument; only None is accepted (a TypeError
            points to `callbacks=`).

    Calling `trainer(emulator, key)` returns `(trained_emulator, history)`. The emulator
    may be a brainstate Module, an equinox Module or an `(apply, params)` pair (see
    `online_emulate.emulators.adapt`); the trained one is of the same kind, and the one
    passed in is not modified. Every call starts fresh from the emulator passed in (new
    optimizer state, step 0, a new history), as trainax does, so several calls with one
    initialisation are independent. Continuing is explicit: `trainer.resume()` trains
    another `num_training_steps` steps from where the last call stopped, and
    `resume_from=` a checkpoint path continues a saved run. `history` behaves as the
    array of pre-update losses (`np.asarray(history)`, `len(history)`, `history[i]`)
    and keeps the callback records (`history.records`, `history["name"]`); histories
    returned earlier are never changed by later calls.

    Raises:
        TypeError / ValueError: for invalid arguments (checked here and at call, before
            anything is compiled).
        TrainingDiverged: when a loss or gradient becomes NaN/inf; the exception carries an
            emulator with the last good parameters (and a checkpoint if configured).
    """

    def __init__(
        self,
        configuration,
        data,
        *,
        optimizer,
        num_training_steps: int,
        batch_size: int,
        ref_stepper: Callable | None = None,
        residuum_fn: Callable | None = None,
        callbacks: Sequence[Callback] = (),
        estimator=None,
        sub_stacking: bool = True,
        steps_per_call: int = 200,
        progress_bar: bool = True,
        clip_grad_norm: float | None = None,
        checkpoint_path: str | None = None,
        data_parallel: bool = False,
        check_finite_data: bool = True,
        callback_fn=None,
        do_sub_stacking: bool | None = None,
    ):
        if callback_fn is not None:
            raise TypeError(
                "callback_fn: trainax callbacks are not supported; pass "
                "callbacks=[...] with online_emulate.callback objects (e.g. "
                "GradNormCallback(every=...), LossCallback(...)) instead"
            )
        if do_sub_stacking is not None:  # trainax's name for sub_stacking
            sub_stacking = bool(do_sub_stacking)
        if not hasattr(configuration, "loss") or not hasattr(configuration, "num_time_levels"):
            raise TypeError(
                "configuration: expected an online_emulate.configuration object, got "
                f"{type(configuration).__name__}"
            )
        self.configuration = configuration
        self.data = check_trajectories(data, name="data", check_finite=check_finite_data)
        samples, levels = trajectory_shape(self.data)
        self.num_training_steps = check_positive_int("num_training_steps", num_training_steps)
        self.steps_per_call = check_positive_int("steps_per_call", steps_per_call)
        self.sampler = WindowSampler(
            samples, levels, configuration.num_time_levels, batch_size, sub_stacking
        )
        self.batch_size = batch_size
        if configuration.needs_ref_stepper and ref_stepper is None:
            raise ValueError(
                f"ref_stepper: {type(configuration).__name__} needs a reference stepper "
                "(a callable on one state (C, *N)); got None"
            )
        if configuration.needs_residuum_fn and residuum_fn is None:
            raise ValueError(
                f"residuum_fn: {type(configuration).__name__} needs residuum_fn(next, prev) "
                "on batches; got None"
            )
        for name, fn in (("ref_stepper", ref_stepper), ("residuum_fn", residuum_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
        self.ref_stepper = ref_stepper
        self.residuum_fn = residuum_fn
        self.callbacks = tuple(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"callbacks: expected online_emulate.callback.Callback objects, got "
                    f"{type(cb).__name__}"
                )
        if estimator is None:
            estimator = BPTT()
        if not hasattr(estimator, "value_and_grad"):
            raise TypeError(
                "estimator: expected an online_emulate.estimators object (BPTT(), "
                f"TruncatedBPTT(k), ForwardRTRL(), ETrace(...)), got {type(estimator).__name__}"
            )
        self.estimator = estimator
        if getattr(estimator, "online", False):
            # an unsupported configuration/estimator pair fails here, not mid-compile
            online_spec_for(configuration, estimator, ref_stepper=ref_stepper, residuum_fn=residuum_fn)
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm: expected a positive float or None, got {clip_grad_norm!r}")
        self.clip_grad_norm = clip_grad_norm
        self.optimizer = optimizer
        self._is_kfac = bool(getattr(optimizer, "is_kfac", False))
        if not self._is_kfac and not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(
                "optimizer: expected an optax.GradientTransformation (e.g. optax.adam(1e-3)) "
                f"or online_emulate.optim.KFAC, got {type(optimizer).__name__}"
            )
        if self._is_kfac and clip_grad_norm is not None:
            raise ValueError("clip_grad_norm: not supported with K-FAC (set it to None)")
        self._transform = (
            optimizer
            if clip_grad_norm is None or self._is_kfac
            else optax.chain(optax.clip_by_global_norm(clip_grad_norm), optimizer)
        )
        self.progress_bar = progress_bar
        self.checkpoint_path = checkpoint_path
        self._compiled = None
        self._kfac_gather = None
        self.data_parallel = bool(data_parallel)
        if self.data_parallel and batch_size % jax.device_count() != 0:
            raise ValueError(
                f"batch_size: data_parallel needs a multiple of the {jax.device_count()} "
                f"devices, got {batch_size}"
            )
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget optimizer state, step counter, data order and history.

        The compiled training program is kept: it does not depend on any of them.
        """
        self.params = None
        self.opt_state = None
        self.step = 0
        self.key = None
        self.history = TrainingHistory()
        self._adapter = None
        self._prev = None  # (params, opt_state, True) one step before self.params, if known
        self._stop_request = None
        self._model_spec = None
        for cb in self.callbacks:
            if hasattr(cb, "reset"):
                cb.reset()

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "opt_state": self.opt_state,
            "step": self.step,
            "key": self.key,
            "loss": np.asarray(self.history.loss),
            "records": {k: [[s, _plain(v)] for s, v in rec] for k, rec in self.history.records.items()},
        }

    def request_stop(self, reason: str) -> None:
        """Ask a running call to stop after its current chunk of steps (safe to call from
        a signal handler): the call returns with a consistent state at the last completed
        step and `history.stopped_early = reason`."""
        self._stop_request = str(reason)

    def save_checkpoint(self, path: str | None = None) -> str:
        """Write parameters, optimizer state, step, key and history atomically."""
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("path: no checkpoint path given and the trainer has no checkpoint_path")
        if self.params is None:
            raise RuntimeError("nothing to save: the trainer has not been called yet")
        return save_checkpoint(path, self.state_dict(), model=self._model_spec)

    # ------------------------------------------------------------ validation
    def _adapt(self, emulator):
        """The model adapter, checked against one state of the data (no compilation)."""
        # dtype, PyTree and channel-axis problems are named here, not by the compiler;
        # integer data is cast to the parameters' dtype (finiteness was checked at init)
        self.data = check_emulator_data(
            emulator, self.data, min_levels=self.configuration.num_time_levels, allow_nonfinite=True,
            configuration=self.configuration,
        )
        leaves = jax.tree_util.tree_leaves(self.data)
        single = len(leaves) == 1
        adapter = adapt(emulator, state_ndim=leaves[0].ndim - 2 if single else None)
        if single:
            shape = leaves[0].shape
            adapter.check_state(shape[2:], leaves[0].dtype, name="data")
            one = jax.ShapeDtypeStruct(shape[2:], leaves[0].dtype)
            if self.ref_stepper is not None:
                out = jax.eval_shape(self.ref_stepper, one)
                if tuple(out.shape) != tuple(shape[2:]):
                    raise ValueError(
                        f"ref_stepper: expected it to map one state of shape {tuple(shape[2:])} "
                        f"to the same shape, got {tuple(out.shape)}"
                    )
        if not getattr(self.estimator, "jittable", True):
            adapter.recurrent_module()  # a model ETrace cannot trace fails here
        return adapter

    # --------------------------------------------------------------- program
    def _loss_and_grad(self, model):
        estimator, config = self.estimator, self.configuration
        ref_stepper, residuum_fn = self.ref_stepper, self.residuum_fn
        sharding = None
        if self.data_parallel:
            mesh = Mesh(np.asarray(jax.devices()), ("batch",))
            sharding = NamedSharding(mesh, PartitionSpec("batch"))

        def loss_and_grad(params, batch):
            if sharding is not None:
                batch = jax.tree_util.tree_map(
                    lambda x: jax.lax.with_sharding_constraint(x, sharding), batch
                )
            return estimator.value_and_grad(
                config, model, params, batch, ref_stepper=ref_stepper, residuum_fn=residuum_fn
            )

        return loss_and_grad

    def _build(self, model):
        sampler, transform = self.sampler, self._transform
        capacity = self.steps_per_call
        loss_and_grad = self._loss_and_grad(model)
        # braintrace estimators advance brainstate States inside their gradient; those
        # writes must happen under brainstate's own transformations.
        if not getattr(self.estimator, "jittable", True):
            jit, while_loop = brainstate.transform.jit, brainstate.transform.while_loop
        else:
            jit, while_loop = jax.jit, jax.lax.while_loop

        def update(params, opt_state, batch, key, step):
            loss, grads = loss_and_grad(params, batch)
            if isinstance(transform, optax.GradientTransformationExtraArgs):
                # extra arguments reach the transforms that take them: the loss for
                # optax.contrib.reduce_on_plateau and friends (value=), the gradient
                # (grad=), the minibatch for the K-FAC preconditioner (batch=)
                updates, new_opt_state = transform.update(
                    grads, opt_state, params, value=loss, grad=grads, batch=batch
                )
            else:
                updates, new_opt_state = transform.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            # the update itself can overflow although loss and gradient are finite
            usable = jnp.isfinite(loss) & _all_finite(grads)
            finite = usable & _all_finite(new_params)
            return new_params, new_opt_state, loss, finite, usable

        def chunk(params, opt_state, data, key, step0, num_steps, first_epoch, table, prev=None):
            """Up to `num_steps` steps. `prev = (params, opt_state, has_prev)` is the state
            one step before `params` (has_prev False: none known). Returns `(params,
            opt_state, losses, good, bad, prev)`: on a non-finite step the kept state is the
            last one whose loss, gradient and parameters are finite: the previous state when
            the loss or gradient is non-finite (then `good` can be -1: one step before
            step0), the current one when only the update overflows."""
            loss_dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
            losses = jnp.full((capacity,), jnp.nan, loss_dtype)
            if prev is None:
                prev = (params, opt_state, jnp.bool_(False))
            prev_params, prev_opt_state, has_prev = prev

            def cond(carry):
                i, *_, bad, _ = carry
                return (i < num_steps) & jnp.logical_not(bad)

            def body(carry):
                i, params, opt_state, prev_params, prev_opt_state, losses, bad, rollback = carry
                step = step0 + i
                ids = sampler.window_ids_from_table(step, first_epoch, table)
                batch = sampler.gather(data, ids)
                step_key = jax.random.fold_in(jax.random.fold_in(key, 0x5EED), step)
                new_params, new_opt_state, loss, finite, usable = update(
                    params, opt_state, batch, step_key, step
                )
                prev_params = _tree_where(finite, params, prev_params)
                prev_opt_state = _tree_where(finite, opt_state, prev_opt_state)
                params = _tree_where(finite, new_params, params)
                opt_state = _tree_where(finite, new_opt_state, opt_state)
                losses = losses.at[i].set(loss.astype(loss_dtype))
                # parameters whose loss or gradient is non-finite cannot continue at any
                # learning rate: fall back one step; a finite gradient whose update
                # overflows can (a smaller rate), so those parameters are kept
                rollback = ~usable & ((i > 0) | has_prev)
                return (i + 1, params, opt_state, prev_params, prev_opt_state, losses, ~finite, rollback)

            carry = (jnp.int32(0), params, opt_state, prev_params, prev_opt_state, losses,
                     jnp.bool_(False), jnp.bool_(False))
            i, params, opt_state, prev_params, prev_opt_state, losses, bad, rollback = while_loop(
                cond, body, carry
            )
            good = i - bad.astype(i.dtype) - rollback.astype(i.dtype)
            params = _tree_where(rollback, prev_params, params)
            opt_state = _tree_where(rollback, prev_opt_state, opt_state)
            return params, opt_state, losses, good, bad, (prev_params, prev_opt_state, ~bad)

        return jit(chunk)

    # ------------------------------------------------------------------ call
    def __call__(self, emulator, key=None, *, resume_from: str | None = None):
        """Train from `emulator`; return `(trained_emulator, history)`.

        Every call starts fresh (new optimizer state, step 0, new history) from the
        parameters of `emulator`, which is not modified. See `resume` to continue.

        Arguments:
            emulator: a brainstate Module, an equinox Module or an `(apply, params)` pair.
            key: int seed or PRNG key for the data order (and stochastic estimators);
                positional or keyword, as in trainax. Ignored with `resume_from`.
            resume_from: path of a checkpoint written by this kind of trainer; training
                continues from its parameters, optimizer state, step and key up to
                `num_training_steps` in total.

        Returns:
            `(trained, history)`: `trained` is of the kind of `emulator`.

        Raises:
            TypeError / ValueError: bad emulator or key (before compiling).
            TrainingDiverged: on a NaN/inf loss or gradient (see class docstring).
        """
        adapter = self._adapt(emulator)
        if resume_from is None and key is None:
            raise TypeError("key: expected an int seed or a jax PRNG key, got None")
        new_key = None if resume_from is not None else key_data(key)
        self.reset()
        self._adapter = adapter
        apply = self._program(adapter)
        try:
            self._model_spec = describe_emulator(emulator)
        except (TypeError, ValueError, AttributeError):  # a user model: weights only
            self._model_spec = None
        if resume_from is not None:
            self._resume(resume_from, adapter.params, apply, adapter.model)
            target_step = self.num_training_steps
            if self.step > target_step:
                raise ValueError(
                    f"resume_from: the checkpoint is at step {self.step}, beyond "
                    f"num_training_steps={target_step}"
                )
        else:
            self.key = new_key
            self.params = adapter.params
            self.opt_state = self._init_optimizer(adapter.params, apply, adapter.model)
            target_step = self.num_training_steps
        return self._run(adapter, apply, target_step)

    def _resume(self, path, params, apply, emulator):
        """Load a checkpoint, checked against this run's parameter and optimizer-state
        layout (the optimizer is initialised first: K-FAC must be built anyway)."""
        blob = load_checkpoint(path, like={"params": params})
        for name in ("opt_state", "step", "key", "loss", "records"):
            if name not in blob:
                raise ValueError(f"resume_from: {os.fspath(path)!r} is not a trainer checkpoint (no {name})")
        self.key = jnp.asarray(blob["key"], jnp.uint32)
        if self.key.shape != (2,):
            raise ValueError(f"resume_from: {os.fspath(path)!r} holds a key of shape {self.key.shape}, expected (2,)")
        template = self._init_optimizer(params, apply, emulator)
        self.opt_state = jax.tree_util.tree_map(jnp.asarray, restore_tree(blob["opt_state"], template, path=os.fspath(path), name="optimizer state"))
        self.params = jax.tree_util.tree_map(jnp.asarray, blob["params"])
        self.step = int(blob["step"])
        records = {k: [(int(s), v) for s, v in rec] for k, rec in blob["records"].items()}
        self.history = TrainingHistory(np.asarray(blob["loss"]), records)
        self._prev = None

    def resume(self, num_training_steps: int | None = None):
        """Continue the last call for `num_training_steps` more steps (default: the
        trainer's `num_training_steps`), with its optimizer state, data order and key.

        Returns:
            `(trained, history)`: `history` is a new object holding every step since the
            fresh start; the history returned before is not changed.

        Raises:
            RuntimeError: if the trainer has not been called yet.
            ValueError: for a non-positive `num_training_steps`.
        """
        if self._adapter is None or self.params is None:
            raise RuntimeError(
                "resume: the trainer has not been called yet; call trainer(emulator, key) first"
            )
        extra = check_positive_int(
            "num_training_steps",
            self.num_training_steps if num_training_steps is None else num_training_steps,
        )
        self.history = self.history.copy()
        apply = self._program(self._adapter)
        return self._run(self._adapter, apply, self.step + extra)

    def _program(self, adapter):
        """Build (or reuse, for a model of the same signature) the compiled program and
        return the `apply` it was built with."""
        if hasattr(self.estimator, "prepare"):
            leaf = jax.tree_util.tree_leaves(self.data)[0]
            self.estimator.prepare(adapter, (self.batch_size, *leaf.shape[2:]))
        signature = adapter.signature()
        if self._compiled is not None and self._compiled[0] == signature:
            return self._compiled[1]
        self._compiled = (signature, adapter.apply, self._build(adapter))
        return adapter.apply

    def _init_optimizer(self, params, apply, emulator):
        if self._is_kfac:
            if not isinstance(self.estimator, BPTT):
                raise ValueError(
                    f"estimator: K-FAC takes its gradient from the full rollout (BPTT), got "
                    f"{self.estimator!r}; for online estimators precondition with "
                    "online_emulate.optim.KFACPreconditioner instead"
                )
            first = self.sampler.gather(self.data, jnp.asarray(self.sampler.window_ids(self.key, 0)))
            self.optimizer.build(
                apply, self.configuration, ref_stepper=self.ref_stepper, residuum_fn=self.residuum_fn
            )
            return self.optimizer.init(params, self.key, first)
        return self._transform.init(params)

    def _callbacks_due(self, step):
        return [cb for cb in self.callbacks if step % cb.every == 0]

    def _next_event(self, step, target):
        nxt = target
        for cb in self.callbacks:
            nxt = min(nxt, (step // cb.every + 1) * cb.every)
        return nxt

    def _run_callbacks(self, apply, step) -> str | None:
        due = self._callbacks_due(step)
        if not due:
            return None
        ctx = CallbackContext(
            step=step, params=self.params, apply=apply, opt_state=self.opt_state,
            loss_history=self.history.loss, configuration=self.configuration, data=self.data,
            ref_stepper=self.ref_stepper, residuum_fn=self.residuum_fn, sampler=self.sampler,
            trainer=self,
        )
        for cb in due:
            value = cb(ctx)
            if value is not None:
                self.history.record(cb.name, step, value)
        return ctx.stop_reason

    def _kfac_chunk(self, params, opt_state, data, key, step0, num_steps, first_epoch, table, prev=None):
        """K-FAC compiles its own step, so its steps run from a host loop (same schedule
        and the same returns as the jitted chunk)."""
        if self._kfac_gather is None:
            sampler = self.sampler
            self._kfac_gather = jax.jit(
                lambda data, step, first, table: sampler.gather(
                    data, sampler.window_ids_from_table(step, first, table)
                )
            )
        prev_params, prev_state, has_prev = prev if prev is not None else (params, opt_state, False)
        losses = np.full((self.steps_per_call,), np.nan, np.float32)
        for i in range(int(num_steps)):
            step = step0 + i
            batch = self._kfac_gather(data, step, first_epoch, table)
            step_key = jax.random.fold_in(jax.random.fold_in(key, 0x5EED), step)
            # kfac donates the state it is given: keep a copy to fall back to
            kept = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), opt_state)
            new_params, new_state, loss = self.optimizer.step(params, opt_state, batch, step_key)
            losses[i] = float(loss)
            if not (np.isfinite(losses[i]) and bool(_all_finite_jit(new_params))):
                # kfac does not show its gradient: a non-finite update may come from one,
                # so fall back one step as for a non-finite loss
                if i > 0 or bool(has_prev):
                    return prev_params, prev_state, losses, i - 1, True, None
                return params, kept, losses, i, True, None
            prev_params, prev_state, has_prev = params, kept, True
            params, opt_state = new_params, new_state
        return params, opt_state, losses, int(num_steps), False, (prev_params, prev_state, has_prev)

    def _run(self, adapter, apply, target_step):
        chunk = self._kfac_chunk if self._is_kfac else self._compiled[2]
        bar = ProgressBar(
            total=target_step, initial=self.step, enabled=self.progress_bar and jax.process_index() == 0,
            epochs_per_step=self.sampler.batch_size / self.sampler.num_windows,
        )
        try:
            stop = self._run_callbacks(apply, self.step) if self.step == 0 else None
            while self.step < target_step and stop is None:
                n = min(self.steps_per_call, self._next_event(self.step, target_step) - self.step)
                first_epoch, table = self.sampler.permutation_table(
                    self.key, self.step, n, self.sampler.max_epochs_per_chunk(self.steps_per_call)
                )
                prev = self._prev
                if prev is None:
                    prev = (self.params, self.opt_state, jnp.bool_(False))
                params, opt_state, losses, good, bad, prev = chunk(
                    self.params, self.opt_state, self.data, self.key,
                    jnp.int32(self.step), jnp.int32(n), jnp.int32(first_epoch), table, prev,
                )
                good, bad = int(good), bool(bad)
                if good >= 0:
                    self.history.extend_loss(np.asarray(losses[:good]))
                else:  # rolled back over the last step of the previous chunk
                    self.history.loss = self.history.loss[:good]
                self.params, self.opt_state = params, opt_state
                self._prev = None if bad else prev
                self.step += good
                bar.advance(max(good, 0), self.history.loss[-1] if good > 0 else None)
                if bad:
                    raise TrainingDiverged.from_trainer(self, adapter)
                stop = self._run_callbacks(apply, self.step)
                if stop is None and self._stop_request is not None:
                    stop, self._stop_request = self._stop_request, None
            if stop is not None:
                self.history.stopped_early = stop
        finally:
            bar.close()
        return adapter.merge(self.params), self.history

    # ------------------------------------------------------- seed parallel
    def train_seeds(self, emulators, keys):
        """Train several seeds in ONE program by `jax.vmap` over parameters and keys.

        Arguments:
            emulators: a list of emulators of identical structure (e.g. built with
                different `key=`), one per seed; or a single emulator, shared by all seeds.
            keys: a list of int seeds / PRNG keys (data order per seed).

        Returns:
            `(trained_emulators, losses)`, `losses` of shape (num_seeds, num_training_steps).
            Callbacks, divergence recovery and the progress bar are not run in this mode;
            the trainer's own state is not changed.

        Raises:
            ValueError: if the numbers of emulators and keys differ, or on a NaN/inf loss.
        """
        keys = [key_data(k) for k in keys]
        if not isinstance(emulators, list):  # a tuple may be one (apply, params) model
            emulators = [emulators] * len(keys)
        if len(emulators) != len(keys):
            raise ValueError(
                f"emulators: expected one emulator per key ({len(keys)}), got {len(emulators)}"
            )
        if self._is_kfac:
            raise ValueError("optimizer: seed-parallel training supports optax optimizers only")
        adapters = [self._adapt(em) for em in emulators]
        apply = adapters[0].apply
        params = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[a.params for a in adapters])
        opt_state = jax.vmap(self._transform.init)(params)
        chunk = self._build(adapters[0])
        vchunk = jax.jit(jax.vmap(chunk, in_axes=(0, 0, None, 0, None, None, None, 0)))
        key_batch = jnp.stack(keys)
        rows = self.sampler.max_epochs_per_chunk(self.steps_per_call)
        step, losses_all = 0, []
        while step < self.num_training_steps:
            n = min(self.steps_per_call, self.num_training_steps - step)
            tables = [self.sampler.permutation_table(k, step, n, rows) for k in keys]
            first_epoch = tables[0][0]
            table = np.stack([t for _, t in tables])
            params, opt_state, losses, done, bad, _ = vchunk(
                params, opt_state, self.data, key_batch, jnp.int32(step), jnp.int32(n),
                jnp.int32(first_epoch), table,
            )
            if bool(jnp.any(bad)):
                raise ValueError(
                    f"training diverged for seed(s) {np.flatnonzero(np.asarray(bad)).tolist()} "
                    f"within steps {step}..{step + n}"
                )
            losses_all.append(np.asarray(losses[:, :n]))
            step += n
        trained = [a.merge(jax.tree_util.tree_map(lambda x: x[i], params))
                   for i, a in enumerate(adapters)]
        return trained, np.concatenate(losses_all, axis=1)

    def __repr__(self):
        return (
            f"{type(self).__name__}({self.configuration!r}, steps={self.num_training_steps}, "
            f"batch_size={self.batch_size}, estimator={self.estimator!r})"
        )
