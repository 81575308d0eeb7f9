"""Brainstate emulators u_{t+1} = f_theta(u_t) and their pure-function view."""

from .._precision import __all__ as _  # noqa: F401  (first: keeps jax_enable_x64)

from ._adapters import ModelAdapter, adapt, as_stepper, declared_state_ndim, functional
from ._base import Emulator
from ._conv_net import ConvNet
from ._hidden import declaring_hidden_states, hidden_state
from ._functional import get_params, set_params
from ._linear_stencil import LinearStencil
from ._ops import lax_conv_ops, lax_ops, using_lax_ops
from ._periodic_conv import PeriodicConv
from ._serialize import (
    build_emulator,
    describe_emulator,
    load_emulator,
    load_weights,
    save_emulator,
    save_weights,
)

__all__ = [
    "Emulator",
    "LinearStencil",
    "ConvNet",
    "PeriodicConv",
    "functional",
    "adapt",
    "as_stepper",
    "declared_state_ndim",
    "ModelAdapter",
    "get_params",
    "set_params",
    "hidden_state",
    "declaring_hidden_states",
    "lax_ops",
    "lax_conv_ops",
    "using_lax_ops",
    "save_emulator",
    "load_emulator",
    "save_weights",
    "load_weights",
    "describe_emulator",
    "build_emulator",
]
