"""Which command-line choices fit together, said in the command line's own words.

The library refuses an estimator that does not suit a configuration with a message in
Python terms (class names, every estimator it knows); on the command line the same
refusal is one line naming the `--estimator` / `--configuration` flags that do fit,
found by asking the library about each choice, so the list cannot go stale.
"""

from __future__ import annotations

from .. import estimators as est
from ..configuration._catalogue import online_entries
from ._factories import ESTIMATORS

__all__ = ["check_choices_fit"]

def _estimators(online: bool) -> list[str]:
    return [name for name in ESTIMATORS.names() if ESTIMATORS.make(name).online == online]


def _is_online(configuration) -> bool:
    try:
        configuration.online_spec()
    except ValueError:
        return False
    return True


def _online_configurations(run: dict) -> list[str]:
    """Each CLI configuration that suits online estimators, with the switch it needs."""
    return [name if switch is None else f"{name} --{switch.replace('_', '-')}"
            for name, switch, _ in online_entries(run)]


def check_choices_fit(run: dict, configuration, estimator) -> None:
    """Refuse `--estimator` choices the configuration or optimizer cannot use.

    Raises:
        ValueError: one line naming `--estimator` (or `--optimizer`), the choice and the
            flags that fit.
    """
    name, config_name = run["estimator"], run["configuration"]
    if estimator.online and not _is_online(configuration):
        raise ValueError(
            f"--estimator: expected one of {', '.join(_estimators(False))} with "
            f"--configuration {config_name} (its loss is not a sum of per-step terms, "
            f"which online estimators need), got {name}; the online estimators "
            f"({', '.join(_estimators(True))}) fit --configuration "
            f"{', '.join(_online_configurations(run))}"
        )
    if run.get("optimizer") == "kfac" and not isinstance(estimator, est.BPTT):
        exact = [n for n in ESTIMATORS.names() if isinstance(ESTIMATORS.make(n), est.BPTT)]
        raise ValueError(
            f"--optimizer: expected adam or sgd with --estimator {name} (kfac takes its "
            f"gradient from the full rollout: --estimator {', '.join(exact)}), got kfac"
        )
