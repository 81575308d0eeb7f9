"""Which parameters kfac-jax approximates with Kronecker-factored blocks."""

from __future__ import annotations

import warnings
from typing import Any

import jax

__all__ = ["block_report", "warn_non_kronecker"]


def _param_paths(params: Any) -> list[str]:
    return [
        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    ]


def block_report(estimator, params: Any, kfac_jax=None) -> list[tuple[str, tuple[str, ...]]]:
    """The curvature blocks of a finalised kfac estimator.

    Arguments:
        estimator: a finalised `kfac_jax` block-diagonal curvature estimator.
        params: the parameter PyTree it was finalised with.

    Returns:
        One `(block class name, parameter paths)` per block, paths like
        `"layers/0/weight"`.
    """
    paths = _param_paths(params)
    return [
        (type(block).__name__, tuple(paths[i] for i in indices))
        for block, indices in zip(estimator.blocks, estimator.jaxpr.layer_indices)
    ]


def warn_non_kronecker(estimator, params: Any, kfac_jax) -> list[str]:
    """Warn (RuntimeWarning) naming every parameter whose block is not Kronecker-factored.

    Returns:
        `"path (BlockClass)"` for each parameter that fell back to a diagonal/generic
        block; empty when every parameter has a Kronecker-factored block.
    """
    kronecker = kfac_jax.curvature_blocks.KroneckerFactored
    paths = _param_paths(params)
    fallback = [
        f"{paths[i]} ({type(block).__name__})"
        for block, indices in zip(estimator.blocks, estimator.jaxpr.layer_indices)
        if not isinstance(block, kronecker)
        for i in indices
    ]
    if fallback:
        warnings.warn(
            "K-FAC: these parameters fell back to a non-Kronecker (diagonal/generic) "
            "curvature block and get only a crude preconditioner: " + ", ".join(fallback),
            RuntimeWarning,
            stacklevel=3,
        )
    return fallback
