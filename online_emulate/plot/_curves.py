"""Line plots of loss histories and of per-step rollout errors."""

from __future__ import annotations

from os import PathLike
from typing import Any, Mapping

import numpy as np

from ._figure import as_curves, check_target, finish, new_figure


def _plot(values, name, path, ax, first_step, *, log, xlabel, ylabel):
    """Draw every curve of `values` (validated as argument `name`) against its step
    index counted from `first_step`, into `ax` or a new figure; return what the public
    functions return."""
    check_target(path, ax)
    curves = as_curves(values, name, "")
    fig, ax_used = (ax.figure, ax) if ax is not None else new_figure()
    for label, y in curves.items():
        ax_used.plot(np.arange(first_step, first_step + y.size), y, label=label or None,
                     linewidth=1.2)
    if log:
        # non-positive values are masked by matplotlib's log scale
        ax_used.set_yscale("log")
    ax_used.set_xlabel(xlabel)
    ax_used.set_ylabel(ylabel)
    ax_used.grid(True, which="major", alpha=0.3)
    if any(curves):
        ax_used.legend(frameon=False)
    return finish(fig, path, ax is not None)


def plot_loss_history(
    histories: Mapping[str, np.ndarray] | np.ndarray,
    path: PathLike | None = None,
    *,
    log: bool = True,
    ax: Any = None,
) -> Any:
    """Plot one or more training-loss histories against the update step.

    Arguments:
        histories: a 1-D array of losses (one per update) or a dict label -> 1-D array
            (curves may have different lengths).
        path: PNG file to write. Required when `ax` is None.
        log: logarithmic loss axis (non-positive values are not drawn).
        ax: an existing matplotlib Axes to draw into (e.g. in a notebook).

    Returns:
        `path` when `ax` is None, otherwise the figure of `ax` (also saved to
        `path` if one was given).

    Raises:
        ValueError: for an empty dict, a curve that is not a non-empty 1-D numeric array,
            a missing `path` with `ax=None`, or an `ax` that is not an Axes.
    """
    return _plot(histories, "histories", path, ax, 0, log=log, xlabel="update step",
                 ylabel="loss")


def plot_error_vs_step(
    errors: Mapping[str, np.ndarray] | np.ndarray,
    path: PathLike | None = None,
    *,
    ylabel: str = "nRMSE",
    log: bool = True,
    ax: Any = None,
) -> Any:
    """Plot per-step rollout errors, step 1 being the first predicted state.

    Arguments:
        errors: a dict label -> per-step array `(T,)` (e.g. `evaluate_rollout(...)
            ["nrmse"]` for several emulators), or one bare array.
        path: PNG file to write. Required when `ax` is None.
        ylabel: label of the error axis.
        log: logarithmic error axis (non-positive values are not drawn).
        ax: an existing matplotlib Axes to draw into.

    Returns:
        `path` when `ax` is None, otherwise the figure of `ax`.

    Raises:
        ValueError: for an empty dict, a curve that is not a non-empty 1-D numeric array,
            a missing `path` with `ax=None`, or an `ax` that is not an Axes.
    """
    return _plot(errors, "errors", path, ax, 1, log=log, xlabel="rollout step",
                 ylabel=ylabel)
