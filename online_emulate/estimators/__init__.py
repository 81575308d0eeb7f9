"""How the gradient is computed: exact BPTT (optionally checkpointed), truncated BPTT,
forward-mode RTRL and braintrace eligibility traces, behind one interface."""

from ._base import Estimator
from ._bptt import BPTT
from ._checkpoint_scan import sqrt_checkpoint_scan, step_checkpoint_scan
from ._etrace import ETrace
from ._fidelity import compiled_temp_bytes, gradient_fidelity
from ._forward_rtrl import ForwardRTRL, rtrl_memory_bytes
from ._truncated import TruncatedBPTT
from ._value_and_grad import value_and_grad

__all__ = [
    "Estimator",
    "BPTT",
    "TruncatedBPTT",
    "ForwardRTRL",
    "ETrace",
    "value_and_grad",
    "gradient_fidelity",
    "compiled_temp_bytes",
    "step_checkpoint_scan",
    "sqrt_checkpoint_scan",
    "rtrl_memory_bytes",
]
