"""Trajectory validation, trajectory files and the index-based minibatch schedule used by
the trainers."""

from ._files import load_trajectories
from ._trajectories import check_trajectories, trajectory_shape
from ._windows import WindowSampler

__all__ = ["WindowSampler", "check_trajectories", "load_trajectories", "trajectory_shape"]
