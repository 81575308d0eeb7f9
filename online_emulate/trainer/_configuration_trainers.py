"""One trainer per configuration: the configuration's options and the trainer's, as keywords.

Each class builds its configuration from its own keyword arguments and trains it like
`GeneralTrainer` (see there for `key`, the history, `resume()` and `resume_from=`); the
remaining keywords (`TrainerOptions`) are `GeneralTrainer`'s. The classes are made from
their configuration's signature, so a trainer takes exactly the options (names, defaults
and annotations) its configuration takes, and `inspect.signature` shows them.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence, TypedDict, Unpack

from jaxtyping import PyTree

from ..callback import Callback
from ..configuration import (DivertedChain, DivertedChainBranchOne, MixChainPostPhysics,
                             MixChainPrePhysics, Residuum, Supervised, TeacherForcing)
from ..estimators import Estimator
from ._general import GeneralTrainer

__all__ = [
    "TrainerOptions",
    "SupervisedTrainer",
    "DivertedChainTrainer",
    "DivertedChainBranchOneTrainer",
    "MixChainPostPhysicsTrainer",
    "MixChainPrePhysicsTrainer",
    "ResiduumTrainer",
    "TeacherForcingTrainer",
]


class TrainerOptions(TypedDict, total=False):
    """The keyword options every configuration trainer passes on to `GeneralTrainer`."""

    ref_stepper: Callable | None
    residuum_fn: Callable | None
    callbacks: Sequence[Callback]
    estimator: Estimator | None
    sub_stacking: bool
    steps_per_call: int
    progress_bar: bool
    clip_grad_norm: float | None
    checkpoint_path: str | None
    data_parallel: bool
    check_finite_data: bool
    divergence_factor: float
    callback_fn: None
    do_sub_stacking: bool | None


def _trainer_of(configuration_class: type, summary: str) -> type[GeneralTrainer]:
    """The `GeneralTrainer` subclass whose keywords are `configuration_class`'s options
    (keyword-only here) beside the trainer's own (annotated as such, so that a static
    analyser or an editor knows a made trainer's methods and what calling it returns)."""
    _KW = inspect.Parameter.KEYWORD_ONLY
    own = [p.replace(kind=_KW) for p in
           inspect.signature(configuration_class).parameters.values()]
    names = frozenset(p.name for p in own)

    def __init__(self, data: PyTree, *, optimizer: Any, num_training_steps: int,
                 batch_size: int, **options: Unpack[TrainerOptions]):
        configuration = configuration_class(
            **{name: options.pop(name) for name in names & options.keys()})
        GeneralTrainer.__init__(self, configuration, data, optimizer=optimizer,
                                num_training_steps=num_training_steps,
                                batch_size=batch_size, **options)

    head = list(inspect.signature(__init__).parameters.values())
    __init__.__signature__ = inspect.Signature(head[:-1] + own + head[-1:])
    name = configuration_class.__name__ + "Trainer"
    __init__.__qualname__ = name + ".__init__"
    doc = (f"{summary}\n\n    Builds `configuration.{configuration_class.__name__}` from the "
           "keywords of the same names (see\n    there for their meaning) and trains it like "
           "`GeneralTrainer`.\n    ")
    return type(name, (GeneralTrainer,), {"__init__": __init__, "__doc__": doc,
                                         "__module__": __name__, "__qualname__": name})


SupervisedTrainer = _trainer_of(
    Supervised, "Supervised rollout training on trajectory windows.")
DivertedChainTrainer = _trainer_of(
    DivertedChain, "Diverted-chain training: branches of the reference stepper off the "
    "network chain (needs ref_stepper).")
DivertedChainBranchOneTrainer = _trainer_of(
    DivertedChainBranchOne, "Diverted chain with one-step branches (needs ref_stepper).")
MixChainPostPhysicsTrainer = _trainer_of(
    MixChainPostPhysics, "Network steps followed by reference-stepper steps, all compared to "
    "data (needs ref_stepper).")
MixChainPrePhysicsTrainer = _trainer_of(
    MixChainPrePhysics, "Reference-stepper steps followed by network steps, all compared to "
    "data (needs ref_stepper).")
ResiduumTrainer = _trainer_of(
    Residuum, "Residuum training on a condition residuum_fn(next, prev) (needs residuum_fn).")
TeacherForcingTrainer = _trainer_of(
    TeacherForcing, "Teacher forcing: the network chain is reset to the data every "
    "reset_every steps.")
