"""What every trainer shares: the run's state, callbacks, checkpoints and stop requests."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._checks import check_positive_int, check_real
from ..callback import Callback, CallbackContext
from ..emulators import describe_emulator
from ._checkpoint import load_checkpoint, save_checkpoint
from ._guard import Anchor, AnchorSource, recent_losses, start_anchor
from ._history import TrainingDiverged, TrainingHistory, _plain

__all__ = ["Trainer", "optax_transform", "check_callbacks"]


def check_configuration(configuration: Any) -> None:
    """Refuse anything that is not a configuration (it needs `loss` and
    `num_time_levels`) before a trainer keeps it.

    Raises:
        TypeError: naming `configuration`.
    """
    if not hasattr(configuration, "loss") or not hasattr(configuration, "num_time_levels"):
        raise TypeError(
            "configuration: expected an online_emulate.configuration object, got "
            f"{type(configuration).__name__}"
        )


def check_callbacks(callbacks: Sequence[Callback]) -> tuple[Callback, ...]:
    """The callbacks as a tuple.

    Raises:
        TypeError: an entry is not an `online_emulate.callback.Callback`.
    """
    callbacks = tuple(callbacks)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(
                "callbacks: expected online_emulate.callback.Callback objects, got "
                f"{type(cb).__name__}"
            )
    return callbacks


def optax_transform(optimizer, clip_grad_norm: float | None) -> optax.GradientTransformation:
    """`optimizer`, preceded by global-norm clipping when `clip_grad_norm` is set.

    Raises:
        TypeError: `optimizer` is not an optax `GradientTransformation`.
        ValueError: `clip_grad_norm` is not a positive number or None.
    """
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer: expected an optax.GradientTransformation (e.g. optax.adam(1e-3)), "
            f"got {type(optimizer).__name__}"
        )
    check_clip(clip_grad_norm)
    if clip_grad_norm is None:
        return optimizer
    return optax.chain(optax.clip_by_global_norm(clip_grad_norm), optimizer)


def check_clip(clip_grad_norm: float | None) -> None:
    """Raises ValueError unless `clip_grad_norm` is None or a positive number."""
    check_real("clip_grad_norm", clip_grad_norm, positive=True, allow_none=True)


class Trainer:
    """The conventions of every trainer of this library.

    A call `trainer(model, key)` starts fresh from `model` (not modified) and returns
    `(trained_model, history)`; `resume()` continues the last call; the state after a
    call (`params`, `opt_state`, `step`, `key`, `history`) stays on the trainer, and
    `save_checkpoint()` writes it; with a `checkpoint_path` the trainer writes it there
    itself at the end of every call and `resume()` (finished or stopped early; after a
    divergence, the last good state), so `resume_from=checkpoint_path` continues the run
    in another process. Callbacks run between compiled chunks at multiples of
    their `every`; `request_stop` ends a running call after its current chunk.

    Subclasses set `callbacks`, `checkpoint_path` and `progress_bar` in their
    constructor, call `reset()`, and implement `state_dict()` and the call itself.
    """

    callbacks: tuple[Callback, ...] = ()
    checkpoint_path: str | None = None
    #: the stored description of the model (built-in emulators), or None
    _model_spec: dict | None = None

    def reset(self) -> None:
        """Forget the run: parameters, optimizer state, step counter, key and history.

        The compiled training program is kept: it does not depend on any of them.
        """
        self.params = None
        self.opt_state = None
        self.step = 0
        self.key = None
        self.history = TrainingHistory()
        self._adapter = None
        self._stop_request = None
        self._anchor = None  # the state a divergence falls back to (`_guard.Anchor`)
        self._anchor_source = None  # how to rebuild it (`_guard.AnchorSource`)
        self._divergence = None  # (failed step, kept state's loss) after a divergence
        for cb in self.callbacks:
            if hasattr(cb, "reset"):
                cb.reset()

    def __call__(
        self,
        emulator: Any,
        key: int | jax.Array | None = None,
        *,
        resume_from: str | None = None,
    ) -> tuple[Any, TrainingHistory]:
        """Train from `emulator`; return `(trained_emulator, history)`.

        Every call starts fresh (new optimizer state, step 0, new history) from the
        parameters of `emulator`, which is not modified; `resume()` continues the last
        call. Each trainer's `_train` says what its key draws and what a resume restores.

        Arguments:
            emulator: a brainstate Module, an equinox Module or an `(apply, params)` pair.
            key: int seed or PRNG key (the run's randomness); positional or keyword.
                Ignored with `resume_from`.
            resume_from: path of a checkpoint written by this kind of trainer (with the
                same settings); training continues from it up to the trainer's length.

        Returns:
            `(trained, history)`: `trained` is of the kind of `emulator`.

        Raises:
            TypeError / ValueError: bad emulator, key or data (before compiling).
            TrainingDiverged: on a NaN/inf loss, gradient or update.
        """
        return self._train(emulator, key, resume_from=resume_from)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint of this trainer holds (trainers with more state extend it)."""
        return self._run_state()

    def request_stop(self, reason: str) -> None:
        """Ask a running call to stop after its current chunk of steps (safe to call from
        a signal handler): the call returns with a consistent state at the last completed
        step and `history.stopped_early = reason`."""
        self._stop_request = str(reason)

    def _take_stop_request(self) -> str | None:
        reason, self._stop_request = self._stop_request, None
        return reason

    def save_checkpoint(self, path: str | None = None) -> str:
        """Write the run's state (see `state_dict`) atomically to `path` (default: the
        trainer's `checkpoint_path`).

        Returns:
            The path written.

        Raises:
            ValueError: no path given and no `checkpoint_path`.
            RuntimeError: the trainer has not been called yet.
        """
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("path: expected a checkpoint path (the trainer has no "
                             "checkpoint_path), got None")
        if self.params is None:
            raise RuntimeError("save_checkpoint: the trainer has not been called yet")
        return save_checkpoint(path, self.state_dict(), model=self._model_spec)

    def _end_of_run(self) -> None:
        """After a call or `resume()` that finished or stopped early: the run's state
        goes to `checkpoint_path`, when the trainer has one."""
        if self.checkpoint_path is not None:
            self.save_checkpoint()

    def _continued_history(self, name: str, count: int | None, default: int) -> int:
        """Before `resume()`: a history object of its own for the continued run (the one
        returned by the last call is never changed); returns the checked `count` of
        `resume()`'s argument `name` (`default` when None)."""
        if self._adapter is None or self.params is None:
            raise RuntimeError(
                "resume: the trainer has not been called yet; call trainer(emulator, key) first"
            )
        self.history = self.history.copy()
        return check_positive_int(name, default if count is None else count)

    def _chunk_anchor(self) -> Anchor:
        """The anchor the next chunk (from step `self.step`) begins with: the last chunk's,
        or the current state when none is known; its recent losses read from the history."""
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(self.params))
        if self._anchor is None:
            return start_anchor(self.step, self.history.loss, dtype)
        return self._anchor._replace(recent=recent_losses(self.history.loss, dtype))

    def _record_chunk(self, losses, done: int, bad: bool, anchor: Anchor,
                      source: AnchorSource) -> Any:
        """Book a chunk that started at step `source.step0` and applied `done` updates:
        their losses go into the history. After a divergence (`bad`) the run falls back to
        `anchor`: history and step are cut back to it, `_divergence` says what happened,
        and its state (kept by the rule, or rebuilt by the chunk it lies in) is returned
        for the caller to install; otherwise returns None and keeps `anchor`.
        """
        self.history.extend_loss(np.asarray(losses)[:done])  # host slice: no eager op
        kept = int(anchor.step)
        if kept >= source.step0:  # the anchor lies in this chunk
            self._anchor_source = source
        if not bad:
            self.step += done
            self._anchor = anchor
            return None
        loss = float(anchor.loss)
        self._divergence = (self.step + done, loss if np.isfinite(loss) else None)
        origin = self._anchor_source
        state = anchor.state if anchor.state is not None else origin.replay(kept - origin.step0)
        self.history.loss = self.history.loss[:kept]
        self.step, self._anchor, self._anchor_source = kept, None, None
        return state

    def _next_event(self, step: int, target: int, *periods: int | None) -> int:
        """The first step after `step` (at most `target`) at which a callback or one of
        `periods` is due."""
        nxt = target
        for every in [cb.every for cb in self.callbacks] + list(periods):
            if every is not None:
                nxt = min(nxt, (step // every + 1) * every)
        return nxt

    def _context(self, apply, *, data, sampler, residuum_fn=None) -> CallbackContext:
        """What the callbacks see now (each trainer names its data and sampler)."""
        return CallbackContext(
            step=self.step, params=self.params, apply=apply, opt_state=self.opt_state,
            loss_history=self.history.loss, configuration=self.configuration, data=data,
            ref_stepper=self.ref_stepper, residuum_fn=residuum_fn, sampler=sampler, trainer=self)

    def _run_callbacks(self, step: int, context: Callable[[], CallbackContext]) -> str | None:
        """Run the callbacks due at `step`, recording their values; the stop reason a
        callback asked for, if any. `context()` builds what they see (only when one is due)."""
        due = [cb for cb in self.callbacks if step % cb.every == 0]
        if not due:
            return None
        ctx = context()
        for cb in due:
            value = cb(ctx)
            if value is not None:
                self.history.record(cb.name, step, value)
        return ctx.stop_reason

    def _stop_after_chunk(self, context: Callable[[], CallbackContext]) -> str | None:
        """Between chunks: the callbacks due at the current step, then a pending
        `request_stop`; the reason to stop, if any."""
        stop = self._run_callbacks(self.step, context)
        return stop if stop is not None else self._take_stop_request()

    def _begin_run(self, emulator, adapter, *, resume_from: str | None, key,
                   resume: Callable[[str], None], init: Callable[[], None],
                   target_step: int | None = None, limit: str | None = None) -> None:
        """The start of a call of an update-loop trainer: the stored model description,
        then either `resume(resume_from)` (which must set the run state; a checkpoint
        beyond `target_step`, default `num_training_steps`, is refused, the message
        naming `limit`) or a fresh run from the adapter's parameters and `key`,
        completed by `init()` (the optimizer state and the rest)."""
        try:
            self._model_spec = describe_emulator(emulator)
        except (TypeError, ValueError, AttributeError):  # a user model: weights only
            self._model_spec = None
        if resume_from is not None:
            resume(resume_from)
            target = self.num_training_steps if target_step is None else target_step
            if self.step > target:
                raise ValueError(f"resume_from: expected a checkpoint at step <= "
                                 f"{limit or f'num_training_steps={target}'}, got step {self.step}")
        else:
            self.key = key
            self.params = adapter.params
            init()

    def _run_state(self) -> dict[str, Any]:
        """The entries every update-loop trainer's checkpoint holds (what `_load_run`
        reads back)."""
        return {
            "params": self.params,
            "opt_state": self.opt_state,
            "step": self.step,
            "key": self.key,
            "loss": np.asarray(self.history.loss),
            "records": {k: [[s, _plain(v)] for s, v in rec]
                        for k, rec in self.history.records.items()},
        }

    def _load_run(self, path, params, *, kind: str, extra: Sequence[str] = ()) -> dict:
        """Read a checkpoint of this kind of trainer (`load_checkpoint`, parameters
        checked against `params`) and take its parameters, key, step and history.

        Returns:
            The checkpoint's entries (the caller restores the rest, e.g. the optimizer
            state, against templates of its own).

        Raises:
            ValueError: a checkpoint without the entries `kind` writes (`extra` among
                them), or a key that is not a raw key of shape (2,).
        """
        blob = load_checkpoint(path, like={"params": params})
        for name in ("opt_state", "step", "key", "loss", "records", *extra):
            if name not in blob:
                raise ValueError(f"resume_from: expected a {kind} checkpoint, got "
                                 f"{os.fspath(path)!r} (no {name})")
        self.key = jnp.asarray(blob["key"], jnp.uint32)
        if self.key.shape != (2,):
            raise ValueError(f"resume_from: expected a key of shape (2,), got shape "
                             f"{self.key.shape} in {os.fspath(path)!r}")
        self.params = jax.tree_util.tree_map(jnp.asarray, blob["params"])
        self.step = int(blob["step"])
        records = {k: [(int(s), v) for s, v in rec] for k, rec in blob["records"].items()}
        self.history = TrainingHistory(np.asarray(blob["loss"]), records)
        return blob

    def _install(self, state: tuple) -> None:
        """Take a chunk's state (what `_run_update_chunks`' chunks return): the
        parameters and optimizer state; trainers whose chunks carry more extend it."""
        self.params, self.opt_state = state

    def _run_update_chunks(self, adapter, target_step: int, launch: Callable, bar,
                           context: Callable[[], CallbackContext], *,
                           checkpoint_every: int | None = None):
        """The host loop of every trainer whose chunks are compiled loops of parameter
        updates: chunks up to the next callback (or checkpoint), the loss history, the
        divergence guard (`_record_chunk`), checkpoints, stop requests and the progress
        bar.

        Arguments:
            adapter: the model adapter (merges the returned parameters).
            target_step: the step to stop at.
            launch: `launch(limit, anchor) -> call` prepares the next chunk, at most
                `limit` steps from the current state starting from `anchor`; `call(None)`
                runs it and `call(k)` runs it again for its first k steps only (the
                chunks are deterministic: that rebuilds a state it passed through). Both
                return `(state, losses, done, bad, anchor)`, `state` what `_install` takes.
            bar: the `ProgressBar`, closed at the end.
            context: builds what the callbacks see.
            checkpoint_every: also write a checkpoint every this many steps.

        Returns:
            `(trained_model, history)`.

        Raises:
            TrainingDiverged: after installing the kept state (see `_guard`).
        """
        try:
            stop = self._run_callbacks(self.step, context) if self.step == 0 else None
            while self.step < target_step and stop is None:
                limit = self._next_event(self.step, target_step, checkpoint_every) - self.step
                call = launch(limit, self._chunk_anchor())
                state, losses, done, bad, anchor = call(None)
                source = AnchorSource(self.step, lambda k, call=call: call(k)[0])
                bad = bool(bad)
                kept = self._record_chunk(losses, int(done), bad, anchor, source)
                self._install(state if kept is None else kept)
                bar.advance(int(done), self.history.loss[-1] if len(self.history) else None)
                if bad:
                    raise TrainingDiverged.from_trainer(self, adapter)
                if checkpoint_every is not None and self.step % checkpoint_every == 0:
                    self.save_checkpoint()
                stop = self._stop_after_chunk(context)
            if stop is not None:
                self.history.stopped_early = stop
        finally:
            bar.close()
        self._end_of_run()
        return adapter.merge(self.params), self.history
