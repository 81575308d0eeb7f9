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
a one-step pretrained emulator; ForwardRTRL, ETrace("d_rtrl") and ETrace("es_d_rtrl")
streamed with the carry persisting vs restarting at every update, against BPTT on windows
of `update_every` steps (Supervised windows cut from the same trajectories), all at an
equal number of updates; nRMSE at 20 and 200 steps on held-out trajectories.

Defaults of the study: horizon 1000, 10 rollouts, an update every 10 steps (1000 updates
per arm), 500 pretraining steps, seeds 0 and 1 (a seed sets the emulator's init key, the
training trajectories' key and the trainers' key; the pretraining pairs and the held-out
trajectories are shared). Arms (`--arms`): pretrained, rtrl, d_rtrl, es_d_rtrl (decay
0.9), bptt.

Usage: python benchmarks/online_streaming.py [--quick] [--study | --study-only]
    [--seeds S] [--horizon T] [--rollouts R] [--update-every U] [--pretrain P]
    [--pdes burgers_1d,ks_1d] [--arms pretrained,rtrl,d_rtrl,es_d_rtrl,bptt]
Last line (not with --study-only): `streaming_overhead_worst=<x>`.
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
from online_emulate.trainer import OnlineTrainer, SupervisedTrainer, TrainingDiverged


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


ARMS = ("pretrained", "rtrl", "d_rtrl", "es_d_rtrl", "bptt")


def _arm_estimator(arm):
    """(estimator, short label) of a streamed arm."""
    return {"rtrl": (ForwardRTRL(), "ForwardRTRL()"),
            "d_rtrl": (ETrace("d_rtrl"), "ETrace('d_rtrl')"),
            "es_d_rtrl": (ETrace("es_d_rtrl", decay=0.9), "ETrace('es_d_rtrl', decay=0.9)")}[arm]


def _train(fn):
    """Run a training call; (emulator, wall seconds, update count kept at a divergence or
    None). A diverged arm does not end the study: its last finite parameters are scored."""
    t0 = time.perf_counter()
    try:
        trained, _ = fn()
        stop = None
    except TrainingDiverged as exc:
        trained, stop = exc.emulator, exc.step
    return trained, time.perf_counter() - t0, stop


def _summaries(rows, seeds):
    """Mean (max - min) over all seeds and over the seeds where every arm trained without
    divergence and scored finite, then persisting minus restarting per estimator, paired
    by seed over those seeds."""
    clean = [s for s in seeds
             if all(r[s][3] is None and np.isfinite(r[s][1]) for r in rows.values())]
    for title, use in (("all seeds", seeds),
                       (f"seeds where every arm trained without divergence and scored finite "
                        f"{clean}", clean)):
        print(f"mean over {title} (max - min in brackets); div = seeds diverged")
        if not use:
            print("  (none)")
            continue
        for label, r in rows.items():
            v = np.asarray([r[s][:3] for s in use], dtype=float)
            m, spread = v.mean(0), v.max(0) - v.min(0)
            div = sum(r[s][3] is not None for s in use)
            print(f"     {label:48s} {m[0]:9.4g} ({spread[0]:7.3g}) {m[1]:10.4g} "
                  f"({spread[1]:7.3g}) {m[2]:7.1f} {div:>2d}/{len(use)}")
    if not clean:
        return
    print(f"persist_carry=True minus False, paired by seed over {clean} "
          f"(negative = persisting is better): mean [per seed]")
    for label in rows:
        if not label.endswith("persist_carry=True"):
            continue
        other = label.replace("=True", "=False")
        d = np.asarray([[rows[label][s][k] - rows[other][s][k] for k in (0, 1)]
                        for s in clean])
        per = lambda k: ", ".join(f"{x:+.3f}" for x in d[:, k])  # noqa: E731
        print(f"     {label[:-len(' persist_carry=True')]:32s} @20 {d[:, 0].mean():+.4f} "
              f"[{per(0)}]   @200 {d[:, 1].mean():+.4f} [{per(1)}]")


