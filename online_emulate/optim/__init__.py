"""Curvature-aware optimisation with kfac-jax (optional: `pip install -e ".[kfac]"`).

`KFAC` drives the trainers' K-FAC loop; `KFACPreconditioner` is an optax transformation
for online gradients; `RolloutCurvature` is the curvature model both use. The kfac-jax
compatibility shim and the parameter layouts are internal (`_compat`, `_layout`).
"""

from ._curvature import RolloutCurvature
from ._kfac import DEFAULT_KFAC_OPTIONS, KFAC
from ._preconditioner import KFACPreconditioner

__all__ = [
    "KFAC",
    "KFACPreconditioner",
    "RolloutCurvature",
    "DEFAULT_KFAC_OPTIONS",
]
