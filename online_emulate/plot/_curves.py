"""Line plots of loss histories and of per-step rollout errors."""

from __future__ import annotations

from os import PathLike
from typing import Any, Mapping

import numpy as np

from ._figure import as_curves, check_target, finish, new_figure


def _draw_curves(ax, curves, x_of, *, log, xlabel, ylabel):
    for label, y in curves.items():
        ax.plot(x_of(y), y, label=label or None, linewidth=1.2)
    if log:
        # non-positive values are masked by matplotlib's log scale
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    if any(curves):
        ax.legend(frameon=False)


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
        path: PNG file to write. Required when ``ax`` is None.
        log: logarithmic loss axis (non-positive values are not drawn).
        ax: an existing matplotlib Axes to draw into (e.g. in a notebook).

    Returns:
        ``path`` when ``ax`` is None, otherwise the figure of ``ax`` (also saved to
        ``path`` if one was given).

    Raises:
        ValueError: for an empty dict, a curve that is not a non-empty 1-D numeric array,
            a missing ``path`` with ``ax=None``, or an ``ax`` that is not an Axes.
    """
    check_target(path, ax)
    curves = as_curves(histories, "histories", "")
    fig, ax_used = (ax.figure, ax) if ax is not None else new_figure()
    _draw_curves(
        ax_used, curves, lambda y: np.arange(y.size), log=log, xlabel="update step",
        ylabel="loss",
    )
    return finish(fig, path, ax is not None)


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
        errors: a dict label -> per-step array ``(T,)`` (e.g. ``evaluate_rollout(...)
            ["nrmse"]`` for several emulators), or one bare array.
        path: PNG file to write. Required when ``ax`` is None.
        ylabel: label of the error axis.
        log: logarithmic error axis (non-positive values are not drawn).
        ax: an existing matplotlib Axes to draw into.

    Returns:
        ``path`` when ``ax`` is None, otherwise the figure of ``ax``.

    Raises:
        ValueError: for an empty dict, a curve that is not a non-empty 1-D numeric array,
            a missing ``path`` with ``ax=None``, or an ``ax`` that is not an Axes.
    """
    check_target(path, ax)
    curves = as_curves(errors, "errors", "")
    fig, ax_used = (ax.figure, ax) if ax is not None else new_figure()
    _draw_curves(
        ax_used, curves, lambda y: np.arange(1, y.size + 1), log=log,
        xlabel="rollout step", ylabel=ylabel,
    )
    return finish(fig, path, ax is not None)