def study(args):
    """Per PDE and seed: pretrain a one-step model, then train every arm from it at an equal
    number of updates; print per-seed rows, then means over seeds and paired differences."""
    T, U = args.horizon, args.update_every
    B, N = 8, 64
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    for a in arms:
        if a not in ARMS:
            raise ValueError(f"--arms: expected names from {ARMS}, got {a!r}")
    seeds = list(range(args.seeds))
    updates = args.rollouts * (T // U)
    for name in args.pdes.split(","):
        prob = get_problem(name, num_points=N)
        # the pretraining pairs and the held-out trajectories are the same for every seed,
        # so seeds differ only in the init, the training trajectories and the trainers' keys
        pre = prob.make_data(16, 20, jax.random.PRNGKey(7))
        test = prob.make_data(8, 200, jax.random.PRNGKey(2))
        print(f"\n## {name}: {args.rollouts} rollouts of {T} steps, B={B}, N={N}, update every "
              f"{U} ({updates} updates per trained arm), adam 1e-4, pretrain {args.pretrain} "
              f"one-step adam 1e-3 steps, seeds {seeds}, nRMSE on 8 held-out trajectories; "
              f"s = wall seconds of the arm's training call (compilation included; for the "
              f"pretrained row, of pretraining); div = update at which the arm diverged "
              f"(non-finite loss; scored at its last finite parameters)")
        print(f"{'seed':>4s} {'method':48s} {'nRMSE@20':>9s} {'nRMSE@200':>10s} {'s':>7s} "
              f"{'div':>5s}", flush=True)
        rows = {}

        def report(seed, label, emu, seconds, stop=None):
            apply, params = functional(emu)
            curve = np.asarray(nrmse(rollout(lambda u: apply(params, u), test[:, 0], 200),
                                     test[:, 1:]))
            rows.setdefault(label, {})[seed] = (curve[19], curve[199], seconds, stop)
            print(f"{seed:4d} {label:48s} {curve[19]:9.4f} {curve[199]:10.4g} {seconds:7.1f} "
                  f"{'-' if stop is None else stop:>5}", flush=True)

        for seed in seeds:
            # seed 0 keeps the keys of the earlier single-seed version of this study
            init = ConvNet(1, 1, 1, hidden_channels=8, depth=2, residual=True, key=seed)
            pretrained, seconds, _ = _train(lambda init=init, seed=seed: SupervisedTrainer(
                pre, num_rollout_steps=1, optimizer=optax.adam(1e-3),
                num_training_steps=args.pretrain, batch_size=16,
                progress_bar=False)(init, key=seed))
            if "pretrained" in arms:
                report(seed, "pretrained (one-step)", pretrained, seconds)
            train = np.asarray(prob.make_data(B * args.rollouts, T + 1,
                                              jax.random.PRNGKey(1 + 1000 * seed)))
            for arm in ("rtrl", "d_rtrl", "es_d_rtrl"):
                if arm not in arms:
                    continue
                est, est_label = _arm_estimator(arm)
                for persist in (True, False):
                    report(seed, f"{est_label} persist_carry={persist}", *_train(
                        lambda est=est, persist=persist, seed=seed, pretrained=pretrained,
                        train=train: OnlineTrainer(
                            optimizer=optax.adam(1e-4), rollout_length=T,
                            num_rollouts=args.rollouts, update_every=U, estimator=est,
                            reference_data=train, batch_size=B, persist_carry=persist,
                            progress_bar=False)(pretrained, key=seed)))
            if "bptt" in arms:
                report(seed, f"BPTT Supervised({U}) windows", *_train(
                    lambda seed=seed, pretrained=pretrained, train=train: SupervisedTrainer(
                        train, num_rollout_steps=U, optimizer=optax.adam(1e-4),
                        num_training_steps=updates, batch_size=B, estimator=BPTT(),
                        progress_bar=False)(pretrained, key=seed)))
        _summaries(rows, seeds)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short window, one repeat")
    ap.add_argument("--study", action="store_true", help="also run the long-horizon study")
    ap.add_argument("--study-only", action="store_true",
                    help="run the long-horizon study and skip the overhead table")
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--horizon", type=int, default=1000)
    ap.add_argument("--rollouts", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=2, help="study seeds 0 .. seeds-1")
    ap.add_argument("--pdes", default="burgers_1d,ks_1d")
    ap.add_argument("--arms", default=",".join(ARMS),
                    help=f"comma-separated study arms out of {','.join(ARMS)}")
    ap.add_argument("--update-every", type=int, default=10)
    ap.add_argument("--pretrain", type=int, default=500)
    args = ap.parse_args()
    args.window = args.window or (50 if args.quick else 200)
    args.repeats = args.repeats or (3 if args.quick else 7)
    if args.study_only:
        study(args)
        return
    worst = overhead(args)
    if args.study:
        study(args)
    print(f"streaming_overhead_worst={worst:.2f}")


if __name__ == "__main__":
    main()
