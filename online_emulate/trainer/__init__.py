"""Trainers: a configuration, an estimator, trajectory data (or a solver streaming it) and an
optimizer."""

from ._checkpoint import load_checkpoint, save_checkpoint
from ._configuration_trainers import (
    DivertedChainBranchOneTrainer,
    DivertedChainTrainer,
    MixChainPostPhysicsTrainer,
    MixChainPrePhysicsTrainer,
    ResiduumTrainer,
    SupervisedTrainer,
    TeacherForcingTrainer,
    TrainerOptions,
)
from ._base import Trainer
from ._curriculum import RolloutCurriculum
from ._general import GeneralTrainer
from ._history import SeedsDiverged, TrainingDiverged, TrainingHistory
from ._online import OnlineTrainer
from ._stream import StreamTrainer

__all__ = [
    "Trainer",
    "GeneralTrainer",
    "SupervisedTrainer",
    "DivertedChainTrainer",
    "DivertedChainBranchOneTrainer",
    "MixChainPostPhysicsTrainer",
    "MixChainPrePhysicsTrainer",
    "ResiduumTrainer",
    "TeacherForcingTrainer",
    "TrainerOptions",
    "OnlineTrainer",
    "StreamTrainer",
    "RolloutCurriculum",
    "TrainingHistory",
    "TrainingDiverged",
    "SeedsDiverged",
    "save_checkpoint",
    "load_checkpoint",
]
