"""A fixed, deterministic set of windows on which callbacks evaluate."""

from __future__ import annotations

import numpy as np

__all__ = ["evaluation_windows"]


def evaluation_windows(sampler, data, max_windows: int):
    """Up to `max_windows` windows spread evenly over all training windows."""
    count = min(max_windows, sampler.num_windows)
    ids = np.linspace(0, sampler.num_windows - 1, count).round().astype(np.int32)
    return sampler.gather(data, ids)
