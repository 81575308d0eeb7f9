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

XLA's newer fusion emitters (`xla_cpu_use_fusion_emitters`, XLA's default) lower each
fused kernel through an MLIR pipeline before LLVM; the classic emitters write LLVM IR
directly. For this library's programs the classic ones compile 1.8x faster (process CPU
seconds of the README quickstart's three trainer programs: 1.57 against 0.88;
`benchmarks/quickstart_breakdown.py`, benchmarks/RESULTS.md) and train as fast or faster
on the nets (ms per step, CPU time, fusion emitters against classic: 5.3 against 5.1 on
the 9-layer 26-channel net at rollout 1, 38 against 34 at rollout 5, 77 against 70 on a
4-layer 2-D net), while the 2-weight stencil's steps take 0.012 / 0.044 ms against 0.010
/ 0.032 (rollout 1 / 5: 12 ms more over the quickstart's 1000 steps). Both compute the same operations; results agree to
float rounding (they may round differently, e.g. in where a product and a sum are fused).

The options apply only to programs this library compiles (trainer chunks, the
callbacks' evaluations), never jax-wide, and only on CPU. A user who sets one of them in
`XLA_FLAGS` keeps their choice: the library then does not pass that one.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import jax

__all__ = ["CPU_COMPILER_OPTIONS", "compiler_options", "jit"]

_YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"
_FUSION_EMITTERS = "xla_cpu_use_fusion_emitters"

#: what the library's CPU programs are compiled with (see the module docstring)
CPU_COMPILER_OPTIONS: dict[str, Any] = {
    _YNN_FUSION_TYPE: "LIBRARY_FUSION_TYPE_REDUCE",
    _FUSION_EMITTERS: False,
}


@functools.cache
def _probe(backend: str, options: tuple[tuple[str, Any], ...]) -> bool:
    """Whether this jaxlib compiles a program with `options` (an experimental flag may
    be renamed or dropped in a later XLA; then the library compiles without it)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options), backend=backend).lower(
            1.0).compile()
    except Exception:  # XLA reports an unknown option as a runtime error of its own type
        return False
    return True


def _accepted(backend: str) -> bool:
    """Whether this jaxlib compiles with all of `CPU_COMPILER_OPTIONS`."""
    return _probe(backend, tuple(CPU_COMPILER_OPTIONS.items()))


def compiler_options() -> dict[str, Any] | None:
    """The compiler options for a program of this library on the default backend.

    Returns:
        On the CPU backend, the entries of `CPU_COMPILER_OPTIONS` that the user's
        `XLA_FLAGS` does not set and this jaxlib accepts (one probe compilation for all,
        one per option only when that fails); None when no entry is left or on other
        backends.
    """
    if jax.default_backend() != "cpu":
        return None
    flags = os.environ.get("XLA_FLAGS", "")
    wanted = tuple((k, v) for k, v in CPU_COMPILER_OPTIONS.items() if k not in flags)
    if wanted and not _probe("cpu", wanted):
        wanted = tuple(item for item in wanted if _probe("cpu", (item,)))
    return dict(wanted) or None


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
