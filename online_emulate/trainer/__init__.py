"""Trainers: a configuration, an estimator, trajectory data (or a solver streaming it) and an
optimizer."""

from ._checkpoint import load_checkpoint, save_checkpoint
from . import _configuration_trainers
from ._configuration_trainers import *  # noqa: F403 (the trainers named in its __all__)
from ._base import Trainer
from ._curriculum import RolloutCurriculum
from ._general import GeneralTrainer
from ._history import SeedsDiverged, TrainingDiverged, TrainingHistory
from ._online import OnlineTrainer
from ._stream import StreamTrainer

__all__ = [
    "Trainer",
    "GeneralTrainer",
    *_configuration_trainers.__all__,
    "OnlineTrainer",
    "StreamTrainer",
    "RolloutCurriculum",
    "TrainingHistory",
    "TrainingDiverged",
    "SeedsDiverged",
    "save_checkpoint",
    "load_checkpoint",
]
