"""The configurations the command line builds by name from its parsed options."""

from __future__ import annotations

from typing import Any, Mapping

from .._catalogue import Catalogue
from ._base import BaseConfiguration
from ._diverted_chain import DivertedChain
from ._diverted_chain_branch_one import DivertedChainBranchOne
from ._mix_chain_post_physics import MixChainPostPhysics
from ._mix_chain_pre_physics import MixChainPrePhysics
from ._residuum import Residuum
from ._supervised import Supervised
from ._teacher_forcing import TeacherForcing

__all__ = ["CONFIGURATIONS", "online_entries"]

#: register a configuration of your own with `CONFIGURATIONS.register(name, factory)`
CONFIGURATIONS = Catalogue("--configuration")

# name: (class, its positional options after rollout_steps, its own switches); every one
# also takes rollout_steps, cut_bptt and cut_bptt_every
for _name, (_cls, _positional, _switches) in {
    "supervised": (Supervised, (), ()),
    "diverted-chain": (DivertedChain, ("branch_steps",), ("cut_div_chain",)),
    "diverted-chain-branch-one": (DivertedChainBranchOne, (), ("cut_div_chain",)),
    "mix-chain-post-physics": (MixChainPostPhysics, ("physics_steps",), ()),
    "mix-chain-pre-physics": (MixChainPrePhysics, ("physics_steps",), ()),
    "residuum": (Residuum, (), ("cut_prev", "cut_next")),
    "teacher-forcing": (TeacherForcing, ("reset_every",), ()),
}.items():
    CONFIGURATIONS.register(_name, lambda o, c=_cls, p=_positional, s=_switches: c(
        o["rollout_steps"], *(o[k] for k in p), **{k: o[k] for k in (*s, "cut_bptt", "cut_bptt_every")}))

#: the options `online_entries` turns on one at a time, and those it makes the entries
#: with by default (every switch off, one step of everything)
SWITCHES = ("cut_div_chain", "cut_prev", "cut_next", "cut_bptt")
_DEFAULTS = dict(rollout_steps=1, branch_steps=1, physics_steps=1, reset_every=1,
                 cut_bptt_every=1, **dict.fromkeys(SWITCHES, False))


def online_entries(options: Mapping[str, Any] = _DEFAULTS) -> list[tuple[str, str | None, BaseConfiguration]]:  # noqa: B006 (only read)
    """The catalogued configurations that suit online estimators (`online_spec()`
    succeeds), as `(name, switch, configuration)`: made from `options`, or else with
    the first of `SWITCHES` that is off there turned on (`switch` names it; None when
    `options` suffice). Entries that cannot be made from the options are left out."""
    fits = []
    for name in CONFIGURATIONS.names():
        for switch in (None, *(k for k in SWITCHES if not options.get(k))):
            try:
                configuration = CONFIGURATIONS.make(name, {**options, **({switch: True} if switch else {})})
                configuration.online_spec()
            except (ValueError, TypeError, KeyError):
                continue
            fits.append((name, switch, configuration))
            break
    return fits
