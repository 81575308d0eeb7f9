"""Online learning speed by model kind: ETrace on a lifted pdequinox network against
this library's BPTT, and the built-in ConvNet of the same size.

Models: APEBench's network, pdequinox `ConvNet(1, 1, 1, hidden_channels=26, depth=8,
activation=relu, boundary_mode="periodic")` (9 convolutions; ETrace lifts them into
braintrace ETP ops, `emulators/_lift.py`), and the built-in `ConvNet(1, 1, 1,
hidden_channels=26, depth=9)`. Data: Burgers 1-D, N=160, batch 20.

Columns, per model and estimator:
* `vag ms/step`: `value_and_grad(Supervised(20))` per rollout step, compiled once (BPTT
  as a `jax.jit` of the estimator's own `value_and_grad`, ETrace as its brainstate-jitted
  window), fastest of `--repeats` interleaved runs;
* `stream ms/step`: an `OnlineTrainer` step (rollouts of 20 steps, an update every 5),
  per rollout step, and its ratio to `vag` (target <= 1.3);
* `temp MB T=20 / T=2000`: XLA's compiled temp bytes of `value_and_grad` at those
  rollout lengths (flat in T for the online estimators).

The last line is `etrace_vs_bptt=<worst of ETrace d_rtrl / es_d_rtrl per-step time over
BPTT's per-step time, on the pdequinox net>` (target <= 1.5). The machine may be shared:
times are minima of interleaved runs, and only ratios within one run are meaningful.

With `--fidelity`, first the `gradient_fidelity` of each ETrace variant against exact
BPTT on the pdequinox net at T = 5, 20, 100 (cosine, relative error, temp memory, time
per step), the rows of RESULTS.md.

Usage: python benchmarks/online_speed.py [--size quick|medium|full] [--quick] [--repeats R]
[--rollout R] [--long-T T] [--skip-coupled] [--fidelity] [--compare-kernel-order] [--no-table]
Sizes (channels, convolutions, N, batch, T of the long memory column): `full` (default,
the issue's) 26, 9, 160, 20, 2000; `medium` 16, 5, 80, 10, 500; `quick` (also `--quick`)
8, 3, 32, 4, 200. `--rollout` shortens `Supervised(20)` (and the trainer's rollouts) for a
run that must fit a time box; `--skip-coupled` leaves out the coupled-scope D_RTRL, the
slowest row, which the `etrace_vs_bptt` line does not read. `--compare-kernel-order` first
measures the lifted net's ETrace rows with the convolution kernels in the model's order
(as lifted before), in `(in, *space, out)` order and as width-1 convolutions over the
input's patches (`emulators/_lift.py`, `KERNEL_ORDER`);
`--no-table` stops after the comparisons.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
import pdequinox as pdeqx

from online_emulate.configuration import Supervised
from online_emulate.emulators import ConvNet, _lift, adapt
from online_emulate.estimators import BPTT, ETrace, compiled_temp_bytes, gradient_fidelity
from online_emulate.estimators._base import online_spec_for
from online_emulate.sample_data import get_problem
from online_emulate.trainer import OnlineTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from online_streaming import _min_times  # noqa: E402  (interleaved minima, one definition)

ROLLOUT = 20
# (channels, depth, N, batch, long T) per --size
SIZES = {"quick": (8, 2, 32, 4, 200), "medium": (16, 4, 80, 10, 500),
         "full": (26, 8, 160, 20, 2000)}


def _window(estimator, model, data, rollout):
    """A compiled `(loss, grads)` of `Supervised(rollout)` on `data`."""
    cfg = Supervised(rollout)
    adapter = adapt(model, state_ndim=data.ndim - 2)
    adapter.check_state(data.shape[2:], data.dtype)
    if estimator.jittable:
        fn = jax.jit(lambda p, d: estimator.value_and_grad(cfg, adapter.apply, p, d,
                                                            ref_stepper=None, residuum_fn=None))
        return lambda: fn(adapter.params, data)
    spec = online_spec_for(cfg, estimator, ref_stepper=None, residuum_fn=None)
    runner = estimator.runner(adapter, (data.shape[0], *data.shape[2:]))
    fn = runner.window_fn(cfg, spec, None, None)
    return lambda: fn(adapter.params, data)


def _stream(estimator, model, data, rollout):
    trainer = OnlineTrainer(optimizer=optax.adam(1e-6), rollout_length=rollout, num_rollouts=2,
                            update_every=5, estimator=estimator, reference_data=data,
                            batch_size=data.shape[0], progress_bar=False,
                            steps_per_call=2 * rollout)

    def run():
        trainer.reset()
        return trainer(model, key=0)[1].loss

    return run


def _temp_mb(estimator, model, data, steps):
    leaf = data[:, :1]
    long = jnp.broadcast_to(leaf, (data.shape[0], steps + 1, *data.shape[2:]))
    return compiled_temp_bytes(estimator, Supervised(steps), model, long) / 1e6


def compare_kernel_orders(model, data, estimators, rollout, repeats):
    """The lifted pdequinox net's `value_and_grad` per step with its convolutions'
    kernels read in the model's order (as lifted before), in `(in, *space, out)` order,
    and as width-1 convolutions over the input's patches (`_lift.KERNEL_ORDER`),
    measured interleaved in this process."""
    orders = _lift.KERNEL_ORDERS
    print(f"## lifted kernel order: vag ms/step, Supervised({rollout}); speed-ups over "
          "'model'")
    print(f"{'estimator':40s} " + " ".join(f"{o:>13s}" for o in orders) + "  speed-ups")
    for est in estimators:
        fns = []
        default = dict(_lift.KERNEL_ORDER)
        for order in orders:
            _lift.KERNEL_ORDER = dict.fromkeys(default, order)
            fns.append(_window(est, model, data, rollout))
        _lift.KERNEL_ORDER = default
        times = [1e3 * t / rollout for t in _min_times(fns, repeats)]
        print(f"{repr(est):40s} " + " ".join(f"{t:13.2f}" for t in times) + "  "
              + " / ".join(f"{times[0] / t:.2f}" for t in times[1:]), flush=True)


def fidelity(model, prob, batch, estimators, lengths=(5, 20, 100)):
    data = jnp.asarray(prob.make_data(batch, max(lengths) + 1, jax.random.PRNGKey(1)))
    rows = gradient_fidelity(model, lambda T: Supervised(T), data, estimators,
                             rollout_lengths=lengths)
    print("## gradient_fidelity against BPTT (pdequinox ConvNet)")
    print(f"{'estimator':40s} {'T':>4s} {'cosine':>8s} {'rel_error':>10s} {'temp MB':>9s} "
          f"{'ms/step':>8s}")
    for r in rows:
        print(f"{r['estimator']:40s} {r['T']:4d} {r['cosine']:8.4f} {r['rel_error']:10.4f} "
              f"{r['temp_bytes'] / 1e6:9.2f} {1e3 * r['time_per_step']:8.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=tuple(SIZES), default="full")
    parser.add_argument("--quick", action="store_true", help="the same as --size quick")
    parser.add_argument("--rollout", type=int, default=ROLLOUT)
    parser.add_argument("--skip-coupled", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-T", type=int, default=None)
    parser.add_argument("--fidelity", action="store_true")
    parser.add_argument("--compare-kernel-order", action="store_true")
    parser.add_argument("--no-table", action="store_true")
    args = parser.parse_args()
    width, depth, N, B, long_t = SIZES["quick" if args.quick else args.size]
    rollout = args.rollout
    long_t = args.long_T or long_t
    prob = get_problem("burgers_1d", num_points=N)
    data = jnp.asarray(prob.make_data(B, rollout + 1, jax.random.PRNGKey(0)))
    models = {
        "pdequinox ConvNet": pdeqx.arch.ConvNet(1, 1, 1, hidden_channels=width, depth=depth,
                                                activation=jax.nn.relu,
                                                boundary_mode="periodic",
                                                key=jax.random.PRNGKey(0)),
        "built-in ConvNet": ConvNet(1, 1, 1, hidden_channels=width, depth=depth + 1, key=0),
    }
    estimators = [BPTT(), ETrace("d_rtrl"), ETrace("d_rtrl", recurrence="coupled"),
                  ETrace("es_d_rtrl", decay=0.9)]
    if args.skip_coupled:
        estimators.pop(2)
    if args.fidelity:
        fidelity(models["pdequinox ConvNet"], prob, B, estimators[1:])
    if args.compare_kernel_order:
        compare_kernel_orders(models["pdequinox ConvNet"], data, estimators[1:], rollout,
                              args.repeats)
    if args.no_table:
        return
    print(f"## online speed: Burgers 1-D, N={N}, B={B}, {width} channels, {depth + 1} "
          f"convolutions, Supervised({rollout}); {jax.default_backend()} backend")
    print(f"{'model':18s} {'estimator':40s} {'vag ms/step':>12s} {'stream ms/step':>15s} "
          f"{'ratio':>6s} {'temp MB T=20':>13s} {f'T={long_t}':>10s}")
    per_step = {}
    for name, model in models.items():
        for est in estimators:
            fns = [_window(est, model, data, rollout)]
            if est.online:
                fns.append(_stream(est, model, data, rollout))
            times = _min_times(fns, args.repeats)
            vag = 1e3 * times[0] / rollout
            per_step[(name, repr(est))] = vag
            stream = 1e3 * times[1] / (2 * rollout) if est.online else float("nan")
            short = _temp_mb(est, model, data, rollout)
            long = _temp_mb(est, model, data, long_t)
            print(f"{name:18s} {repr(est):40s} {vag:12.2f} {stream:15.2f} "
                  f"{stream / vag:6.2f} {short:13.2f} {long:10.2f}", flush=True)
    bptt = per_step[("pdequinox ConvNet", repr(BPTT()))]
    worst = max(per_step[("pdequinox ConvNet", repr(e))] for e in
                (ETrace("d_rtrl"), ETrace("es_d_rtrl", decay=0.9)))
    print(f"etrace_vs_bptt={worst / bptt:.2f}")


if __name__ == "__main__":
    main()
