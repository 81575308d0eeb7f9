"""The estimators the command line builds by name, from its parsed options
(`truncation`, `decay`, `num_checkpoints`); `plan` lists every one that is not a `BPTT`."""

from __future__ import annotations

from ._base import ESTIMATORS
from ._bptt import BPTT
from ._etrace import ETrace
from ._forward_rtrl import ForwardRTRL
from ._truncated import TruncatedBPTT

__all__ = ["ESTIMATORS"]

# register an estimator of your own with `ESTIMATORS.register(name, factory, **defaults)`
for _name, _checkpoint in (("bptt", None), ("bptt-step", "step"), ("bptt-sqrt", "sqrt")):
    ESTIMATORS.register(_name, lambda o, c=_checkpoint: BPTT(checkpoint=c))
ESTIMATORS.register("bptt-binomial", lambda o: BPTT(checkpoint="binomial", num_checkpoints=o["num_checkpoints"]),
                    num_checkpoints=16)
ESTIMATORS.register("tbptt", lambda o: TruncatedBPTT(o["truncation"]), truncation=1)
ESTIMATORS.register("rtrl", lambda o: ForwardRTRL())
ESTIMATORS.register("d_rtrl", lambda o: ETrace("d_rtrl"))
# braintrace has no default trace decay
ESTIMATORS.register("es_d_rtrl", lambda o: ETrace("es_d_rtrl", decay=o["decay"]), decay=0.9)
