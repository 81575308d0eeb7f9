"""Online learning: the emulator as a recurrent brainstate model, braintrace learners,
and streaming training over long rollouts. Checkpoints are read and written with
`online_emulate.trainer.save_checkpoint` / `load_checkpoint`."""

from .._precision import __all__ as _  # noqa: F401  (first: keeps jax_enable_x64)

from ._compile import ExcludedParameterError, check_no_excluded_parameters, compile_learner
from ._recurrent import RecurrentEmulator
from ._trainer import OnlineTrainer

__all__ = [
    "RecurrentEmulator",
    "compile_learner",
    "check_no_excluded_parameters",
    "ExcludedParameterError",
    "OnlineTrainer",
]
