"""The braintrace bridge: the emulator as a recurrent brainstate model and the compiled
eligibility-trace learner. It sits below the estimators (imports run bridge ->
estimators -> trainer); streaming training is `online_emulate.trainer.OnlineTrainer`."""

from .._precision import __all__ as _  # noqa: F401  (first: keeps jax_enable_x64)

from ._compile import ExcludedParameterError, check_no_excluded_parameters, compile_learner
from ._recurrent import RecurrentEmulator

__all__ = [
    "RecurrentEmulator",
    "compile_learner",
    "check_no_excluded_parameters",
    "ExcludedParameterError",
]
