"""Brainstate emulators u_{t+1} = f_theta(u_t) and their pure-function view."""

from ._adapters import ModelAdapter, adapt
from ._base import Emulator
from ._conv_net import ConvNet
from ._functional import functional, get_params, set_params
from ._linear_stencil import LinearStencil
from ._ops import lax_ops, using_lax_ops
from ._periodic_conv import PeriodicConv

__all__ = [
    "Emulator",
    "LinearStencil",
    "ConvNet",
    "PeriodicConv",
    "functional",
    "adapt",
    "ModelAdapter",
    "get_params",
    "set_params",
    "lax_ops",
    "using_lax_ops",
]
