"""One trainer per configuration: the configuration's options and the trainer's, as keywords.

Each class builds its configuration from its own keyword arguments and trains it like
`GeneralTrainer` (see there for `key`, the history, `resume()` and `resume_from=`); the
remaining keywords (`TrainerOptions`) are `GeneralTrainer`'s.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, TypedDict, Unpack

from jaxtyping import Array, Float, PyTree

from ..callback import Callback
from ..configuration import (DivertedChain, DivertedChainBranchOne, MixChainPostPhysics,
                             MixChainPrePhysics, Residuum, Supervised, TeacherForcing)
from ..estimators import Estimator
from ..loss import BaseLoss, MSELoss
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

Weights = Optional[Float[Array, "num_steps"]]


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


class SupervisedTrainer(GeneralTrainer):
    """Supervised rollout training on trajectory windows.

    Builds `configuration.Supervised` from the keywords of the same names (see
    there for their meaning) and trains it like `GeneralTrainer`.
    """

    def __init__(
        self,
        data: PyTree,
        *,
        optimizer: Any,
        num_training_steps: int,
        batch_size: int,
        num_rollout_steps: int = 1,
        time_level_loss: BaseLoss = MSELoss(),
        cut_bptt: bool = False,
        cut_bptt_every: int = 1,
        time_level_weights: Weights = None,
        **options: Unpack[TrainerOptions],
    ):
        super().__init__(
            Supervised(num_rollout_steps, time_level_loss=time_level_loss, cut_bptt=cut_bptt,
                cut_bptt_every=cut_bptt_every, time_level_weights=time_level_weights),
            data, optimizer=optimizer, num_training_steps=num_training_steps,
            batch_size=batch_size, **options,
        )


class DivertedChainTrainer(GeneralTrainer):
    """Diverted-chain training: branches of the reference stepper off the network chain (needs ref_stepper).

    Builds `configuration.DivertedChain` from the keywords of the same names (see
    there for their meaning) and trains it like `GeneralTrainer`.
    """

    def __init__(
        self,
        data: PyTree,
        *,
        optimizer: Any,
        num_training_steps: int,
        batch_size: int,
        num_rollout_steps: int = 1,
        num_branch_steps: int = 1,
        time_level_loss: BaseLoss = MSELoss(),
        cut_bptt: bool = False,
        cut_bptt_every: int = 1,
        cut_div_chain: bool = False,
        time_level_weights: Weights = None,
        branch_level_weights: Weights = None,
        **options: Unpack[TrainerOptions],
    ):
        super().__init__(
            DivertedChain(num_rollout_steps, num_branch_steps, time_level_loss=time_level_loss,
                cut_bptt=cut_bptt, cut_bptt_every=cut_bptt_every, cut_div_chain=cut_div_chain,
                time_level_weights=time_level_weights,
                branch_level_weights=branch_level_weights),
            data, optimizer=optimizer, num_training_steps=num_training_steps,
            batch_size=batch_size, **options,
        )


class DivertedChainBranchOneTrainer(GeneralTrainer):
    """Diverted chain with one-step branches (needs ref_stepper).

    Builds `configuration.DivertedChainBranchOne` from the keywords of the same names (see
    there for their meaning) and trains it like `GeneralTrainer`.
    """

    def __init__(
        self,
        data: PyTree,
        *,
        optimizer: Any,
        num_training_steps: int,
        batch_size: int,
        num_rollout_steps: int = 1,
        time_level_loss: BaseLoss = MSELoss(),
        cut_bptt: bool = False,
        cut_bptt_every: int = 1,
        cut_div_chain: bool = False,
        time_level_weights: Weights = None,
        **options: Unpack[TrainerOptions],
    ):
        super().__init__(
            DivertedChainBranchOne(num_rollout_steps, time_level_loss=time_level_loss,
                cut_bptt=cut_bptt, cut_bptt_every=cut_bptt_every, cut_div_chain=cut_div_chain,
                time_level_weights=time_level_weights),
            data, optimizer=optimizer, num_training_steps=num_training_steps,
            batch_size=batch_size, **options,
        )


class MixChainPostPhysicsTrainer(GeneralTrainer):
    """Network steps followed by reference-stepper steps, all compared to data (needs ref_stepper).

    Builds `configuration.MixChainPostPhysics` from the keywords of the same names (see
    there for their meaning) and trains it like `GeneralTrainer`.
    """

    def __init__(
        self,
        data: PyTree,
        *,
        optimizer: Any,
        num_training_steps: int,
        batch_size: int,
        num_rollout_steps: int = 1,
        num_post_physics_steps: int = 1,
        time_level_loss: BaseLoss = MSELoss(),
        cut_bptt: bool = False,
        cut_bptt_every: int = 1,
        time_level_weights: Weights = None,
        **options: Unpack[TrainerOptions],
    ):
        super().__init__(
            MixChainPostPhysics(num_rollout_steps, num_post_physics_steps,
                time_level_loss=time_level_loss, cut_bptt=cut_bptt,
                cut_bptt_every=cut_bptt_every, time_level_weights=time_level_weights),
            data, optimizer=optimizer, num_training_steps=num_training_steps,
            batch_size=batch_size, **options,
        )


class MixChainPrePhysicsTrainer(GeneralTrainer):
    """Reference-stepper steps followed by network steps, all compared to data (needs ref_stepper).

    Builds `configuration.MixChainPrePhysics` from the keywords of the same names (see
    there for their meaning) and trains it like `GeneralTrainer`.
    """

    def __init__(
        self,
        data: PyTree,
        *,
        optimizer: Any,
        num_training_steps: int,
        batch_size: int,
        num_rollout_steps: int = 1,
        num_pre_physics_steps: int = 1,
        time_level_loss: BaseLoss = MSELoss(),
        cut_bptt: bool = False,
        cut_bptt_every: int = 1,
        time_level_weights: Weights = None,
        **options: Unpack[TrainerOptions],
    ):
        super().__init__(
            MixChainPrePhysics(num_rollout_steps, num_pre_physics_steps,
                time_level_loss=time_level_loss, cut_bptt=cut_bptt,
                cut_bptt_every=cut_bptt_every, time_level_weights=time_level_weights),
            data, optimizer=optimizer, num_training_steps=num_training_steps,
            batch_size=batch_size, **options,
        )


class ResiduumTrainer(GeneralTrainer):
    """Residuum training on a condition residuum_fn(next, prev) (needs residuum_fn).

    Builds `configuration.Residuum` from the keywords of the same names (see
    there for their meaning) and trains it like `GeneralTrainer`.
    """

    def __init__(
        self,
        data: PyTree,
        *,
        optimizer: Any,
        num_training_steps: int,
        batch_size: int,
        num_rollout_steps: int = 1,
        time_level_loss: BaseLoss = MSELoss(),
        cut_bptt: bool = False,
        cut_bptt_every: int = 1,
        cut_prev: bool = False,
        cut_next: bool = False,
        time_level_weights: Weights = None,
        **options: Unpack[TrainerOptions],
    ):
        super().__init__(
            Residuum(num_rollout_steps, time_level_loss=time_level_loss, cut_bptt=cut_bptt,
                cut_bptt_every=cut_bptt_every, cut_prev=cut_prev, cut_next=cut_next,
                time_level_weights=time_level_weights),
            data, optimizer=optimizer, num_training_steps=num_training_steps,
            batch_size=batch_size, **options,
        )


class TeacherForcingTrainer(GeneralTrainer):
    """Teacher forcing: the network chain is reset to the data every reset_every steps.

    Builds `configuration.TeacherForcing` from the keywords of the same names (see
    there for their meaning) and trains it like `GeneralTrainer`.
    """

    def __init__(
        self,
        data: PyTree,
        *,
        optimizer: Any,
        num_training_steps: int,
        batch_size: int,
        num_rollout_steps: int = 1,
        reset_every: int = 1,
        time_level_loss: BaseLoss = MSELoss(),
        cut_bptt: bool = False,
        cut_bptt_every: int = 1,
        time_level_weights: Weights = None,
        **options: Unpack[TrainerOptions],
    ):
        super().__init__(
            TeacherForcing(num_rollout_steps, reset_every, time_level_loss=time_level_loss,
                cut_bptt=cut_bptt, cut_bptt_every=cut_bptt_every,
                time_level_weights=time_level_weights),
            data, optimizer=optimizer, num_training_steps=num_training_steps,
            batch_size=batch_size, **options,
        )
