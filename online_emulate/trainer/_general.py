"""The general trainer: configuration x estimator x data x optimizer."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

from .._checks import check_callable, check_positive_int, check_required, key_data
from .._compile import jit
from .._input_checks import check_emulator_data, check_time_levels
from ..callback import Callback
from ..configuration import BaseConfiguration
from ..data import WindowSampler, check_trajectories, trajectory_shape
from ..emulators import adapt
from ..estimators import BPTT, Estimator
from ..estimators._base import check_estimator
from ._base import Trainer, check_callbacks, check_clip, check_configuration, optax_transform
from ._checkpoint import restore_tree
from ._guard import DEFAULT_DIVERGENCE_FACTOR, check_divergence_factor
from ._history import TrainingHistory
from ._program import batch_sharding, make_loss_and_grad
from ._progress import ProgressBar
from ._seeds import train_seeds
from ._update_rules import KFACRule, OptaxRule

__all__ = ["GeneralTrainer"]


class GeneralTrainer(Trainer):
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
        checkpoint_path: where every call and `resume()` writes its final state when
            it ends (finished or stopped early), a divergence the last good state, and
            `save_checkpoint()` without a path the current one; `resume_from=` that
            file continues the run, in another process too.
        data_parallel: shard each minibatch over all local devices (`jax.devices()`)
            with a `Mesh` + `NamedSharding` over the batch axis; `batch_size` must be a
            multiple of the device count. Results equal single-device training up to
            float rounding.
        check_finite_data: refuse trajectories holding NaN/inf (default True).
        divergence_factor: on a divergence the trainer keeps the latest state whose loss
            and gradient were finite and whose loss was at most this factor times the best
            loss of the 100 steps before it (default 1e3; see `TrainingDiverged`).
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
        TrainingDiverged: when a loss, gradient or update becomes NaN/inf; the exception
            carries an emulator with the kept parameters (the last finite and sane state,
            see `divergence_factor`) and their loss (and a checkpoint if configured).
    """

    def __init__(
        self,
        configuration: BaseConfiguration,
        data: PyTree,
        *,
        optimizer: Any,
        num_training_steps: int,
        batch_size: int,
        ref_stepper: Callable | None = None,
        residuum_fn: Callable | None = None,
        callbacks: Sequence[Callback] = (),
        estimator: Estimator | None = None,
        sub_stacking: bool = True,
        steps_per_call: int = 200,
        progress_bar: bool = True,
        clip_grad_norm: float | None = None,
        checkpoint_path: str | None = None,
        data_parallel: bool = False,
        check_finite_data: bool = True,
        divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
        callback_fn: None = None,
        do_sub_stacking: bool | None = None,
    ):
        if callback_fn is not None:
            raise TypeError(
                "callback_fn: expected None (trainax callbacks are not supported; pass "
                "callbacks=[...] with online_emulate.callback objects, e.g. "
                f"GradNormCallback(every=...), LossCallback(...)), got {callback_fn!r}"
            )
        if do_sub_stacking is not None:  # trainax's name for sub_stacking
            sub_stacking = bool(do_sub_stacking)
        check_configuration(configuration)
        self.configuration = configuration
        self.data = check_trajectories(data, name="data", check_finite=check_finite_data)
        samples, levels = trajectory_shape(self.data)
        for leaf in jax.tree_util.tree_leaves(self.data):  # a layout mistake named first
            check_time_levels(leaf.shape, configuration.num_time_levels, name="data",
                              why=" (the configuration's window)")
        self.num_training_steps = check_positive_int("num_training_steps", num_training_steps)
        self.steps_per_call = check_positive_int("steps_per_call", steps_per_call)
        self.sampler = WindowSampler(
            samples, levels, configuration.num_time_levels, batch_size, sub_stacking
        )
        self.batch_size = batch_size
        owner = type(configuration).__name__
        if configuration.needs_ref_stepper:
            check_required("ref_stepper", ref_stepper,
                           f"a reference stepper on one state (C, *N) ({owner} needs it)")
        if configuration.needs_residuum_fn:
            check_required("residuum_fn", residuum_fn,
                           f"residuum_fn(next, prev) on batches ({owner} needs it)")
        check_callable("ref_stepper", ref_stepper, allow_none=True)
        check_callable("residuum_fn", residuum_fn, allow_none=True)
        self.ref_stepper = ref_stepper
        self.residuum_fn = residuum_fn
        self.callbacks = check_callbacks(callbacks)
        self.estimator = estimator = check_estimator(
            BPTT() if estimator is None else estimator, configuration,
            ref_stepper=ref_stepper, residuum_fn=residuum_fn)
        self.clip_grad_norm = clip_grad_norm
        self.divergence_factor = check_divergence_factor(divergence_factor)
        self.optimizer = optimizer
        if getattr(optimizer, "is_kfac", False):
            check_clip(clip_grad_norm)
            if clip_grad_norm is not None:
                raise ValueError("clip_grad_norm: not supported with K-FAC, expected None, "
                                 f"got {clip_grad_norm!r}")
            if not isinstance(estimator, BPTT):
                raise ValueError(
                    f"estimator: expected BPTT (K-FAC takes its gradient from the full "
                    f"rollout), got {estimator!r}; for online estimators precondition with "
                    "online_emulate.optim.KFACPreconditioner instead"
                )
            self.rule = KFACRule(optimizer, divergence_factor=self.divergence_factor)
        else:
            self.rule = OptaxRule(optax_transform(optimizer, clip_grad_norm),
                                  divergence_factor=self.divergence_factor)
        self.progress_bar = progress_bar
        self.checkpoint_path = checkpoint_path
        self._compiled = None
        self.data_parallel = bool(data_parallel)
        if self.data_parallel and batch_size % jax.device_count() != 0:
            raise ValueError(
                f"batch_size: expected a multiple of the {jax.device_count()} devices "
                f"(data_parallel), got {batch_size}"
            )
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget optimizer state, step counter, data order and history.

        The compiled training program is kept: it does not depend on any of them.
        """
        super().reset()
        self._model_spec = None

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
        adapter = adapt(emulator, state_ndim=leaves[0].ndim - 2 if len(leaves) == 1 else None)
        self._bind(adapter)
        return adapter

    def _bind(self, adapter):
        """The estimator bound to this trainer's problem for `adapter` (checked once)."""
        leaves = jax.tree_util.tree_leaves(self.data)
        one = leaves[0] if len(leaves) == 1 else None
        return self.estimator.bind(
            self.configuration, adapter, state_shape=None if one is None else one.shape[2:],
            dtype=None if one is None else one.dtype, ref_stepper=self.ref_stepper,
            residuum_fn=self.residuum_fn, given=None if one is None else tuple(one.shape))

    # --------------------------------------------------------------- program
    def _chunk_fn(self, model):
        """The (not yet compiled) chunk of steps for `model` (its adapter)."""
        sharding = batch_sharding() if self.data_parallel else None
        bound = self._bind(model)
        return self.rule.chunk(loss_and_grad=make_loss_and_grad(bound, sharding=sharding),
                               sampler=self.sampler, capacity=self.steps_per_call,
                               while_loop=bound.while_loop)

    def _program(self, adapter):
        """The compiled chunk (reused for a model of the same signature) and the `apply`
        it was built with."""
        bound = self._bind(adapter)
        leaf = jax.tree_util.tree_leaves(self.data)[0]
        bound.prepare((self.batch_size, *leaf.shape[2:]))
        signature = adapter.signature()
        if self._compiled is None or self._compiled[0] != signature:
            chunk = self._chunk_fn(adapter)
            if isinstance(self.rule, OptaxRule):
                chunk = jit(chunk, jit_fn=bound.jit)
            self._compiled = (signature, adapter.apply, chunk)
        return self._compiled[1], self._compiled[2]

    def _init_optimizer(self, params):
        def first_batch():
            return self.sampler.gather(self.data, jnp.asarray(self.sampler.window_ids(self.key, 0)))

        return self.rule.init(params, bound=self._bind(self._adapter), key=self.key,
                              first_batch=first_batch)

    # ------------------------------------------------------------------ call
    def _train(self, emulator, key, *, resume_from):
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
        apply, chunk = self._program(adapter)

        def init():
            self.opt_state = self._init_optimizer(adapter.params)

        self._begin_run(emulator, adapter, resume_from=resume_from, key=new_key, init=init,
                        resume=lambda path: self._resume(path, adapter.params))
        return self._run(adapter, apply, chunk, self.num_training_steps)

    def _resume(self, path, params):
        """Load a checkpoint, checked against this run's parameter and optimizer-state
        layout (the optimizer is initialised first: K-FAC must be built anyway)."""
        blob = self._load_run(path, params, kind="trainer")
        template = self._init_optimizer(params)
        self.opt_state = jax.tree_util.tree_map(jnp.asarray, restore_tree(
            blob["opt_state"], template, path=os.fspath(path), name="optimizer state"))

    def resume(self, num_training_steps: int | None = None) -> tuple[Any, TrainingHistory]:
        """Continue the last call for `num_training_steps` more steps (default: the
        trainer's `num_training_steps`), with its optimizer state, data order and key.

        Returns:
            `(trained, history)`: `history` is a new object holding every step since the
            fresh start; the history returned before is not changed.

        Raises:
            RuntimeError: if the trainer has not been called yet.
            ValueError: for a non-positive `num_training_steps`.
        """
        extra = self._continued_history("num_training_steps", num_training_steps,
                                        self.num_training_steps)
        apply, chunk = self._program(self._adapter)
        return self._run(self._adapter, apply, chunk, self.step + extra)

    def _run(self, adapter, apply, chunk, target_step):
        bar = ProgressBar(
            total=target_step, initial=self.step, enabled=self.progress_bar,
            epochs_per_step=self.sampler.batch_size / self.sampler.num_windows,
        )

        def launch(limit, anchor):
            n = min(self.steps_per_call, limit)
            first_epoch, table = self.sampler.permutation_table(
                self.key, self.step, n, self.sampler.max_epochs_per_chunk(self.steps_per_call)
            )
            args = (self.params, self.opt_state, self.data, self.key, jnp.int32(self.step),
                    jnp.int32(first_epoch), table, anchor)

            def call(k):
                params, opt_state, losses, done, bad, anchor_out = chunk(
                    *args[:5], jnp.int32(n if k is None else k), *args[5:])
                return (params, opt_state), losses, done, bad, anchor_out

            return call

        return self._run_update_chunks(adapter, target_step, launch, bar,
                                       lambda: self._context(apply, data=self.data,
                                                             sampler=self.sampler,
                                                             residuum_fn=self.residuum_fn))

    # ------------------------------------------------------- seed parallel
    def train_seeds(
        self,
        emulators: Sequence[Any],
        keys: Sequence[int | jax.Array],
    ) -> tuple[list, np.ndarray]:
        """Train several seeds in ONE program (see `online_emulate.trainer._seeds`).

        Arguments:
            emulators: a list of emulators of identical structure (one per seed), or a
                single emulator shared by all seeds.
            keys: a list of int seeds / PRNG keys (data order per seed).

        Returns:
            `(trained_emulators, losses)`, `losses` of shape (num_seeds, num_training_steps).
            Callbacks, divergence recovery and the progress bar are not run in this mode;
            the trainer's own state is not changed.

        Raises:
            ValueError: the numbers of emulators and keys differ, a K-FAC optimizer, or a
                NaN/inf loss.
        """
        return train_seeds(self, emulators, keys)

    def __repr__(self):
        return (
            f"{type(self).__name__}({self.configuration!r}, steps={self.num_training_steps}, "
            f"batch_size={self.batch_size}, estimator={self.estimator!r})"
        )
