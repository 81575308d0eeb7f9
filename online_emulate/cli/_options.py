"""The argument types and the option groups that several subcommands share."""

from __future__ import annotations

import argparse
import math

from ._factories import CONFIGURATIONS, EMULATORS

__all__ = ["positive_int", "positive_float", "decay", "add_configuration_options",
           "add_emulator_options"]


def _number(convert, low: float, high: float, closed_low: bool, what: str):
    """An argparse type: `convert(text)` within (low, high), `low` included when
    `closed_low`; otherwise "expected <what>, got '<text>'"."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not (value >= low if closed_low else value > low) or not value < high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _number(int, 1, math.inf, True, "a positive integer")
positive_float = _number(float, 0.0, math.inf, False, "a positive number")
decay = _number(float, 0.0, 1.0, False, "a number in (0, 1)")


def add_configuration_options(g) -> None:
    """The options that build a configuration (the `CONFIGURATIONS` catalogue, read now:
    registered configurations are choices)."""
    g.add_argument("--configuration", choices=CONFIGURATIONS.names(), default="supervised", help="training configuration (default: %(default)s)")
    g.add_argument("--rollout-steps", type=positive_int, default=5, help="network rollout steps R (default: %(default)s)")
    g.add_argument("--branch-steps", type=positive_int, default=1, help="branch length B of diverted-chain (default: %(default)s)")
    g.add_argument("--physics-steps", type=positive_int, default=1, help="reference steps of the mix-chain configurations (default: %(default)s)")
    g.add_argument("--reset-every", type=positive_int, default=2, help="teacher-forcing reset period (default: %(default)s)")
    g.add_argument("--cut-bptt", action="store_true", help="stop gradients along the main chain")
    g.add_argument("--cut-bptt-every", type=positive_int, default=1, help="cut the main chain every k steps (default: %(default)s)")
    g.add_argument("--cut-div-chain", action="store_true", help="no gradient through the reference stepper")
    g.add_argument("--cut-prev", action="store_true", help="residuum: no gradient through the previous state")
    g.add_argument("--cut-next", action="store_true", help="residuum: no gradient through the next state")


def add_emulator_options(g) -> None:
    """The options that build an emulator (`_factories.EMULATORS`)."""
    g.add_argument("--emulator", choices=EMULATORS.names(), default="convnet", help="linear stencil or residual conv net (default: %(default)s)")
    g.add_argument("--kernel-size", type=positive_int, default=3, help="convolution width (default: %(default)s)")
    g.add_argument("--hidden-channels", type=positive_int, default=8, help="conv net width (default: %(default)s)")
    g.add_argument("--depth", type=positive_int, default=2, help="conv layers (default: %(default)s)")
