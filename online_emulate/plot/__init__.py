"""Figures for training and evaluation, drawn with matplotlib's Agg canvas.

Every function writes a PNG to `path` and returns `path`; passing `ax=` (an
existing matplotlib Axes, e.g. in a notebook) draws into it and returns its figure
instead. Nothing here calls `pyplot` or changes the global matplotlib backend.
"""

from ._curves import plot_error_vs_step, plot_loss_history
from ._memory import plot_memory_vs_rollout
from ._schematic import plot_configuration_schematic
from ._spacetime import plot_spacetime

__all__ = [
    "plot_loss_history",
    "plot_error_vs_step",
    "plot_spacetime",
    "plot_memory_vs_rollout",
    "plot_configuration_schematic",
]
