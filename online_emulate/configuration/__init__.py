"""Training configurations: how a stepper, data and references define a loss.

Every configuration is an immutable object; `config(stepper, data, *, ref_stepper,
residuum_fn)` returns a scalar loss and `config.loss(..., scan=...)` runs every
rollout loop through an injectable scan.
"""

from .._rollout import BatchStepper
from ._base import BaseConfiguration
from ._catalogue import CONFIGURATIONS
from ._composite import Composite
from ._diverted_chain import DivertedChain
from ._diverted_chain_branch_one import DivertedChainBranchOne
from ._mix_chain_post_physics import MixChainPostPhysics
from ._mix_chain_pre_physics import MixChainPrePhysics
from ._online_spec import OnlineSpec
from ._residuum import Residuum
from ._supervised import Supervised
from ._teacher_forcing import TeacherForcing

__all__ = [
    "BaseConfiguration",
    "CONFIGURATIONS",
    "BatchStepper",
    "Composite",
    "DivertedChain",
    "DivertedChainBranchOne",
    "MixChainPostPhysics",
    "MixChainPrePhysics",
    "OnlineSpec",
    "Residuum",
    "Supervised",
    "TeacherForcing",
]
