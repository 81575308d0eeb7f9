"""What every trainer shares: the run's state, callbacks, checkpoints and stop requests."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._checks import check_real
from ..callback import Callback, CallbackContext
from ..emulators import describe_emulator
from ._checkpoint import load_checkpoint, save_checkpoint
from ._history import TrainingDiverged, TrainingHistory, _plain

__all__ = ["Trainer", "optax_transform", "check_callbacks"]


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
        for cb in self.callbacks:
            if hasattr(cb, "reset"):
                cb.reset()

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

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

    def _continued_history(self) -> None:
        """Before `resume()`: a history object of its own for the continued run (the one
        returned by the last call is never changed)."""
        if self._adapter is None or self.params is None:
            raise RuntimeError(
                "resume: the trainer has not been called yet; call trainer(emulator, key) first"
            )
        self.history = self.history.copy()

    def _next_event(self, step: int, target: int, *periods: int | None) -> int:
        """The first step after `step` (at most `target`) at which a callback or one of
        `periods` is due."""
        nxt = target
        for every in [cb.every for cb in self.callbacks] + list(periods):
            if every is not None:
                nxt = min(nxt, (step // every + 1) * every)
        return nxt

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
                   resume: Callable[[str], None], init: Callable[[], None]) -> None:
        """The start of a call of an update-loop trainer: the stored model description,
        then either `resume(resume_from)` (which must set the run state; a checkpoint
        beyond `num_training_steps` is refused) or a fresh run from the adapter's
        parameters and `key`, completed by `init()` (the optimizer state and the rest)."""
        try:
            self._model_spec = describe_emulator(emulator)
        except (TypeError, ValueError, AttributeError):  # a user model: weights only
            self._model_spec = None
        if resume_from is not None:
            resume(resume_from)
            if self.step > self.num_training_steps:
                raise ValueError(
                    f"resume_from: expected a checkpoint at step <= num_training_steps="
                    f"{self.num_training_steps}, got step {self.step}"
                )
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
        self._prev = None
        return blob

    def _run_update_chunks(self, adapter, target_step: int, run_chunk: Callable, bar,
                           context: Callable[[], CallbackContext]):
        """The host loop of a trainer whose chunks are loops of parameter updates
        (`GeneralTrainer`, `StreamTrainer`): chunks of at most `steps_per_call` steps up
        to the next callback, the loss history, the divergence error and stop requests.

        Arguments:
            adapter: the model adapter (merges the returned parameters).
            target_step: the step to stop at.
            run_chunk: `run_chunk(n, prev) -> (params, opt_state, losses, good, bad,
                prev)`, `n` steps from `self.step` (the update rules' chunk returns).
            bar: the `ProgressBar`, closed at the end.
            context: builds what the callbacks see.

        Returns:
            `(trained_model, history)`.
        """
        try:
            stop = self._run_callbacks(self.step, context) if self.step == 0 else None
            while self.step < target_step and stop is None:
                n = min(self.steps_per_call, self._next_event(self.step, target_step) - self.step)
                prev = self._prev
                if prev is None:
                    prev = (self.params, self.opt_state, jnp.bool_(False))
                params, opt_state, losses, good, bad, prev = run_chunk(n, prev)
                good, bad = int(good), bool(bad)
                if good >= 0:
                    self.history.extend_loss(np.asarray(losses)[:good])
                else:  # rolled back over the last step of the previous chunk
                    self.history.loss = self.history.loss[:good]
                self.params, self.opt_state = params, opt_state
                self._prev = None if bad else prev
                self.step += good
                bar.advance(max(good, 0), self.history.loss[-1] if good > 0 else None)
                if bad:
                    raise TrainingDiverged.from_trainer(self, adapter)
                stop = self._stop_after_chunk(context)
            if stop is not None:
                self.history.stopped_early = stop
        finally:
            bar.close()
        self._end_of_run()
        return adapter.merge(self.params), self.history
