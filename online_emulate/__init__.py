"""online_emulate: unrolled and online training of autoregressive neural PDE emulators."""

__version__ = "0.1.0"
