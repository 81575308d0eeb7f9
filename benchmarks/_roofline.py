"""The roofline of one machine: its attainable peaks, and how close a program comes.

A program that does F floating-point operations and moves Q bytes has the arithmetic
intensity I = F / Q (flop/byte). On a machine with a compute peak P (GFLOP/s) and a
memory bandwidth W (GB/s) it cannot run faster than

    bound = min(P, I * W)  GFLOP/s,    i.e. in no less than  max(F / P, Q / W)  seconds,

so a program that takes t seconds reaches the fraction (F / t) / bound of its roofline.

The peaks are measured, not read from a data sheet: a large float32 matrix product
(what XLA:CPU runs fastest) and a streaming in-place add over an array much larger
than the caches. F and Q come from XLA's own cost analysis of the compiled program.
XLA counts the body of a loop (`lax.scan`, `while_loop`, `fori_loop`) once, whatever its
trip count, and its "bytes accessed" sums the operands and results of every fused
kernel (data that stays in cache is counted each time it is read), so Q is an upper
bound of the memory traffic and I a lower bound of the intensity.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["best_seconds", "matmul_gflops", "roofline", "stream_gbs", "xla_cost"]


def best_seconds(fn: Callable[[], Any], *, repeats: int = 5) -> float:
    """The fastest of `repeats` timed calls of `fn()` after one untimed (compiling) call.

    Arguments:
        fn: a function of no arguments returning jax arrays (waited for).
        repeats: timed calls (>= 1).

    Returns:
        seconds of the fastest call.
    """
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return best


def matmul_gflops(n: int = 2048, *, repeats: int = 5) -> float:
    """Attainable float32 GFLOP/s: the fastest `(n, n) @ (n, n)` product (2 n^3 flops)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)
    return 2 * n ** 3 / best_seconds(lambda: mm(a, a), repeats=repeats) / 1e9


def stream_gbs(elements: int = 2 ** 26, *, repeats: int = 5) -> float:
    """Attainable memory bandwidth GB/s: an in-place `v + 1` over `elements` float32
    values (one read and one write of 4 bytes each); 2^26 elements are 256 MiB."""
    # donated, so the add writes into its input: a fresh output buffer would time the
    # page faults of its first touch, not the memory
    add = jax.jit(lambda v: v + 1.0, donate_argnums=0)
    box = [jax.block_until_ready(add(jnp.ones((elements,), jnp.float32)))]

    def once():
        box[0] = add(box[0])
        return box[0]

    return 2 * 4 * elements / best_seconds(once, repeats=repeats) / 1e9


def xla_cost(cost: Any) -> tuple[float, float]:
    """`(flops, bytes accessed)` from what `Compiled.cost_analysis()` returns.

    jax 0.10.2 returns one dict per program; older versions a list holding one dict per
    device program (the first is taken).

    Arguments:
        cost: the return value of `jax.jit(f).lower(...).compile().cost_analysis()`,
            or that compiled object itself.

    Returns:
        `(flops, bytes)` as floats.

    Raises:
        ValueError: when the analysis is empty or lacks 'flops' or 'bytes accessed'.
    """
    if hasattr(cost, "cost_analysis"):
        cost = cost.cost_analysis()
    if isinstance(cost, (list, tuple)):
        if not cost:
            raise ValueError("cost: expected a cost analysis with one entry per program, got []")
        cost = cost[0]
    if not isinstance(cost, dict) or "flops" not in cost or "bytes accessed" not in cost:
        raise ValueError("cost: expected a dict with 'flops' and 'bytes accessed', got "
                         f"{cost!r}")
    return float(cost["flops"]), float(cost["bytes accessed"])


def roofline(flops: float, bytes_accessed: float, seconds: float, *, peak_gflops: float,
             peak_gbs: float) -> dict[str, float]:
    """Where a program of `flops` and `bytes_accessed` that took `seconds` stands.

    Arguments:
        flops, bytes_accessed: per run of the program (> 0).
        seconds: measured time of one run (> 0).
        peak_gflops, peak_gbs: the machine's attainable compute and bandwidth (> 0).

    Returns:
        dict with `intensity` (flop/byte), achieved `gflops` and `gbs`, the roofline
        `bound_gflops` = min(peak_gflops, intensity * peak_gbs), `bound_s` (the least time
        the program can take) and `fraction` = gflops / bound_gflops (= bound_s / seconds).

    Raises:
        ValueError: a non-positive argument.
    """
    for name, value in (("flops", flops), ("bytes_accessed", bytes_accessed),
                        ("seconds", seconds), ("peak_gflops", peak_gflops),
                        ("peak_gbs", peak_gbs)):
        if not value > 0:
            raise ValueError(f"{name}: expected a positive number, got {value!r}")
    intensity = flops / bytes_accessed
    bound = min(peak_gflops, intensity * peak_gbs)
    achieved = flops / seconds / 1e9
    return {"intensity": intensity, "gflops": achieved, "gbs": bytes_accessed / seconds / 1e9,
            "bound_gflops": bound, "bound_s": flops / bound / 1e9, "fraction": achieved / bound}
