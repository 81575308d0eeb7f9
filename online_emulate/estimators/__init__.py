"""How the gradient is computed: exact BPTT (optionally checkpointed, or fitted to a memory
budget), truncated BPTT, forward-mode RTRL and braintrace eligibility traces, behind one
interface; `plan` shows what each costs for a problem before training."""

from .._precision import __all__ as _  # noqa: F401  (first: keeps jax_enable_x64)

from ._base import CarryOps, Estimator, OnlineEstimator
from ._bind import Bound
from ._bptt import BPTT
from ._catalogue import ESTIMATORS
from ._checkpoint_scan import (binomial_checkpoint_scan, binomial_step_evaluations,
                               sqrt_checkpoint_scan, step_checkpoint_scan)
from ._etrace import ETrace
from ._fidelity import compiled_temp_bytes, gradient_fidelity
from ._forward_rtrl import ForwardRTRL, rtrl_memory_bytes
from ._plan import Plan, PlanRow, plan
from ._truncated import TruncatedBPTT
from ._value_and_grad import value_and_grad

__all__ = [
    "Estimator",
    "ESTIMATORS",
    "OnlineEstimator",
    "CarryOps",
    "Bound",
    "BPTT",
    "TruncatedBPTT",
    "ForwardRTRL",
    "ETrace",
    "value_and_grad",
    "gradient_fidelity",
    "compiled_temp_bytes",
    "step_checkpoint_scan",
    "sqrt_checkpoint_scan",
    "binomial_checkpoint_scan",
    "binomial_step_evaluations",
    "plan",
    "Plan",
    "PlanRow",
    "rtrl_memory_bytes",
]
