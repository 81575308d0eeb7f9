"""Streaming online training: cost per step of OnlineTrainer against the same estimator's
`value_and_grad` over one long window, and (with --study) long-horizon training with
persisting vs restarting carries vs windowed BPTT.

Overhead (Burgers 1-D, residual ConvNet 8 channels, depth 2, B=8, N=64): the streaming
trainer with `update_every=1` (an optax update after every step, stored reference levels)
divided by the estimator's `value_and_grad(Supervised(W))` per step (4 rollouts of W
steps per trainer call, so the per-call Python work is part of the streaming cost). Both are measured in
this one process after compilation, fastest of `--repeats` interleaved runs (the
machine may be shared). The target is <= 1.3x.

Study (--study): rollouts of `--horizon` steps on Burgers and Kuramoto-Sivashinsky from
a one-step pretrained emulator; ForwardRTRL and ETrace("d_rtrl") streamed with the carry
persisting vs restarting at every update, against BPTT on windows of `update_every` steps
(Supervised windows cut from the same trajectories), all at an equal number of updates;
nRMSE at 20 and 200 steps on held-out trajectories.

Usage: python benchmarks/online_streaming.py [--quick] [--study]
Last line: `streaming_overhead_worst=<x>`.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax

from online_emulate.configuration import Supervised
from online_emulate.emulators import ConvNet, functional
from online_emulate.estimators import BPTT, ETrace, ForwardRTRL, TruncatedBPTT, value_and_grad
from online_emulate.metrics import nrmse, rollout
from online_emulate.sample_data import get_problem
from online_emulate.trainer import OnlineTrainer, SupervisedTrainer


def _min_times(fns, repeats):
    """Fastest of `repeats` runs of each function, the functions interleaved so that
    load from other processes hits them alike."""
    for fn in fns:
        jax.block_until_ready(fn())  # compile (and warm up)
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            ts.append(time.perf_counter() - t0)
    return [min(ts) for ts in times]


def overhead(args):
    N, B, W, R = 64, 8, args.window, 4
    prob = get_problem("burgers_1d", num_points=N)
    data = np.asarray(prob.make_data(B, W + 1, jax.random.PRNGKey(0)))
    emulator = ConvNet(1, 1, 1, hidden_channels=8, depth=2, residual=True, key=0)
    estimators = [TruncatedBPTT(1), ForwardRTRL(), ETrace("d_rtrl"),
                  ETrace("es_d_rtrl", decay=0.9)]
    print(f"## streaming overhead (Burgers 1-D, ConvNet 8ch depth 2 residual, B={B}, N={N}, "
          f"window W={W}, update_every=1, {R} rollouts of W steps per streaming call)")
    print(f"{'estimator':28s} {'vag ms/step':>12s} {'stream ms/step':>15s} {'ratio':>7s}")
    worst = 0.0
    for est in estimators:
        cfg = Supervised(W)
        if est.jittable:
            apply, params = functional(emulator)
            vag = jax.jit(lambda p, d, est=est: est.value_and_grad(cfg, apply, p, d))
            window = lambda: vag(params, data)  # noqa: E731
        else:
            window = lambda: value_and_grad(cfg, emulator, data, estimator=est)  # noqa: E731
        trainer = OnlineTrainer(optimizer=optax.adam(1e-5), rollout_length=W, num_rollouts=R,
                                update_every=1, estimator=est, reference_data=data,
                                batch_size=B, progress_bar=False, steps_per_call=W)

        def stream():
            trainer.reset()
            return trainer(emulator, key=0)[1].loss

        t_vag, t_stream = _min_times([window, stream], args.repeats)
        t_stream /= R
        ratio = t_stream / t_vag
        worst = max(worst, ratio)
        print(f"{repr(est)[:28]:28s} {1e3 * t_vag / W:12.3f} {1e3 * t_stream / W:15.3f} {ratio:7.2f}",
              flush=True)
    return worst


def study(args):
    T, U = args.horizon, args.update_every
    B, N = 8, 64
    make = lambda: ConvNet(1, 1, 1, hidden_channels=8, depth=2, residual=True, key=0)  # noqa: E731
    for name in ["burgers_1d", "ks_1d"]:
        prob = get_problem(name, num_points=N)
        pre = prob.make_data(16, 20, jax.random.PRNGKey(7))
        pretrained, _ = SupervisedTrainer(pre, num_rollout_steps=1, optimizer=optax.adam(1e-3),
                                          num_training_steps=args.pretrain, batch_size=16,
                                          progress_bar=False)(make(), key=0)
        train = np.asarray(prob.make_data(B * args.rollouts, T + 1, jax.random.PRNGKey(1)))
        test = prob.make_data(8, 200, jax.random.PRNGKey(2))
        updates = args.rollouts * (T // U)
        print(f"\n## {name}: {args.rollouts} rollouts of {T} steps, B={B}, update every {U} "
              f"({updates} updates), adam 1e-4")
        print(f"{'method':56s} {'nRMSE@20':>9s} {'nRMSE@200':>10s} {'s':>7s}")

        def report(label, emu, seconds):
            apply, params = functional(emu)
            curve = np.asarray(nrmse(rollout(lambda u: apply(params, u), test[:, 0], 200),
                                     test[:, 1:]))
            print(f"{label:56s} {curve[19]:9.4f} {curve[199]:10.4f} {seconds:7.1f}", flush=True)

        report("pretrained (one-step)", pretrained, 0.0)
        for est in [ForwardRTRL(), ETrace("d_rtrl")]:
            for persist in (True, False):
                t0 = time.perf_counter()
                trained, _ = OnlineTrainer(
                    optimizer=optax.adam(1e-4), rollout_length=T, num_rollouts=args.rollouts,
                    update_every=U, estimator=est, reference_data=train, batch_size=B,
                    persist_carry=persist, progress_bar=False)(pretrained, key=0)
                report(f"{est!r} persist_carry={persist}", trained, time.perf_counter() - t0)
        t0 = time.perf_counter()
        trained, _ = SupervisedTrainer(train, num_rollout_steps=U, optimizer=optax.adam(1e-4),
                                       num_training_steps=updates, batch_size=B,
                                       estimator=BPTT(), progress_bar=False)(pretrained, key=0)
        report(f"BPTT Supervised({U}) windows", trained, time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short window, one repeat")
    ap.add_argument("--study", action="store_true", help="also run the long-horizon study")
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--horizon", type=int, default=1000)
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--update-every", type=int, default=10)
    ap.add_argument("--pretrain", type=int, default=500)
    args = ap.parse_args()
    args.window = args.window or (50 if args.quick else 200)
    args.repeats = args.repeats or (3 if args.quick else 7)
    worst = overhead(args)
    if args.study:
        study(args)
    print(f"streaming_overhead_worst={worst:.2f}")


if __name__ == "__main__":
    main()
