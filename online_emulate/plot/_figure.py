"""Figure plumbing shared by the plotting functions: Agg-only figures, saving, checks.

Figures are built with `matplotlib.figure.Figure` on an Agg canvas, never through
`pyplot`, so nothing here changes the global backend, opens a window or leaks figures.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120


def new_figure(figsize=(6.0, 4.0), ncols: int = 1, **subplot_kw):
    """A fresh Agg figure and its axes (one axes, or an array of `ncols`)."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, **subplot_kw)
    return fig, axes


def check_target(path, ax, *, num_axes: int = 1):
    """Check the `path`/`ax` pair: `ax=None` needs a path; `ax` must be axes.

    With `num_axes > 1`, `ax` must be a sequence of that many axes.
    """
    if ax is None:
        if path is None:
            raise ValueError(
                "path: expected a file name for the PNG when ax is None, got None"
            )
    elif num_axes == 1:
        if not hasattr(ax, "figure") or not hasattr(ax, "plot"):
            raise ValueError(
                f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}"
            )
    else:
        axes = list(np.ravel(np.asarray(ax, dtype=object)))
        if len(axes) != num_axes or not all(hasattr(a, "plot") for a in axes):
            raise ValueError(
                f"ax: expected None or a sequence of {num_axes} matplotlib Axes, got "
                f"{type(ax).__name__} with {len(axes)} entries"
            )
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path: expected a str or os.PathLike, got {type(path).__name__}")


def finish(fig: Figure, path, ax_given: bool) -> Any:
    """Save `fig` as PNG to `path` (if any); return the path, or the figure if the
    caller supplied the axes."""
    if path is not None:
        fig.savefig(path, format="png", dpi=DPI)
    return fig if ax_given else path


def as_curve(values, name: str) -> np.ndarray:
    """Convert `values` to a non-empty 1-D float array, or raise `ValueError`."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name}: expected a 1-D numeric array, got {type(values).__name__} ({error})"
        ) from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array, got shape {array.shape}")
    return array


def as_curves(curves, name: str, default_label: str) -> dict[str, np.ndarray]:
    """A mapping label -> 1-D array (a bare array gets `default_label`)."""
    if isinstance(curves, dict):
        if not curves:
            raise ValueError(f"{name}: expected a non-empty dict or an array, got an empty dict")
        return {str(k): as_curve(v, f"{name}[{k!r}]") for k, v in curves.items()}
    return {default_label: as_curve(curves, name)}
