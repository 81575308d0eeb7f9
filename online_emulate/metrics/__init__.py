"""Evaluation of autoregressive emulators: batched rollouts and per-step error metrics.

Conventions follow apebench/exponax: metrics are computed per sample and rollout step
over channel and space, then averaged over samples, giving one value per step; the
nRMSE curve is summarised by its geometric mean over the first 100 steps.
"""

from ._evaluate import evaluate_rollout, to_json_dict
from ._per_step import correlation, mae, nrmse, rmse
from ._rollout import rollout
from ._summary import mean_nrmse_geometric, steps_until_decorrelation

__all__ = [
    "rollout",
    "nrmse",
    "rmse",
    "mae",
    "correlation",
    "mean_nrmse_geometric",
    "steps_until_decorrelation",
    "evaluate_rollout",
    "to_json_dict",
]
