"""Train advection and Burgers emulators with BPTT and with each online estimator at an
equal number of updates; report nRMSE at rollout steps 20 and 200 on held-out initial
conditions, and the gradient-fidelity table (cosine / relative error to BPTT).
BPTT(checkpoint="binomial", num_checkpoints=2) is exact: its rows must match BPTT's
(same trained nRMSE up to float rounding, cosine 1, relative error ~1e-7) at a fixed
memory of two stored states per rollout.

Usage: python benchmarks/online_accuracy.py [--quick]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
import optax

from online_emulate.configuration import Supervised
from online_emulate.emulators import ConvNet, functional
from online_emulate.estimators import (BPTT, ETrace, ForwardRTRL, TruncatedBPTT,
                                       gradient_fidelity)
from online_emulate.metrics import nrmse, rollout
from online_emulate.sample_data import get_problem
from online_emulate.trainer import SupervisedTrainer


def train_and_test(train_data, test_data, make_emulator, estimator, *, R, updates, batch):
    """Train with the library's SupervisedTrainer (same data order for every estimator)
    and return the test nRMSE per rollout step."""
    trainer = SupervisedTrainer(
        train_data, num_rollout_steps=R, estimator=estimator, batch_size=batch,
        optimizer=optax.adam(optax.cosine_decay_schedule(3e-3, updates)),
        num_training_steps=updates, progress_bar=False,
    )
    trained, _ = trainer(make_emulator(), key=0)
    apply, params = functional(trained)
    horizon = test_data.shape[1] - 1
    preds = rollout(lambda u: apply(params, u), test_data[:, 0], horizon)
    return np.asarray(nrmse(preds, test_data[:, 1:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    N = 32 if args.quick else 64
    updates = 150 if args.quick else 1500
    R, batch = 5, 8
    make_emulator = lambda: ConvNet(1, 1, 1, hidden_channels=8, depth=2, residual=True, key=0)  # noqa: E731
    estimators = [BPTT(), BPTT(checkpoint="binomial", num_checkpoints=2), TruncatedBPTT(1),
                  ForwardRTRL(), ETrace("d_rtrl"), ETrace("d_rtrl", recurrence="coupled"),
                  ETrace("es_d_rtrl", decay=0.9)]
    for name in ["advection_1d", "burgers_1d"]:
        prob = get_problem(name, num_points=N)
        train_data = prob.make_data(16 if args.quick else 64, 50, jax.random.PRNGKey(1))
        test_data = prob.make_data(8, 200, jax.random.PRNGKey(2))
        print(f"\n## {name} (N={N}, {updates} updates, Supervised({R}) windows, batch {batch})")
        print(f"{'estimator':52s} {'nRMSE@20':>10s} {'nRMSE@200':>10s}")
        for est in estimators:
            curve = train_and_test(train_data, test_data, make_emulator, est, R=R,
                                   updates=updates, batch=batch)
            print(f"{repr(est)[:52]:52s} {curve[19]:10.4f} {curve[199]:10.4f}", flush=True)
        print(f"\ngradient fidelity at the initial parameters ({name}):")
        print(f"{'estimator':52s} {'T':>4s} {'cosine':>8s} {'rel_err':>9s} {'temp_B':>9s} {'us/step':>9s}")
        rows = gradient_fidelity(make_emulator(), lambda T: Supervised(T), train_data[:batch],
                                 estimators=estimators[1:], rollout_lengths=[1, 5, 20])
        for r in rows:
            print(f"{r['estimator'][:52]:52s} {r['T']:4d} {r['cosine']:8.4f} {r['rel_error']:9.2e} "
                  f"{r['temp_bytes']:9d} {r['time_per_step'] * 1e6:9.1f}", flush=True)


if __name__ == "__main__":
    main()
