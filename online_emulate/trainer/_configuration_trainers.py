"""One convenience trainer per configuration, taking its options as keywords."""

from __future__ import annotations

import inspect

from .. import configuration as _cfg
from ._general import GeneralTrainer

__all__ = [
    "SupervisedTrainer",
    "DivertedChainTrainer",
    "DivertedChainBranchOneTrainer",
    "MixChainPostPhysicsTrainer",
    "MixChainPrePhysicsTrainer",
    "ResiduumTrainer",
    "TeacherForcingTrainer",
]

_TRAINER_OPTIONS = set(inspect.signature(GeneralTrainer.__init__).parameters) - {
    "self",
    "configuration",
    "data",
}


class _ConfigurationTrainer(GeneralTrainer):
    configuration_class: type = None

    def __init__(self, data, *, optimizer, num_training_steps, batch_size, **options):
        trainer_options = {k: v for k, v in options.items() if k in _TRAINER_OPTIONS}
        config_options = {k: v for k, v in options.items() if k not in _TRAINER_OPTIONS}
        configuration = self.configuration_class(**config_options)
        super().__init__(
            configuration,
            data,
            optimizer=optimizer,
            num_training_steps=num_training_steps,
            batch_size=batch_size,
            **trainer_options,
        )


def _trainer(configuration_class, summary):
    name = f"{configuration_class.__name__}Trainer"
    config_params = [
        p
        for p in inspect.signature(configuration_class.__init__).parameters
        if p != "self"
    ]
    doc = f"""{summary}

    `{name}(data, *, optimizer, num_training_steps, batch_size, **options)` builds
    `configuration.{configuration_class.__name__}(**configuration_options)` and trains it
    like `GeneralTrainer` (see there for `key`, the history, continuation and resume).

    Configuration options (keywords): {", ".join(config_params)}.
    Trainer options (keywords): {", ".join(sorted(_TRAINER_OPTIONS - {"optimizer", "num_training_steps", "batch_size"}))}.

    Raises:
        TypeError: for an unknown option (from the configuration's constructor).
        ValueError: for invalid option values.
    """
    return type(name, (_ConfigurationTrainer,), {"configuration_class": configuration_class, "__doc__": doc, "__module__": __name__})


SupervisedTrainer = _trainer(_cfg.Supervised, "Supervised rollout training on trajectory windows.")
DivertedChainTrainer = _trainer(
    _cfg.DivertedChain, "Diverted-chain training: branches of the reference stepper off the network chain (needs ref_stepper)."
)
DivertedChainBranchOneTrainer = _trainer(
    _cfg.DivertedChainBranchOne, "Diverted chain with one-step branches (needs ref_stepper)."
)
MixChainPostPhysicsTrainer = _trainer(
    _cfg.MixChainPostPhysics, "Network steps followed by reference-stepper steps, all compared to data (needs ref_stepper)."
)
MixChainPrePhysicsTrainer = _trainer(
    _cfg.MixChainPrePhysics, "Reference-stepper steps followed by network steps, all compared to data (needs ref_stepper)."
)
ResiduumTrainer = _trainer(_cfg.Residuum, "Residuum training on a condition residuum_fn(next, prev) (needs residuum_fn).")
TeacherForcingTrainer = _trainer(
    _cfg.TeacherForcing, "Teacher forcing: the network chain is reset to the data every reset_every steps."
)
