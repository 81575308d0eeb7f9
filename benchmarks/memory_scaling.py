"""Compiled temp memory and time per rollout step of each gradient estimator vs rollout length.

The reference is produced on the fly (DivertedChainBranchOne(T, cut_div_chain=True) with a
reference stepper): the data holds one time level, so only the estimator's own memory can
grow with T. Prints a table with ratios to T=10; last line constant_memory_worst_ratio=<x>
(worst T_max/T=10 memory ratio over the constant-memory estimators ETrace, ForwardRTRL,
TruncatedBPTT).

Usage: python benchmarks/memory_scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from online_emulate.configuration import DivertedChainBranchOne
from online_emulate.emulators import ConvNet, LinearStencil, functional
from online_emulate.estimators import BPTT, ETrace, ForwardRTRL, TruncatedBPTT
from online_emulate.estimators import compiled_temp_bytes

CONSTANT = ("ETrace", "ForwardRTRL", "TruncatedBPTT")


def ref_stepper(u):
    return 0.5 * (u + jnp.roll(u, 1, axis=-1))


def measure(est, emu, T, data):
    cfg = DivertedChainBranchOne(T, cut_div_chain=True)
    mem = compiled_temp_bytes(est, cfg, emu, data, ref_stepper=ref_stepper)
    apply, params = functional(emu)
    if est.jittable:
        f = jax.jit(lambda p, d: est.value_and_grad(cfg, apply, p, d, ref_stepper=ref_stepper))
        call = lambda: f(params, data)  # noqa: E731
    else:
        call = lambda: est.value_and_grad(cfg, apply, params, data, ref_stepper=ref_stepper,  # noqa: E731
                                          emulator=emu)
    jax.block_until_ready(call())
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    return mem, (time.perf_counter() - t0) / T


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small grid/batch, T up to 1000")
    args = parser.parse_args()
    B, N = (4, 32) if args.quick else (16, 64)
    lengths = [10, 100, 1000] if args.quick else [10, 100, 1000, 10000]
    models = {
        "stencil": lambda: LinearStencil(1, 1, 1, kernel_size=3),
        "conv8": lambda: ConvNet(1, 1, 1, hidden_channels=8, depth=2),
        "conv32": lambda: ConvNet(1, 1, 1, hidden_channels=32, depth=2),
    }
    estimators = [BPTT(), BPTT(checkpoint="sqrt"), TruncatedBPTT(10), ForwardRTRL(),
                  ETrace("d_rtrl"), ETrace("es_d_rtrl", decay=0.9)]
    data = jax.random.normal(jax.random.PRNGKey(0), (B, 1, 1, N))
    worst = 1.0
    print(f"B={B} N={N}; temp = XLA compiled temp bytes of value_and_grad; ratio = temp(T)/temp(T=10)")
    print(f"{'model':8s} {'estimator':34s} {'T':>6s} {'temp_bytes':>12s} {'ratio':>8s} {'us/step':>9s}")
    for mname, make in models.items():
        emu = make()
        for est in estimators:
            base = None
            for T in lengths:
                if isinstance(est, ForwardRTRL) and mname == "conv32":
                    print(f"{mname:8s} {repr(est)[:34]:34s} {T:6d} {'skipped: P too large for forward mode':>30s}")
                    break
                if isinstance(est, BPTT) and est.checkpoint is None and T > 1000 and mname == "conv32":
                    print(f"{mname:8s} {repr(est)[:34]:34s} {T:6d} {'skipped (linear growth)':>30s}")
                    continue
                mem, dt = measure(est, emu, T, data)
                base = base or max(mem, 1)
                ratio = mem / base
                if type(est).__name__ in CONSTANT:
                    worst = max(worst, ratio)
                print(f"{mname:8s} {repr(est)[:34]:34s} {T:6d} {mem:12d} {ratio:8.2f} {dt * 1e6:9.1f}",
                      flush=True)
    print(f"constant_memory_worst_ratio={worst:.3f}")


if __name__ == "__main__":
    main()
