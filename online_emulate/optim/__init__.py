"""Curvature-aware optimisation with kfac-jax (optional: ``pip install -e ".[kfac]"``)."""

from ._compat import (
    INSTALL_HINT,
    apply_kfac_shim,
    bind_params_convention,
    eval_eqn_works,
    import_kfac,
    kfac_needs_shim,
)
from ._curvature import RolloutCurvature, fold_window, folded_batch_size, make_curvature_loss
from ._kfac import DEFAULT_KFAC_OPTIONS, KFAC, auto_curvature_scale
from ._layout import lift_params, lifted_leaf_mask, lower_params
from ._preconditioner import KFACPreconditioner

__all__ = [
    "KFAC",
    "KFACPreconditioner",
    "DEFAULT_KFAC_OPTIONS",
    "auto_curvature_scale",
    "make_curvature_loss",
    "RolloutCurvature",
    "fold_window",
    "folded_batch_size",
    "lift_params",
    "lower_params",
    "lifted_leaf_mask",
    "import_kfac",
    "apply_kfac_shim",
    "kfac_needs_shim",
    "eval_eqn_works",
    "bind_params_convention",
    "INSTALL_HINT",
]
