"""Streaming training over long rollouts: one compiled loop, carries that persist."""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import estimators
from .._checks import (
    as_key,
    check_callable,
    check_flag,
    check_int,
    check_positive_int,
    check_real,
    key_data,
)
from .._compile import jit as compiled
from .._rollout import rollout, tree_add
from ..callback import Callback
from ..configuration import DivertedChainBranchOne, Supervised
from ..emulators import adapt
from ..estimators import ForwardRTRL, OnlineEstimator, TruncatedBPTT
from ..estimators._base import check_estimator, online_spec_for
from ..loss import BaseLoss, MSELoss
from ._base import Trainer, check_callbacks, optax_transform
from ._checkpoint import StoredTree, restore_tree
from ._guard import DEFAULT_DIVERGENCE_FACTOR, advance, check_divergence_factor
from ._history import TrainingHistory
from ._progress import ProgressBar
from ._stagger import (check_stagger, member_where, resolve_phases, restart_mask,
                       stored_index, warm_up)
from ._update_rules import apply_update

__all__ = ["OnlineTrainer"]


class OnlineTrainer(Trainer):
    """Train an emulator online on a stream of long rollouts.

    Each rollout starts from a batch of initial conditions; the emulator then runs freely
    for `rollout_length` steps while the estimator's carry (`CarryOps`: ForwardRTRL's
    sensitivity, ETrace's eligibility traces, TruncatedBPTT's open window) advances one
    step at a time and accumulates gradient contributions. Every `update_every` steps
    (and at the end of a rollout) the accumulated gradient is applied by the optimizer
    and the stream goes on with the new parameters: real online learning. The carry
    persists across updates (`persist_carry=True`, the default for ForwardRTRL and
    ETrace: the gradient keeps the influence of the whole rollout so far) or restarts at
    every update (`persist_carry=False`, the default for TruncatedBPTT, whose window
    always closes at an update); it always restarts at a new rollout.

    Per step the loss is `time_level_loss(u_{t+1}, target_{t+1})` with

    * `target="trajectory"`: the reference trajectory from the same initial condition,
      advanced alongside by `ref_stepper` (one reference step per emulator step) or read
      from `reference_data` (the loss of `Supervised` on the stream);
    * `target="one_step"`: `ref_stepper(u_t)`, the reference applied to the emulator's
      own state (`DivertedChainBranchOne(cut_div_chain=True)` on the stream).

    Reference stepping, the estimator step and the optimizer update of many updates run
    inside one jitted while-loop with no host synchronisation per step; the forward pass
    runs once per step (TruncatedBPTT recomputes its window once in its reverse pass).
    Python is visited only between chunks (progress bar, callbacks, checkpoints, the
    divergence check). Nothing of length `rollout_length` is stored.

    Arguments:
        optimizer: an optax `GradientTransformation`.
        rollout_length: steps per rollout (positive int).
        num_rollouts: rollouts per call (positive int).
        estimator: an online estimator (default `ETrace("d_rtrl")`).
        update_every: steps between parameter updates (default: once per rollout).
        ic_sampler: `ic_sampler(key) -> (B, C, *N)` initial conditions (with
            `ref_stepper`); called between chunks with `fold_in(key, rollout)`.
        ref_stepper: reference stepper on ONE sample `(C, *N)` (jittable).
        reference_data: instead of `ic_sampler`, stored trajectories
            `(samples, time, C, *N)` with at least `rollout_length + 1` levels (e.g. a
            numpy memmap): rollout i takes `batch_size` trajectories in order (wrapping
            around); each chunk reads only its own time levels.
        batch_size: trajectories per rollout with `reference_data` (default: all of
            them, every rollout the same batch).
        target: "trajectory" (default) or "one_step".
        time_level_loss: loss object for the per-step term (default `MSELoss()`).
        persist_carry: keep the carry across updates (default: the estimator's
            `persist_carry`, True for ForwardRTRL and ETrace).
        steps_per_call: rollout steps per compiled chunk (rounded down to whole updates,
            at least one update; default 1000).
        callbacks: `online_emulate.callback.Callback` objects (`every` counts updates).
        progress_bar: show a bar over updates (default True).
        clip_grad_norm: clip the global gradient norm first, when set (default None; a bound
            near healthy updates' norms stops blow-ups, see benchmarks/online_clipping.py).
        checkpoint_path: where every call and `resume()` writes its final state when
            it ends (finished or stopped early), a divergence the last good state, and
            `save_checkpoint()` without a path the current one; `resume_from=` that
            file continues the run, in another process too.
        checkpoint_every: also write a checkpoint to `checkpoint_path` every this many
            updates.
        reanchor_every: re-anchor the stream to the solver every this many steps (with
            `target="trajectory"`): after rollout step t (0-based) with (t + 1) %
            reanchor_every == 0 the emulator's state is replaced by the solver's state
            at t + 1. Gradient and carry: the replaced state carries no gradient, so the
            estimator's carry is reset there (`CarryOps.reset`: no gradient of a later
            step reaches the steps before the anchor, also across updates with
            `persist_carry`); the loss of step t is taken before the anchor.
        teacher_forcing: alpha in (0, 1] (with `target="trajectory"`; ForwardRTRL and
            TruncatedBPTT): generalized teacher forcing. After every step the state
            entering the next one is `(1 - alpha) * pred + alpha * solver`, `pred` the
            emulator's prediction and `solver` the solver's state at the same time.
            Gradient: exactly that of the forced rollout, the gradient path through
            `pred` scaled by `1 - alpha` at every step, none through `solver`
            (`CarryOps.force`: ForwardRTRL's sensitivity and TruncatedBPTT's window
            are scaled; the scaled carry persists across updates with
            `persist_carry`). The loss of a step compares the prediction (before the
            mix) with the solver. alpha = 1 is re-anchoring at every step. With both
            options the mix comes first, then the anchor.
        stagger: staggered starts (with `reanchor_every`; default False: every member's
            rollout starts together, as before). The batch's members then run their
            rollouts on clocks of their own, shifted by a phase o_b in [0,
            rollout_length): at step p of the trainer's rollout r, member b is at step
            (p + o_b) mod T of its trajectory r + (p + o_b) // T (T = rollout_length),
            so one update's batch holds states of T-spread trajectory times instead of
            one. A member's trajectory j starts from member b's initial condition of
            rollout j (`ic_sampler(fold_in(key, j))[b]`, or level 0 of row
            (j * batch_size + b) mod samples of `reference_data`); the first one is
            entered at step o_b (the solver run o_b steps from it, or its stored level
            o_b). A member's trajectory ends on one of its re-anchor steps, where the
            gradient path of the whole batch is cut anyway; the next one starts there
            (state and solver replaced by the new initial condition, the loss of that
            step taken before), so losses and gradients are those of the shifted
            rollouts. The phases allowed are 0 and every o with (T - o) a positive
            multiple of `reanchor_every`. `True` spreads them evenly over the batch
            (member b takes the (b * n // B)-th of the n allowed phases); a sequence
            gives one phase per member. The trainer's rollouts keep their boundaries
            (updates, `num_rollouts`, checkpoints, the re-anchor clock, and the carry
            reset at a rollout's start, where a member mid-trajectory is re-anchored
            to its solver state). The default stays False (the old behaviour):
            staggering needs re-anchoring and changes which states a run visits.
            Measured (benchmarks/RESULTS.md, "Staggered online starts"), it took
            TruncatedBPTT(1) re-anchored every step from test gmean100 0.200 to 0.123
            on Burgers 1-D, level with StreamTrainer: worth passing with re-anchoring.
        divergence_factor: on a divergence the trainer keeps the latest state (with the
            stream's carry and position) whose update's loss and gradient were finite and
            whose loss was at most this factor times the best of the 100 updates before
            it (default 1e3; see `TrainingDiverged`).

    Calling `trainer(emulator, key=...)` returns `(trained_emulator, history)` without
    modifying the emulator passed in; `history.loss[i]` is the loss of the steps of
    update i, evaluated along the stream before that update. The optimizer state
    (`trainer.opt_state`), the update counter, the stream position and the carry are
    kept after the call: `trainer.resume()` continues the stream with the next
    `num_rollouts` rollouts, while calling the trainer again starts fresh (as every
    trainer of this library does).

    Raises:
        TypeError / ValueError: invalid arguments, before anything is compiled.
        TrainingDiverged: a NaN/inf loss, gradient or update; the exception carries an
            emulator with the kept parameters (see `divergence_factor`), their loss, and a
            checkpoint (if configured) from which a resume evaluates that loss again.
    """

    def __init__(
        self,
        *,
        optimizer: optax.GradientTransformation,
        rollout_length: int,
        num_rollouts: int = 1,
        estimator: OnlineEstimator | None = None,
        update_every: int | None = None,
        ic_sampler: Callable | None = None,
        ref_stepper: Callable | None = None,
        reference_data: jax.Array | None = None,
        batch_size: int | None = None,
        target: str = "trajectory",
        time_level_loss: BaseLoss | None = None,
        persist_carry: bool | None = None,
        steps_per_call: int = 1000,
        callbacks: Sequence[Callback] = (),
        progress_bar: bool = True,
        clip_grad_norm: float | None = None,
        checkpoint_path: str | None = None,
        checkpoint_every: int | None = None,
        reanchor_every: int | None = None,
        teacher_forcing: float | None = None,
        stagger: bool | Sequence[int] = False,
        divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
    ):
        transform = optax_transform(optimizer, clip_grad_norm)
        self.divergence_factor = check_divergence_factor(divergence_factor)
        self.rollout_length = check_positive_int("rollout_length", rollout_length)
        self.num_rollouts = check_positive_int("num_rollouts", num_rollouts)
        self.update_every = min(
            check_positive_int("update_every", update_every, allow_none=True) or rollout_length,
            self.rollout_length,
        )
        self.steps_per_call = check_positive_int("steps_per_call", steps_per_call)
        self.checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every,
                                                   allow_none=True)
        if self.checkpoint_every is not None and checkpoint_path is None:
            raise ValueError("checkpoint_every: expected a checkpoint_path with it, got "
                             "checkpoint_path=None")
        if target not in ("trajectory", "one_step"):
            raise ValueError(f"target: expected 'trajectory' or 'one_step', got {target!r}")
        estimator = check_estimator(estimators.ETrace("d_rtrl") if estimator is None
                                    else estimator, online=True)
        if persist_carry is None:
            persist_carry = estimator.persist_carry
        persist_carry = check_flag("persist_carry", persist_carry)
        if reference_data is None:
            check_callable("ic_sampler", ic_sampler, expected="a callable key -> (B, C, *N)")
            check_callable("ref_stepper", ref_stepper,
                           expected="a callable on one sample (C, *N)")
        else:
            if ic_sampler is not None:
                raise ValueError(
                    "ic_sampler: expected None (the initial conditions come from "
                    f"reference_data; pass one of the two), got {ic_sampler!r}"
                )
            shape = getattr(reference_data, "shape", None)
            if shape is None or len(shape) < 3:
                raise ValueError(
                    "reference_data: expected an array (samples, time, C, *N), got "
                    f"{type(reference_data).__name__}{'' if shape is None else tuple(shape)}"
                )
            if shape[1] < self.rollout_length + 1:
                raise ValueError(
                    f"reference_data: expected at least {rollout_length + 1} time levels "
                    f"(rollout_length={rollout_length}), got {shape[1]}"
                )
            if batch_size is None:  # every stored trajectory in each rollout
                batch_size = int(shape[0])
            check_int("batch_size", batch_size, maximum=shape[0],
                      meaning="trajectories of reference_data per rollout")
            if target == "one_step":
                check_callable("ref_stepper", ref_stepper,
                               expected="a callable on one sample (target='one_step' needs it)")
        self.reanchor_every, self.teacher_forcing = self._check_coupling(
            reanchor_every, teacher_forcing, target, estimator)
        self.stagger = check_stagger(stagger, rollout_length=self.rollout_length,
                                     reanchor_every=self.reanchor_every)
        if reference_data is not None:
            resolve_phases(self.stagger, batch_size, self.rollout_length, self.reanchor_every)
        self._phases = None  # member phases, set once the batch size is known
        self.callbacks = check_callbacks(callbacks)
        self.optimizer = optimizer
        self._transform = transform
        self.estimator, self.persist_carry, self.target = estimator, persist_carry, target
        self.ic_sampler, self.ref_stepper = ic_sampler, ref_stepper
        self.reference_data, self.batch_size = reference_data, batch_size
        self.time_level_loss = MSELoss() if time_level_loss is None else time_level_loss
        kw = {"time_level_loss": self.time_level_loss}
        # what one update's steps are, as a configuration (for callbacks and the check)
        self.configuration = (
            Supervised(self.update_every, **kw) if target == "trajectory"
            else DivertedChainBranchOne(self.update_every, cut_div_chain=True, **kw)
        )
        online_spec_for(self.configuration, estimator, ref_stepper=ref_stepper, residuum_fn=None)
        self.progress_bar, self.checkpoint_path = progress_bar, checkpoint_path
        self.updates_per_rollout = math.ceil(self.rollout_length / self.update_every)
        self.updates_per_call = max(1, self.steps_per_call // self.update_every)
        self._compiled = None
        self._warm = None
        self.reset()

    @staticmethod
    def _check_coupling(reanchor_every, teacher_forcing, target, estimator):
        """The checked `reanchor_every` and `teacher_forcing` (see the class docstring)."""
        reanchor_every = check_positive_int("reanchor_every", reanchor_every, allow_none=True)
        teacher_forcing = check_real("teacher_forcing", teacher_forcing, positive=True,
                                     maximum=1.0, allow_none=True)
        for name, value in (("reanchor_every", reanchor_every),
                            ("teacher_forcing", teacher_forcing)):
            if value is not None and target != "trajectory":
                raise ValueError(f"{name}: expected None with target={target!r} (the "
                                 f"solver's state is followed with target='trajectory'), "
                                 f"got {value!r}")
        if teacher_forcing is not None and not isinstance(estimator, (ForwardRTRL,
                                                                      TruncatedBPTT)):
            raise ValueError(
                "teacher_forcing: expected None with this estimator (generalized teacher "
                "forcing scales the carry of ForwardRTRL() and TruncatedBPTT(k) only; "
                f"reanchor_every works with every online estimator), got {teacher_forcing!r} "
                f"with {estimator!r}")
        return reanchor_every, teacher_forcing

    def _coupling(self, ops):
        """`couple(carry, x, t) -> carry` after rollout step t (x: the solver's state at
        t + 1), or None without re-anchoring and teacher forcing."""
        K, alpha = self.reanchor_every, self.teacher_forcing
        if K is None and alpha is None:
            return None

        def couple(carry, x, t):
            if alpha is not None:
                carry = ops.force(carry, alpha, x)
            if K is not None:
                carry = ops.reset(carry, (t + 1) % K == 0, x)
            return carry

        return couple

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget parameters, optimizer state, update counter, stream position and history."""
        super().reset()
        self.rollout = 0
        self.position = 0
        self.carry = None
        self.reference_state = None
        self._last_ics = None
        self._stored_phases = None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds: the trainer state plus stream position and carry."""
        return {**self._run_state(), "rollout": self.rollout, "position": self.position,
                "carry": self.carry, "reference_state": self.reference_state,
                "phases": np.asarray([] if self._phases is None else self._phases, np.int32)}

    def _resume(self, path, params) -> None:
        blob = self._load_run(path, params, kind="OnlineTrainer",
                              extra=("rollout", "position", "carry", "reference_state"))
        as_tree = lambda t: jax.tree_util.tree_map(jnp.asarray, t)  # noqa: E731
        self.opt_state = as_tree(restore_tree(blob["opt_state"], self._transform.init(params),
                                              path=os.fspath(path), name="optimizer state"))
        self.rollout, self.position = int(blob["rollout"]), int(blob["position"])
        # checked against this trainer's phases once the batch size is known (`_start`);
        # checkpoints written before staggering existed are unstaggered
        self._stored_phases = np.asarray(blob.get("phases", []), np.int32).reshape(-1)
        carry = blob["carry"]
        self.carry = carry if isinstance(carry, StoredTree) else as_tree(carry)
        self.reference_state = as_tree(blob["reference_state"])

    # -------------------------------------------------------------- the stream
    def _initial_state(self, rollout: int):
        """The batch's states at step 0 of `rollout` (staggered members mid-trajectory)."""
        phases = self._phases
        if phases is None:
            return self._ics(rollout)
        if self.reference_data is not None:
            rows, levels = self._stored_index(rollout, np.zeros(1, np.int64))
            return np.asarray(self.reference_data[rows[:, 0], levels[:, 0]])
        u0 = self._ics(rollout)
        if rollout == 0:
            if self._warm is None:
                self._warm = warm_up(self.ref_stepper)
            return self._warm(u0, jnp.asarray(phases))
        # the staggered members go on with their trajectory, where the solver is
        return member_where(jnp.asarray(phases == 0), u0, self.reference_state)

    def _ics(self, rollout: int):
        """The initial conditions of `rollout` (drawn or read once: staggered members of
        rollout - 1 start their next trajectory from them too)."""
        if self._last_ics is None or self._last_ics[0] != rollout:
            if self.reference_data is None:
                u0 = jnp.asarray(self.ic_sampler(jax.random.fold_in(as_key(self.key), rollout)))
            else:
                u0 = np.asarray(self.reference_data[self._rows(rollout), 0])
            self._last_ics = (rollout, u0)
        return self._last_ics[1]

    def _stored_index(self, rollout: int, positions: np.ndarray):
        return stored_index(self._phases, rollout, positions,
                            samples=self.reference_data.shape[0],
                            rollout_length=self.rollout_length)

    def _rows(self, rollout: int) -> np.ndarray:
        # trajectories are visited in order, batch_size at a time, wrapping around
        return (rollout * self.batch_size + np.arange(self.batch_size)) % self.reference_data.shape[0]

    def _levels(self, rollout: int, position: int, dtype):
        """Reference levels position+1 .. position+L of this rollout's trajectories,
        zero-padded to the chunk's static length L."""
        L = min(self.updates_per_call * self.update_every, self.rollout_length)
        stop = min(position + L, self.rollout_length)
        if self._phases is None:
            part = np.asarray(self.reference_data[self._rows(rollout), position + 1: stop + 1])
        else:
            # each member's own trajectory and level: the target of step p is level
            # local + 1 of the trajectory the member is at before it
            rows, local = self._stored_index(rollout, np.arange(position, stop))
            part = np.asarray(self.reference_data[rows, local + 1])
        pad = np.zeros((part.shape[0], L - part.shape[1], *part.shape[2:]), part.dtype)
        # a host array: the jitted chunk transfers it with its other arguments (an eager
        # jnp conversion would cost a dispatch of its own per chunk)
        return np.concatenate([part, pad], axis=1).astype(dtype, copy=False)

    def _term(self):
        loss = self.time_level_loss
        if self.target == "trajectory":
            return lambda prev, nxt, x: loss(nxt, jax.lax.stop_gradient(x))
        ref = jax.vmap(self.ref_stepper)
        return lambda prev, nxt, x: loss(nxt, jax.lax.stop_gradient(ref(prev)))

    def _build(self, bound, ops):
        T, U = self.rollout_length, self.update_every
        transform, persist, term = self._transform, self.persist_carry, self._term()
        stored = self.reference_data is not None
        streamed_trajectory = self.target == "trajectory" and not stored
        one_step = self.target == "one_step"
        ref = None if self.ref_stepper is None else jax.vmap(self.ref_stepper)
        couple = self._coupling(ops)
        phases = None if self._phases is None else jnp.asarray(self._phases)
        capacity = self.updates_per_call
        factor = self.divergence_factor
        jit, while_loop, cond, scan = bound.jit, bound.while_loop, bound.cond, bound.scan

        def chunk(params, opt_state, carry, r, u0, new_rollout, position, num_updates, levels,
                  fresh, step0, anchor):
            carry = ops.reset(carry, new_rollout, u0)
            r = jnp.where(new_rollout, u0.astype(r.dtype), r)
            loss_dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
            losses = jnp.full((capacity,), jnp.nan, loss_dtype)
            zeros = (jnp.zeros((), loss_dtype), jax.tree_util.tree_map(jnp.zeros_like, params))

            def segment(length):
                # the steps of one update, through the rollout kernel
                def run(args):
                    params, carry, r, first = args

                    def stream_step(state, i):
                        # one rollout step: the reference (or the stored level i of the
                        # chunk) and the estimator's step
                        carry, r = state
                        if streamed_trajectory:
                            r = ref(r)
                            x = r
                        elif one_step:
                            x = None
                        else:
                            x = jax.lax.dynamic_index_in_dim(levels, i, axis=1, keepdims=False)
                        carry, loss, dg = ops.step(params, carry, x, term)
                        if phases is not None:
                            # a staggered member's trajectory ends on this (re-anchor)
                            # step: its state and solver start the next one
                            restart = restart_mask(phases, position + i, T)
                            x = member_where(restart, fresh, x)
                            if streamed_trajectory:
                                r = member_where(restart, fresh, r)
                        if couple is not None:  # chunks never cross rollouts
                            carry = couple(carry, x, position + i)
                        return (carry, r), (loss.astype(loss_dtype), dg)

                    return rollout(stream_step, (carry, r), length, accumulate=zeros,
                                   time_offset=first, scan=scan)
                return run

            def update_body(state):
                n, params, opt_state, carry, r, pos, i, losses, anchor, _ = state
                if T % U == 0:
                    (carry, r), (total, g) = segment(U)((params, carry, r, i))
                    length = jnp.int32(U)
                else:
                    # the last update of a rollout has the remaining T % U steps
                    full = pos + U <= T
                    (carry, r), (total, g) = cond(full, segment(U), segment(T % U),
                                                 (params, carry, r, i))
                    length = jnp.where(full, U, T % U).astype(jnp.int32)
                if ops.holds(U) or (T % U != 0 and ops.holds(T % U)):
                    carry, dg = ops.flush(params, carry, term)
                    g = tree_add(g, dg)
                new_params, new_opt_state, finite, usable = apply_update(
                    transform, params, opt_state, total, g)
                # the anchor is the state before this update, with the stream where it
                # was: a resume from it evaluates this update's loss again
                anchor = advance(anchor, n, step0 + n, total, usable, factor)
                if not persist:
                    carry = ops.reset(carry, jnp.asarray(True))
                losses = losses.at[n].set(total)
                # a bad update ends the loop: what it leaves in params is never used
                return (n + 1, new_params, new_opt_state, carry, r, pos + length, i + length,
                        losses, anchor, ~finite)

            def keep_going(state):
                n, bad = state[0], state[-1]
                return (n < num_updates) & jnp.logical_not(bad)

            state = (jnp.int32(0), params, opt_state, carry, r, position, jnp.int32(0), losses,
                     anchor, jnp.bool_(False))
            n, params, opt_state, carry, r, pos, _, losses, anchor, bad = while_loop(
                keep_going, update_body, state)
            done = n - bad.astype(n.dtype)
            return params, opt_state, carry, r, pos, losses, done, bad, anchor

        return compiled(chunk, jit_fn=jit)

    # ------------------------------------------------------------------ call
    def _train(self, emulator, key, *, resume_from):
        """Train from `emulator` on `num_rollouts` rollouts of the stream.

        Every call starts fresh (new optimizer state, update 0, the stream's first
        rollout, new history) from the parameters of `emulator`, which is not modified.
        See `resume` to continue the stream.

        Arguments:
            emulator: a brainstate Module, an equinox Module or an `(apply, params)` pair
                (ETrace needs a brainstate module on braintrace ETP ops).
            key: int seed or PRNG key (initial conditions of the rollouts); positional or
                keyword. Ignored with `resume_from` (the stored key is used).
            resume_from: a checkpoint written by an OnlineTrainer; training continues from
                its parameters, optimizer state, stream position and carry up to
                `num_rollouts` rollouts in total, bit-identical to an uninterrupted run.

        Returns:
            `(trained_emulator, history)`, the emulator of the input's kind.

        Raises:
            TrainingDiverged: on a NaN/inf loss or gradient (see the class docstring).
        """
        if resume_from is None and key is None:
            raise TypeError("key: expected an int seed or a PRNG key, got None")
        self.reset()
        adapter = adapt(emulator)
        params = adapter.params
        target_step = self.num_rollouts * self.updates_per_rollout

        def init():
            self.opt_state = self._transform.init(params)

        self._begin_run(emulator, adapter, resume_from=resume_from, init=init,
                        key=None if resume_from is not None else key_data(key),
                        resume=lambda path: self._resume(path, params), target_step=target_step,
                        limit=f"{target_step} (num_rollouts={self.num_rollouts})")
        return self._start(adapter, target_step)

    def resume(self, num_rollouts: int | None = None) -> tuple[Any, TrainingHistory]:
        """Continue the stream of the last call for `num_rollouts` more rollouts (default:
        the trainer's `num_rollouts`), with its parameters, optimizer state, position,
        carry and key.

        Returns:
            `(trained_emulator, history)`: `history` is a new object holding every update
            since the fresh start; the history returned before is not changed.

        Raises:
            RuntimeError: if the trainer has not been called yet.
            ValueError: for a non-positive `num_rollouts`.
        """
        extra = self._continued_history("num_rollouts", num_rollouts, self.num_rollouts)
        return self._start(self._adapter, self.step + extra * self.updates_per_rollout)

    def _start(self, adapter, target_step):
        if self.stagger is not False:
            batch = (self.batch_size if self.reference_data is not None
                     else int(jnp.shape(self._ics(self.rollout))[0]))
            self._phases = resolve_phases(self.stagger, batch, self.rollout_length,
                                          self.reanchor_every)
        if self._stored_phases is not None:
            mine = [] if self._phases is None else self._phases.tolist()
            if self._stored_phases.tolist() != mine:
                raise ValueError(
                    f"resume_from: expected a checkpoint of a run with this trainer's "
                    f"staggered phases {mine} (stagger={self.stagger!r}), got phases "
                    f"{self._stored_phases.tolist()}")
            self._stored_phases = None
        u0 = jnp.asarray(self._initial_state(self.rollout))
        if adapter.state_ndim != u0.ndim - 1:
            # models that do not know their dimension learn it from the stream's states
            adapter = adapt(adapter.model, state_ndim=u0.ndim - 1)
        self._adapter = adapter
        chunk, ops, init, out = self._program(adapter, u0)
        x = None if self.target == "one_step" else u0.astype(out.dtype)
        if self.carry is None:
            self.carry = init(self.params, u0, x)
            self.reference_state = u0.astype(out.dtype)
        elif isinstance(self.carry, StoredTree):
            # a checkpoint stores the carry's leaves; its structure comes from the estimator
            self.carry = restore_tree(self.carry, init(self.params, u0, x))
        return self._run(adapter, adapter.apply, chunk, target_step, out.dtype)

    def _program(self, adapter, u0):
        """`(chunk, ops, init, out)`: the compiled chunk, the estimator's carry operations,
        their carry initialisation and the shape of one batched step's output; checked
        and built once per model signature and state shape (a call of the trainer then
        traces nothing)."""
        signature = (adapter.signature(), tuple(u0.shape), str(u0.dtype))
        if self._compiled is None or self._compiled[0] != signature:
            source = "ic_sampler" if self.reference_data is None else "reference_data"
            given = u0.shape if self.reference_data is None else self.reference_data.shape
            bound = self.estimator.bind(self.configuration, adapter, state_shape=u0.shape[1:],
                                        dtype=u0.dtype, ref_stepper=self.ref_stepper,
                                        name=source, given=tuple(given))
            out = jax.eval_shape(adapter.apply, self.params, u0)
            self.estimator.check(self.params, out.shape, out.dtype)
            bound.prepare(out.shape)
            ops = bound.carry_ops(out.shape, horizon=self.update_every)
            self._compiled = (signature, (self._build(bound, ops), ops, bound.carry_init(ops), out))
        return self._compiled[1]

    def _install(self, state: tuple) -> None:
        self.params, self.opt_state, self.carry, self.reference_state, position, rollout = state
        self.position, self.rollout = int(position), int(rollout)

    def _run(self, adapter, apply, chunk, target_step, dtype):
        T, U = self.rollout_length, self.update_every
        bar = ProgressBar(total=target_step, initial=self.step, enabled=self.progress_bar,
                          epochs_per_step=1.0 / self.updates_per_rollout, desc="online")
        stored = self.reference_data is not None

        def launch(limit, anchor):
            if self.position >= T:
                self.rollout, self.position = self.rollout + 1, 0
            new_rollout, rollout_index, step0 = self.position == 0, self.rollout, self.step
            u0 = (self._initial_state(rollout_index).astype(dtype) if new_rollout
                  else self.reference_state)  # numpy for stored data: no eager op
            n = min(self.updates_per_call, math.ceil((T - self.position) / U), limit)
            levels = self._levels(rollout_index, self.position, dtype) if stored else None
            fresh = (None if self._phases is None
                     else self._ics(rollout_index + 1).astype(dtype))
            args = (self.params, self.opt_state, self.carry, self.reference_state, u0,
                    np.bool_(new_rollout), np.int32(self.position))

            def call(k):
                *state, losses, done, bad, anchor_out = chunk(
                    *args, np.int32(n if k is None else k), levels, fresh, np.int32(step0),
                    anchor)
                return (*state, rollout_index), losses, done, bad, anchor_out

            return call

        return self._run_update_chunks(adapter, target_step, launch, bar,
                                       lambda: self._context(apply, data=self.reference_data,
                                                             sampler=None),
                                       checkpoint_every=self.checkpoint_every)

    def __repr__(self):
        # readable on a half-built trainer too (a constructor error shown by a debugger)
        names = ("rollout_length", "num_rollouts", "update_every", "estimator",
                 "persist_carry", "target", "stagger")
        shown = ", ".join(f"{n}={getattr(self, n, '<unset>')!r}" for n in names)
        return f"OnlineTrainer({shown})"
