"""Time-level losses: compare a batch of predicted states with a batch of targets."""

from ._base import BaseLoss, BaseNormalizedLoss
from ._mae import MAELoss
from ._mse import MSELoss
from ._normalized_mae import NormalizedMAELoss
from ._normalized_mse import NormalizedMSELoss
from ._rmse import RMSELoss
from ._trainax import TrainaxLoss, as_loss

__all__ = [
    "BaseLoss",
    "BaseNormalizedLoss",
    "MSELoss",
    "MAELoss",
    "RMSELoss",
    "NormalizedMSELoss",
    "NormalizedMAELoss",
    "TrainaxLoss",
    "as_loss",
]
