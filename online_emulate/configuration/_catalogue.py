"""The configurations the command line builds by name from its parsed options."""

from __future__ import annotations

from .._catalogue import Catalogue
from ._diverted_chain import DivertedChain
from ._diverted_chain_branch_one import DivertedChainBranchOne
from ._mix_chain_post_physics import MixChainPostPhysics
from ._mix_chain_pre_physics import MixChainPrePhysics
from ._residuum import Residuum
from ._supervised import Supervised
from ._teacher_forcing import TeacherForcing

__all__ = ["CONFIGURATIONS"]

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
