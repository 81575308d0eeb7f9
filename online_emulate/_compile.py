"""XLA compiler options of the library's own compiled training programs.

On the CPU backend, XLA hands matrix products, elementwise work and reductions to the
YNNPACK library by default. For the small, skinny products of a convolutional emulator
(e.g. `(3200, 78) @ (78, 26)` for 26 channels, kernel 3, batch 20, N=160) XLA's own dot
emitter is faster, while YNNPACK's reductions remain the faster choice (without them a
2-D net's step took 2.3x longer). So the library's training programs keep YNNPACK for
reductions only. Measured per parameter update of a 20-update `fori_loop`
(`benchmarks/profile_conv.py --compiler-options`; benchmarks/RESULTS.md): 0.98-1.00x on a
2-weight stencil (noise), 1.16-1.47x on a 2-layer 8-channel net, 1.16x on a 4-layer
32-channel net, 1.07-1.10x on a 2-D net, 1.25x on the 9-layer 26-channel net.

The options apply only to programs this library compiles (trainer chunks, the
callbacks' evaluations), never jax-wide, and only on CPU. A user who sets the option in
`XLA_FLAGS` keeps their choice: the library then passes nothing.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import jax

__all__ = ["CPU_COMPILER_OPTIONS", "compiler_options", "jit"]

_YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"

#: what the library's CPU programs are compiled with (see the module docstring)
CPU_COMPILER_OPTIONS: dict[str, Any] = {_YNN_FUSION_TYPE: "LIBRARY_FUSION_TYPE_REDUCE"}


@functools.cache
def _accepted(backend: str) -> bool:
    """Whether this jaxlib compiles with `CPU_COMPILER_OPTIONS` (an experimental flag
    may be renamed in a later XLA; then the library compiles with XLA's defaults)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS, backend=backend).lower(
            1.0).compile()
    except Exception:  # XLA reports an unknown option as a runtime error of its own type
        return False
    return True


def compiler_options() -> dict[str, Any] | None:
    """The compiler options for a program of this library on the default backend.

    Returns:
        `CPU_COMPILER_OPTIONS` on the CPU backend; None on other backends, when the
        user's `XLA_FLAGS` already sets the option, or when this jaxlib rejects it.
    """
    if jax.default_backend() != "cpu" or _YNN_FUSION_TYPE in os.environ.get("XLA_FLAGS", ""):
        return None
    return dict(CPU_COMPILER_OPTIONS) if _accepted("cpu") else None


def jit(fn: Callable, *, jit_fn: Callable = jax.jit, **kwargs) -> Callable:
    """`jit_fn(fn, **kwargs)` with `compiler_options()` added.

    Arguments:
        fn: the function to compile.
        jit_fn: `jax.jit` or `brainstate.transform.jit` (programs that advance States).
        kwargs: further arguments of `jit_fn`.
    """
    options = compiler_options()
    if options is not None:
        kwargs["compiler_options"] = options
    return jit_fn(fn, **kwargs)
