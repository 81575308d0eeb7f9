"""Space-time images of a reference rollout, a predicted rollout and their difference."""

from __future__ import annotations

from os import PathLike
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._checks import check_int
from ._figure import check_target, finish, new_figure


def _as_spacetime(x, name: str, channel: int) -> np.ndarray:
    array = np.asarray(x, dtype=float)
    if array.ndim == 2:
        if channel != 0:
            raise ValueError(
                f"channel: expected 0 for a channel-less {name} of shape (T, N), got {channel}"
            )
        return array
    if array.ndim == 3:
        if not 0 <= channel < array.shape[1]:
            raise ValueError(
                f"channel: expected an int in [0, {array.shape[1]}) for {name} of shape "
                f"{array.shape} (T, C, N), got {channel}"
            )
        return array[:, channel]
    if array.ndim >= 4:
        raise ValueError(
            f"{name}: expected shape (T, C, N) or (T, N) (plot_spacetime draws one spatial "
            f"dimension), got {array.shape}; for 2-D/3-D fields pass a slice, e.g. "
            f"{name}[:, :, :, j] for a line of constant y"
        )
    raise ValueError(
        f"{name}: expected shape (T, C, N) or (T, N), got shape {array.shape}"
    )


def plot_spacetime(
    reference: ArrayLike,
    prediction: ArrayLike,
    path: PathLike | None = None,
    *,
    channel: int = 0,
    ax: Any = None,
) -> Any:
    """Draw reference | prediction | difference as space-time images (1-D space).

    Time runs upwards (row t = time level t), space to the right. Reference and
    prediction share one colour scale; the difference `prediction - reference` uses a
    symmetric diverging scale.

    Arguments:
        reference: one reference trajectory, shape `(T, C, N)` or `(T, N)`. (A
            3-axis array is always read as `(T, C, N)`.)
        prediction: the predicted trajectory, same shape.
        path: PNG file to write. Required when `ax` is None.
        channel: which channel to draw for `(T, C, N)` input.
        ax: None, or a sequence of three Axes to draw the three panels into.

    Returns:
        `path` when `ax` is None, otherwise the figure of the axes.

    Raises:
        ValueError: if the shapes differ, are not `(T, C, N)`/`(T, N)` (2-D/3-D
            spatial fields: pass a 1-D slice), `channel` is out of range, or the
            `path`/`ax` arguments are unusable.
    """
    check_target(path, ax, num_axes=3)
    channel = check_int("channel", channel, minimum=0)
    ref_shape = np.shape(reference)
    pred_shape = np.shape(prediction)
    ref = _as_spacetime(reference, "reference", channel)
    pred = _as_spacetime(prediction, "prediction", channel)
    if ref_shape != pred_shape:
        raise ValueError(
            f"prediction: expected the shape of reference {ref_shape}, got {pred_shape}"
        )
    if ref.size == 0:
        raise ValueError(f"reference: expected a non-empty trajectory, got shape {ref_shape}")
    diff = pred - ref

    if ax is None:
        fig, axes = new_figure(figsize=(11.0, 3.6), ncols=3, sharey=True)
    else:
        axes = list(np.ravel(np.asarray(ax, dtype=object)))
        fig = axes[0].figure
    finite = np.concatenate([ref[np.isfinite(ref)], pred[np.isfinite(pred)]])
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (-1.0, 1.0)
    finite_diff = np.abs(diff[np.isfinite(diff)])
    dmax = finite_diff.max() if finite_diff.size and finite_diff.max() > 0 else 1.0
    T, N = ref.shape
    extent = (-0.5, N - 0.5, -0.5, T - 0.5)
    panels = (
        (ref, "reference", "viridis", vmin, vmax),
        (pred, "prediction", "viridis", vmin, vmax),
        (diff, "prediction - reference", "RdBu_r", -dmax, dmax),
    )
    for axis, (image, title, cmap, lo, hi) in zip(axes, panels):
        im = axis.imshow(
            image, origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi,
            extent=extent, interpolation="nearest",
        )
        axis.set_title(title)
        axis.set_xlabel("space index")
        fig.colorbar(im, ax=axis, shrink=0.85)
    axes[0].set_ylabel("time level")
    return finish(fig, path, ax is not None)
