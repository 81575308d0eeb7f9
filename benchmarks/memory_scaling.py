"""Compiled temp memory and time per rollout step of each gradient estimator vs rollout length.

The reference is produced on the fly (DivertedChainBranchOne(T, cut_div_chain=True) with a
reference stepper): the data holds one time level, so only the estimator's own memory can
grow with T. Prints a table with ratios to T=10, then
constant_memory_worst_ratio=<x> (worst T_max/T=10 memory ratio over the constant-memory
estimators ETrace, ForwardRTRL, TruncatedBPTT), then
exact_fixed_memory_vs_etrace=<temp of BPTT(checkpoint="binomial", num_checkpoints=16) /
temp of ETrace("d_rtrl") for conv8 at the largest T (10000; target <= 1.5)> and
exact_fixed_memory_time_vs_bptt=<its time per step / plain BPTT's, conv8 at T=1000;
target <= 2>. Times are single warm calls on a shared machine: compare ratios within
one run.

Usage: python benchmarks/memory_scaling.py [--quick] [--binomial-only]
  --binomial-only: conv8 with plain BPTT, ETrace("d_rtrl") and the binomial rows only
  (what the two summary lines need).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from online_emulate.configuration import DivertedChainBranchOne
from online_emulate.emulators import ConvNet, LinearStencil, adapt
from online_emulate.estimators import BPTT, ETrace, ForwardRTRL, TruncatedBPTT
from online_emulate.estimators import compiled_temp_bytes

CONSTANT = ("ETrace", "ForwardRTRL", "TruncatedBPTT")
BINOMIAL16 = BPTT(checkpoint="binomial", num_checkpoints=16)


def ref_stepper(u):
    return 0.5 * (u + jnp.roll(u, 1, axis=-1))


def measure(est, emu, T, data, timed=True):
    cfg = DivertedChainBranchOne(T, cut_div_chain=True)
    mem = compiled_temp_bytes(est, cfg, emu, data, ref_stepper=ref_stepper)
    if not timed:
        return mem, float("nan")
    model = adapt(emu)
    if est.jittable:
        f = jax.jit(lambda p, d: est.value_and_grad(cfg, model, p, d, ref_stepper=ref_stepper))
        call = lambda: f(model.params, data)  # noqa: E731
    else:
        call = lambda: est.value_and_grad(cfg, model, model.params, data,  # noqa: E731
                                          ref_stepper=ref_stepper)
    jax.block_until_ready(call())
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    return mem, (time.perf_counter() - t0) / T


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small grid/batch, T up to 1000")
    parser.add_argument("--binomial-only", action="store_true",
                        help="conv8 with BPTT(), ETrace('d_rtrl') and the binomial rows only")
    args = parser.parse_args()
    B, N = (4, 32) if args.quick else (16, 64)
    lengths = [10, 100, 1000] if args.quick else [10, 100, 1000, 10000]
    models = {
        "stencil": lambda: LinearStencil(1, 1, 1, kernel_size=3),
        "conv8": lambda: ConvNet(1, 1, 1, hidden_channels=8, depth=2),
        "conv32": lambda: ConvNet(1, 1, 1, hidden_channels=32, depth=2),
    }
    estimators = [BPTT(), BPTT(checkpoint="sqrt"), BPTT(checkpoint="binomial", num_checkpoints=4),
                  BINOMIAL16, TruncatedBPTT(10), ForwardRTRL(), ETrace("d_rtrl"),
                  ETrace("es_d_rtrl", decay=0.9)]
    if args.binomial_only:
        models = {"conv8": models["conv8"]}
        estimators = [BPTT(), BPTT(checkpoint="binomial", num_checkpoints=4), BINOMIAL16,
                      ETrace("d_rtrl")]
    found = {}  # (model, repr, T) -> (temp bytes, seconds per step)
    data = jax.random.normal(jax.random.PRNGKey(0), (B, 1, 1, N))
    worst = 1.0
    print(f"B={B} N={N}; temp = XLA compiled temp bytes of value_and_grad; ratio = temp(T)/temp(T=10)")
    print(f"{'model':8s} {'estimator':52s} {'T':>6s} {'temp_bytes':>12s} {'ratio':>8s} {'us/step':>9s}")
    for mname, make in models.items():
        emu = make()
        for est in estimators:
            base = None
            for T in lengths:
                if isinstance(est, ForwardRTRL) and mname == "conv32":
                    print(f"{mname:8s} {repr(est)[:52]:52s} {T:6d} {'skipped: P too large for forward mode':>30s}")
                    break
                if isinstance(est, BPTT) and est.checkpoint is None and T > 1000 and mname == "conv32":
                    print(f"{mname:8s} {repr(est)[:52]:52s} {T:6d} {'skipped (linear growth)':>30s}")
                    continue
                # equinox's online schedule with few checkpoints for a long loop recomputes
                # ~170 steps per step (n=4, T=10000): memory only, not timed
                n = getattr(est, "num_checkpoints", None)
                timed = n is None or T <= 50 * (n + 1) * (n + 2)
                mem, dt = measure(est, emu, T, data, timed=timed)
                found[(mname, repr(est), T)] = (mem, dt)
                base = base or max(mem, 1)
                ratio = mem / base
                if type(est).__name__ in CONSTANT:
                    worst = max(worst, ratio)
                print(f"{mname:8s} {repr(est)[:52]:52s} {T:6d} {mem:12d} {ratio:8.2f} {dt * 1e6:9.1f}",
                      flush=True)
    print(f"constant_memory_worst_ratio={worst:.3f}")
    T_max, T_time = lengths[-1], 1000
    b16 = found.get(("conv8", repr(BINOMIAL16), T_max))
    etrace = found.get(("conv8", repr(ETrace("d_rtrl")), T_max))
    if b16 and etrace:
        print(f"exact_fixed_memory_vs_etrace={b16[0] / etrace[0]:.3f}  (conv8, T={T_max}: "
              f"{b16[0]} / {etrace[0]} bytes)")
    b16, plain = found.get(("conv8", repr(BINOMIAL16), T_time)), found.get(("conv8", "BPTT()", T_time))
    if b16 and plain:
        print(f"exact_fixed_memory_time_vs_bptt={b16[1] / plain[1]:.3f}  (conv8, T={T_time}: "
              f"{b16[1] * 1e6:.1f} / {plain[1] * 1e6:.1f} us per step)")


if __name__ == "__main__":
    main()
