"""What every rollout configuration has: a network chain with optional gradient cuts,
and the options, declared once with their defaults and checks."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

from jaxtyping import Array, Float

from .._checks import check_flag, check_int
from .._frozen import frozen
from .._rollout import Events
from ..loss import BaseLoss, MSELoss
from ._base import BaseConfiguration
from ._validation import check_loss, check_weights

__all__ = ["ChainConfiguration", "Weights", "options", "option", "weights_option"]

#: a chain configuration's class decorator: a frozen dataclass whose generated
#: `__init__` takes the declared options (positional ones first, then keyword-only)
options = frozen(eq=False, init=True)


def option(default: Any, check: Optional[Callable] = None, *, positional: bool = False):
    """An option: its default and `check(name, value) -> value` run at construction
    (keyword-only unless `positional`)."""
    return dataclasses.field(default=default, kw_only=not positional,
                             metadata={"check": check})


def weights_option(*counts: str, meaning: str):
    """Keyword-only weights, one per step counted by the option names `counts` (summed);
    None means ones."""
    return dataclasses.field(default=None, kw_only=True, metadata={"weights": (counts, meaning)})


@frozen(eq=False)
class ChainConfiguration(BaseConfiguration):
    """A configuration built on a chain of network steps: `num_rollout_steps` (positional)
    and the keyword-only `time_level_loss`, `cut_bptt`, `cut_bptt_every`. Subclasses,
    decorated with `options`, add theirs with `option` / `weights_option`."""

    num_rollout_steps: int = option(1, check_int, positional=True)
    time_level_loss: BaseLoss = option(MSELoss(), check_loss)
    cut_bptt: bool = option(False, check_flag)
    cut_bptt_every: int = option(1, check_int)

    def __post_init__(self) -> None:
        checked = {}
        for f in dataclasses.fields(self):
            value, check = getattr(self, f.name), f.metadata.get("check")
            if "weights" in f.metadata:
                counts, meaning = f.metadata["weights"]
                value = check_weights(f.name, value, sum(checked[n] for n in counts), meaning)
            elif check is not None:
                value = check(f.name, value)
            checked[f.name] = value
        self._set(**checked)

    @property
    def _cuts(self) -> Events:
        """The chain's gradient cuts: after every `cut_bptt_every`-th step with `cut_bptt`."""
        return Events(cut_every=self.cut_bptt_every if self.cut_bptt else None)


#: the shape annotation of per-step weights
Weights = Optional[Float[Array, "steps"]]
