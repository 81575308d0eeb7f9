"""A rollout-length curriculum: stages of growing rollout length, each run by a trainer.

Short rollouts first keep early training stable (a one-step loss cannot blow up through
a long unroll of a poor network); longer ones later teach the long-horizon behaviour.
Each stage is an ordinary trainer of the library built by the user's factory; the
curriculum hands the trained model, and by default the optimizer state, from one stage
to the next.

The optimizer state is handed over through the optimizer itself: every stage's trainer
gets the same optax transformation wrapped so that its `init` returns the state the
previous stage ended with. So every trainer kind (`GeneralTrainer` and the
configuration trainers, `StreamTrainer`, `OnlineTrainer`) continues it the same way,
with clipping or any `optax.chain` the trainer adds around it, and a learning-rate
schedule counts on over the stages instead of restarting.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import optax

from .._checks import check_callable, check_flag, check_int, key_data
from ._base import Trainer
from ._history import TrainingHistory

__all__ = ["RolloutCurriculum"]


class HandedOverState(NamedTuple):
    """The optimizer state inside a curriculum's stage (found again after the stage)."""

    inner: Any


class _Cell:
    """Where the next stage's `init` finds the state to start from (None: fresh)."""

    state: Any = None


def _handed_over(optimizer: optax.GradientTransformation, cell: _Cell):
    """`optimizer`, whose `init` returns `cell.state` when set (its state is wrapped in
    `HandedOverState` so that it can be found inside a trainer's own chain)."""

    def init(params):
        return HandedOverState(optimizer.init(params) if cell.state is None else cell.state)

    if isinstance(optimizer, optax.GradientTransformationExtraArgs):
        def update(updates, state, params=None, **extra):
            updates, inner = optimizer.update(updates, state.inner, params, **extra)
            return updates, HandedOverState(inner)

        return optax.GradientTransformationExtraArgs(init, update)

    def update(updates, state, params=None):
        updates, inner = optimizer.update(updates, state.inner, params)
        return updates, HandedOverState(inner)

    return optax.GradientTransformation(init, update)


def _inner_state(opt_state):
    found = [x for x in jax.tree_util.tree_leaves(
        opt_state, is_leaf=lambda x: isinstance(x, HandedOverState))
        if isinstance(x, HandedOverState)]
    if len(found) != 1:
        raise ValueError(
            "make_trainer: expected a trainer that uses the optimizer it is given, got one "
            f"whose optimizer state holds it {len(found)} times"
        )
    return found[0].inner


def _merge(histories, rollout_steps) -> TrainingHistory:
    """One history of all stages: the losses end to end, every record at its step counted
    from the curriculum's start, and `records["rollout_steps"]` = (first step, R) per stage."""
    merged = TrainingHistory()
    start = 0
    for history, r in zip(histories, rollout_steps):
        merged.record("rollout_steps", start, r)
        for name, rec in history.records.items():
            for step, value in rec:
                merged.record(name, start + step, value)
        merged.extend_loss(np.asarray(history.loss))
        merged.stopped_early = history.stopped_early
        start += len(history.loss)
    return merged


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutCurriculum:
    """Train in stages of growing rollout length, each stage by an existing trainer.

    Stage i builds `make_trainer(rollout_steps=rollout_steps[i], optimizer=...)` and calls
    it on the model the previous stage returned (stage 0: the model given), with the key
    `jax.random.fold_in(key, i)` (fresh windows, streams or initial conditions per
    stage). With `continue_optimizer` the optimizer state goes on from one stage to the
    next, as if one trainer had trained all the steps: adam's moments and step count, a
    schedule's position. That is sound because every stage trains the same parameters
    with the same optimizer; only the loss changes. Without it every stage starts a
    fresh optimizer state (the stages run by hand, one trainer call after the other).

    The factory decides everything else, the trainer kind and each stage's length
    included: e.g. `SupervisedTrainer(data, num_rollout_steps=rollout_steps, ...)`,
    `StreamTrainer(Supervised(rollout_steps), ...)` or `OnlineTrainer(rollout_length=
    rollout_steps, ...)`. A stage stopped early (a callback, `request_stop`) ends the
    curriculum there; a divergence raises the stage's `TrainingDiverged`.

    Arguments:
        rollout_steps: the rollout length of each stage, strictly increasing positive ints.
        make_trainer: `make_trainer(rollout_steps=R, optimizer=opt) -> Trainer`, called
            with keywords; it must pass `optimizer` on to the trainer.
        optimizer: an optax `GradientTransformation` (any optimizer the trainers take
            when `continue_optimizer=False`, K-FAC included).
        continue_optimizer: hand the optimizer state from stage to stage (default True).

    Calling `curriculum(model, key)` returns `(trained, history)`: the model of the kind
    given, and one `TrainingHistory` of all stages (losses end to end, callback records
    at steps counted from the first stage, `history["rollout_steps"]` the first step and
    rollout length of every stage).

    Raises:
        TypeError / ValueError: bad arguments, here; a factory that does not return a
            trainer, at call, when every stage's trainer is built before the first trains.
    """

    rollout_steps: tuple[int, ...]
    make_trainer: Callable[..., Trainer]
    optimizer: Any
    continue_optimizer: bool = True

    def __post_init__(self):
        steps = tuple(self.rollout_steps) if isinstance(self.rollout_steps, (tuple, list)) else None
        if not steps:
            raise TypeError("rollout_steps: expected a non-empty tuple of positive ints, got "
                            f"{self.rollout_steps!r}")
        steps = tuple(check_int("rollout_steps", r) for r in steps)
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"rollout_steps: expected strictly increasing rollout lengths, "
                             f"got {steps}")
        object.__setattr__(self, "rollout_steps", steps)
        check_callable("make_trainer", self.make_trainer,
                       expected="a callable make_trainer(rollout_steps=, optimizer=) -> Trainer")
        check_flag("continue_optimizer", self.continue_optimizer)
        if self.continue_optimizer and not isinstance(self.optimizer, optax.GradientTransformation):
            raise TypeError(
                "optimizer: expected an optax.GradientTransformation to continue its state "
                f"over the stages, got {type(self.optimizer).__name__} (pass "
                "continue_optimizer=False to start every stage afresh)"
            )

    def __call__(self, model: Any, key: int | jax.Array) -> tuple[Any, TrainingHistory]:
        """Run the stages; see the class docstring.

        Arguments:
            model: a brainstate Module, an equinox Module or an `(apply, params)` pair.
            key: int seed or PRNG key; stage i gets `jax.random.fold_in(key, i)`.

        Returns:
            `(trained, history)`.

        Raises:
            TypeError: `make_trainer` returned something that is not a trainer.
            TrainingDiverged: a stage diverged.
        """
        key = key_data(key)
        cell = _Cell()
        optimizer = (_handed_over(self.optimizer, cell) if self.continue_optimizer
                     else self.optimizer)
        trainers = []
        for r in self.rollout_steps:  # every stage's options checked before any trains
            trainer = self.make_trainer(rollout_steps=r, optimizer=optimizer)
            if not isinstance(trainer, Trainer):
                raise TypeError(f"make_trainer: expected an online_emulate trainer, got "
                                f"{type(trainer).__name__} for rollout_steps={r}")
            trainers.append(trainer)
        histories = []
        for i, trainer in enumerate(trainers):
            model, history = trainer(model, key=jax.random.fold_in(key, i))
            histories.append(history)
            if self.continue_optimizer:
                cell.state = _inner_state(trainer.opt_state)
            if history.stopped_early is not None:
                break
        return model, _merge(histories, self.rollout_steps)
