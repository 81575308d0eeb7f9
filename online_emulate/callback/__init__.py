"""Callbacks run by the trainers between jitted chunks of training steps."""

from ._base import Callback, CallbackContext
from ._control import CheckpointCallback, EarlyStopping
from ._loss import LossCallback
from ._norms import GradNormCallback, WeightNormCallback
from ._validation import ValidationRolloutCallback

__all__ = [
    "Callback",
    "CallbackContext",
    "LossCallback",
    "GradNormCallback",
    "WeightNormCallback",
    "ValidationRolloutCallback",
    "CheckpointCallback",
    "EarlyStopping",
]
