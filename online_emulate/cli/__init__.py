"""The `online-emulate` command line (`python -m online_emulate`)."""

from ._main import build_parser, main

__all__ = ["main", "build_parser"]
