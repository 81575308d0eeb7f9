"""Peak memory of gradient estimators against rollout length."""

from __future__ import annotations

from os import PathLike
from typing import Any, Mapping

import numpy as np

from .._checks import check_int, check_real
from ._figure import check_target, finish, new_figure


def plot_memory_vs_rollout(
    table: Mapping[str, Mapping[int, float]],
    path: PathLike | None = None,
    *,
    ax: Any = None,
) -> Any:
    """Log-log plot of memory against rollout length, one line per estimator (in MiB).

    Arguments:
        table: `{estimator_name: {num_rollout_steps: bytes}}`, e.g.
            `{"BPTT": {1: 1.2e6, 10: 9.8e6}, "ETrace": {1: 1.1e6, 10: 1.1e6}}`.
            Rollout lengths must be positive integers and byte counts positive numbers.
        path: PNG file to write. Required when `ax` is None.
        ax: an existing matplotlib Axes to draw into.

    Returns:
        `path` when `ax` is None, otherwise the figure of `ax`.

    Raises:
        ValueError: for an empty table or row, non-positive or non-numeric entries, or
            unusable `path`/`ax` arguments.
    """
    check_target(path, ax)
    if not isinstance(table, Mapping) or not table:
        raise ValueError(
            "table: expected a non-empty dict {estimator_name: {rollout_steps: bytes}}, "
            f"got {table!r:.80}"
        )
    rows = {}
    for name, row in table.items():
        if not isinstance(row, Mapping) or not row:
            raise ValueError(
                f"table[{name!r}]: expected a non-empty dict {{rollout_steps: bytes}}, "
                f"got {row!r:.80}"
            )
        points = []
        for steps, size in row.items():
            check_int(f"table[{name!r}]", steps, meaning="keys: rollout lengths")
            check_real(f"table[{name!r}][{steps}]", size, positive=True)
            points.append((int(steps), float(size)))
        rows[str(name)] = sorted(points)

    fig, ax_used = (ax.figure, ax) if ax is not None else new_figure()
    for name, points in rows.items():
        steps, sizes = zip(*points)
        ax_used.plot(steps, np.asarray(sizes) / 2**20, marker="o", label=name)
    ax_used.set_xscale("log")
    ax_used.set_yscale("log")
    ax_used.set_xlabel("rollout steps")
    ax_used.set_ylabel("memory [MiB]")
    ax_used.grid(True, which="both", alpha=0.3)
    ax_used.legend(frameon=False)
    return finish(fig, path, ax is not None)
