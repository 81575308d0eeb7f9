"""Validation of the options every rollout configuration has."""

from __future__ import annotations

from ._validation import check_count, check_flag, check_loss

__all__ = ["chain_options"]


def chain_options(num_rollout_steps, time_level_loss, cut_bptt, cut_bptt_every) -> dict:
    """Validated `num_rollout_steps`, `time_level_loss`, `cut_bptt`, `cut_bptt_every`."""
    return dict(
        num_rollout_steps=check_count("num_rollout_steps", num_rollout_steps),
        time_level_loss=check_loss("time_level_loss", time_level_loss),
        cut_bptt=check_flag("cut_bptt", cut_bptt),
        cut_bptt_every=check_count("cut_bptt_every", cut_bptt_every),
    )
