"""The bandwidth floor of a D_RTRL step on the lifted pdequinox ConvNet, against what the
step takes (issue 23, item 2).

braintrace's exact diagonal D-RTRL trace of a convolution is per position: B * S * |K|
floats per layer (S output positions, |K| kernel entries). Every step any rule has to
read the old trace, write the new one (eps_t = D_t eps_{t-1} + df_t (x) x_t) and
contract it with the learning signal (grad = sum_{b,s} g_t . eps_t): at least two
passes over it when the solve reads the update's output as it is written, three when
it reads it back. At the machine's streaming bandwidth W (an in-place add over an
array of the trace's size, timed interleaved with the steps) that is 2 * bytes / W; the step also
runs the model forward and the one-step backward of the learning signal, which
TruncatedBPTT(1) times. So no rule's step is faster than

    floor = t(TruncatedBPTT(1)) + 2 * trace bytes / W,

and `floor / t(BPTT)` is the best `etrace_vs_bptt` a D_RTRL rule could reach here.

The floor holds for a rule that keeps that per-position trace. Where D_t is structurally
zero (this net in the diagonal scope) the trace is its instantaneous term, and the
default lifting keeps it as its two factors (`_patch_op`, `factored=True`): B * S *
(in + out) floats a layer, no trace-sized pass at all, and the step runs below the floor.

Printed, all measured in this process (times are the fastest of `--repeats`
interleaved calls of `value_and_grad(Supervised(R))`, per rollout step): the per-position
trace's bytes, W, BPTT, TruncatedBPTT(1), D_RTRL with the default lifting
(`_lift.KERNEL_ORDER`: the factored trace), with the per-position trace of the same
primitive (`kernel_order='patch_op'`) and, with `--with-etp-conv`, with braintrace's own
`etp_conv` over the patches (`kernel_order='patches'`), the floor and the ratios.
`--profile` adds XLA's per-operation times of one default D_RTRL call (jax.profiler,
perfetto trace), largest first.

Usage: python benchmarks/drtrl_floor.py [--size quick|medium|full] [--repeats R]
[--rollout R] [--profile] [--with-etp-conv]
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import pdequinox as pdeqx

from online_emulate.emulators import _lift, adapt
from online_emulate.estimators import BPTT, ETrace, TruncatedBPTT
from online_emulate.sample_data import get_problem

sys.path.insert(0, str(Path(__file__).resolve().parent))
from online_speed import SIZES, _window  # noqa: E402
from online_streaming import _min_times  # noqa: E402


_CONTAINERS = ("$", "Slinky", "PjitFunction", "while", "Parse", "Handle", "Allocate")


def _trace_bytes(model, data):
    """Bytes of the D_RTRL learner's carried States other than the field (the traces,
    plus the inner layers' hidden states, which are small), as the current lifting
    (`_lift.KERNEL_ORDER`) keeps them."""
    adapter = adapt(model, state_ndim=data.ndim - 2)
    runner = ETrace("d_rtrl").runner(adapter, (data.shape[0], *data.shape[2:]))
    return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(runner.aux_zeros))


def _stream(elements):
    """One in-place `v + 1` over `elements` float32 values (a read and a write of each),
    as `_roofline.stream_gbs` times it, to be timed beside the steps (same load)."""
    add = jax.jit(lambda v: v + 1.0, donate_argnums=0)
    box = [jax.block_until_ready(add(jnp.ones((elements,), jnp.float32)))]

    def once():
        box[0] = add(box[0])
        return box[0]
    return once


def _profile(fn, steps, top=16):
    """XLA's per-operation time of one call of `fn`, ms per rollout step, largest first."""
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            jax.block_until_ready(fn())
        path = sorted(glob.glob(folder + "/**/*.trace.json.gz", recursive=True))[-1]
        events = json.load(gzip.open(path))["traceEvents"]
    total = collections.Counter()
    for e in events:
        # the kernels only: not the Python frames, the runtime's and the loop's spans
        name = e.get("name", "")
        if e.get("ph") == "X" and "::" not in name and not name.startswith(_CONTAINERS):
            total[name] += e.get("dur", 0)
    print(f"## XLA operations of one D_RTRL call, ms per step (top {top})")
    for name, us in total.most_common(top):
        print(f"{us / 1e3 / steps:9.3f}  {name}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=tuple(SIZES), default="full")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rollout", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--with-etp-conv", action="store_true")
    args = parser.parse_args()
    width, depth, N, B, _ = SIZES[args.size]
    R = args.rollout
    data = jnp.asarray(get_problem("burgers_1d", num_points=N).make_data(
        B, R + 1, jax.random.PRNGKey(0)))
    net = pdeqx.arch.ConvNet(1, 1, 1, hidden_channels=width, depth=depth,
                             activation=jax.nn.relu, boundary_mode="periodic",
                             key=jax.random.PRNGKey(0))
    fns = {"BPTT()": _window(BPTT(), net, data, R),
           "TruncatedBPTT(1)": _window(TruncatedBPTT(1), net, data, R)}
    default = dict(_lift.KERNEL_ORDER)
    orders = [default["d_rtrl"], "patch_op"] + (["patches"] if args.with_etp_conv else [])
    for order in orders:
        _lift.KERNEL_ORDER = {**default, "d_rtrl": order}
        fns[f"ETrace('d_rtrl'), {order}"] = _window(ETrace("d_rtrl"), net, data, R)
        if order == "patch_op":
            trace = _trace_bytes(net, data)  # the per-position trace the floor is about
        if order == default["d_rtrl"]:
            kept = _trace_bytes(net, data)
    _lift.KERNEL_ORDER = default
    elements = max(trace // 4, 1)
    *steps, add = _min_times([*fns.values(), _stream(elements)], args.repeats)
    times = dict(zip(fns, (1e3 * t / R for t in steps)))
    gbs = 8 * elements / add / 1e9
    print(f"## D_RTRL floor: pdequinox ConvNet {width} ch x {depth + 1}, N={N}, B={B}, "
          f"Supervised({R}); {jax.default_backend()} backend")
    print(f"per-position trace bytes per step: {trace / 1e6:.1f} MB ({default['d_rtrl']} "
          f"keeps {kept / 1e6:.1f} MB); streaming bandwidth at that size (timed with the "
          f"steps): {gbs:.1f} GB/s")
    for name, t in times.items():
        print(f"{name:40s} {t:9.2f} ms/step  {t / times['BPTT()']:6.2f}x BPTT")
    passes = {n: 1e3 * n * trace / (gbs * 1e9) for n in (2, 3)}
    floor = times["TruncatedBPTT(1)"] + passes[2]
    print(f"trace passes at bandwidth: 2 -> {passes[2]:.2f} ms, 3 -> {passes[3]:.2f} ms")
    print(f"floor of a per-position trace = TruncatedBPTT(1) + 2 passes = {floor:.2f} "
          f"ms/step; its best etrace_vs_bptt = {floor / times['BPTT()']:.2f}")
    if args.profile:
        _profile(fns[f"ETrace('d_rtrl'), {default['d_rtrl']}"], R)


if __name__ == "__main__":
    main()
