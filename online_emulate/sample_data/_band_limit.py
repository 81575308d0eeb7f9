"""The resolution check every generated data set shares (kept apart from the exponax
path so that the exact advection data loads without exponax)."""

from __future__ import annotations

__all__ = ["check_band_limit"]


def check_band_limit(highest_init_mode: int, num_points: int) -> None:
    """Require `2 * highest_init_mode < num_points` (modes strictly below Nyquist).

    Raises:
        ValueError: otherwise.
    """
    if 2 * highest_init_mode >= num_points:
        raise ValueError(
            "highest_init_mode: expected 2 * highest_init_mode < num_points so the initial "
            "condition is resolved below the Nyquist mode, got "
            f"highest_init_mode={highest_init_mode}, num_points={num_points}"
        )
