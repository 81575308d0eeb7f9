"""What every rollout configuration has: a network chain with optional gradient cuts."""

from __future__ import annotations


from .._frozen import frozen
from .._checks import check_flag, check_int
from .._rollout import Events
from ._base import BaseConfiguration
from ._validation import check_loss

__all__ = ["ChainConfiguration", "chain_options"]


def chain_options(num_rollout_steps, time_level_loss, cut_bptt, cut_bptt_every) -> dict:
    """Validated `num_rollout_steps`, `time_level_loss`, `cut_bptt`, `cut_bptt_every`."""
    return dict(
        num_rollout_steps=check_int("num_rollout_steps", num_rollout_steps),
        time_level_loss=check_loss("time_level_loss", time_level_loss),
        cut_bptt=check_flag("cut_bptt", cut_bptt),
        cut_bptt_every=check_int("cut_bptt_every", cut_bptt_every),
    )


@frozen(eq=False)
class ChainConfiguration(BaseConfiguration):
    """A configuration built on a chain of network steps (the fields of `chain_options`)."""

    @property
    def _cuts(self) -> Events:
        """The chain's gradient cuts: after every `cut_bptt_every`-th step with `cut_bptt`."""
        return Events(cut_every=self.cut_bptt_every if self.cut_bptt else None)
