"""APEBench's pipeline against online_emulate, side by side, each library in a fresh process.

APEBench trains with trainax on pdequinox networks and exponax data. Both pipelines here
train the same pdequinox `ConvNet(D, C, C, hidden_channels=26, depth=8, relu, periodic)`
from the same initial weights on the same data, with adam under optax's warmup-cosine
schedule (0 -> 1e-3 over the first quarter of the steps, cosine decay to the end), batch
20, and evaluate APEBench's test metric: the per-step mean nRMSE over the test
trajectories, summarised by its geometric mean over steps 1..100.

Scenarios (APEBench's "difficulty" definitions, rebuilt here with exponax):

* burgers_1d: diff-Burgers, `DifficultyConvectionStepper(1, 160, linear_difficulties=
  (0, 0, 1.5, 0, 0), convection_difficulty=1.5, conservative=True)`; initial conditions
  truncated Fourier series (cutoff 5, zero mean, max one); 30 training trajectories of
  50 steps (train seed 0), 30 test trajectories of 200 steps (test seed 773).
* burgers_2d: the same scenario at 64 x 64 (2 velocity channels), a 2-D ConvNet; 10 test
  trajectories of 100 steps (the steps the summary reads).

Each row runs one library in a fresh `python` process and reports: import, data,
compile + train (the first call of the trainer, `--steps` steps), test rollout, their
sum (the whole run), and the steady time per step (a second call of a trainer of
`--steady-steps` steps; wall clock). The same run measures the machine's attainable peak
(a large float32 matmul, GFLOP/s; a streaming add over 256 MiB arrays, GB/s) and the
FLOPs and bytes of one training step from XLA's `cost_analysis` of a plain jitted step
(loss, gradient and adam update of the same network, the work both libraries must do),
and prints each row's fraction of that roofline:

    roofline time = max(flops / peak_flops, bytes / peak_bandwidth),
    fraction      = roofline time / steady time per step.

    python benchmarks/vs_apebench.py [--steps 2000] [--steps-2d 200] [--rollouts 1 5]
        [--steady-steps 50] [--steady-steps-2d 5] [--scenarios burgers_1d burgers_2d]
        [--quick] [--breakdown]

`--quick` (a smoke test: tiny network, tiny grids, a few steps) runs in well under a
minute per row. The last line is `speedup_vs_apebench=<worst ratio>`, the smallest of the
APEBench / online_emulate ratios of every row (whole run and steady step).
"""

import time

_T0 = time.perf_counter()  # before any heavy import: the whole run starts here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

LIBRARIES = ("apebench", "online_emulate")
TEST_SEED, TRAIN_SEED, INIT_SEED, ORDER_SEED = 773, 0, 73, 42
SUMMARY_STEPS = 100


# --------------------------------------------------------------- the setting
def setting(args, scenario):
    """The sizes of one scenario (plain numbers: they are passed to the workers)."""
    quick = args.quick
    dims = 2 if scenario == "burgers_2d" else 1
    if quick:
        n, width, depth = (16 if dims == 2 else 32), 4, 2
        train, horizon, test, test_steps = 4, 10, 2, SUMMARY_STEPS
    elif dims == 2:
        # 10 test trajectories of the 100 steps the summary reads (30 x 200 as in 1-D
        # would cost more than the training on a 2-core CPU)
        n, width, depth = 64, 26, 8
        train, horizon, test, test_steps = 30, 50, 10, SUMMARY_STEPS
    else:
        n, width, depth = 160, 26, 8
        train, horizon, test, test_steps = 30, 50, 30, 200
    steps = args.steps_2d if dims == 2 else args.steps
    steady = args.steady_steps_2d if dims == 2 else args.steady_steps
    return {"scenario": scenario, "dims": dims, "n": n, "width": width, "depth": depth,
            "train": train, "horizon": horizon, "test": test, "test_steps": test_steps,
            "steps": steps, "steady_steps": steady, "batch": 20}


def make_data(s):
    """(train, test) trajectories of the scenario, by exponax as APEBench makes them."""
    import exponax as ex
    import jax

    stepper = ex.stepper.generic.DifficultyConvectionStepper(
        s["dims"], s["n"], linear_difficulties=(0.0, 0.0, 1.5, 0.0, 0.0),
        convection_difficulty=1.5, conservative=True, order=2,
        dealiasing_fraction=2 / 3, num_circle_points=16, circle_radius=1.0)
    one = ex.ic.RandomTruncatedFourierSeries(s["dims"], cutoff=5, offset_range=(0.0, 0.0),
                                            max_one=True)
    ic = ex.ic.RandomMultiChannelICGenerator([one] * s["dims"])  # Burgers: D velocities

    def trajectories(num, horizon, seed):
        ics = ex.build_ic_set(ic, num_points=s["n"], num_samples=num,
                              key=jax.random.PRNGKey(seed))
        return jax.vmap(ex.rollout(stepper, horizon, include_init=True))(ics)

    train = trajectories(s["train"], s["horizon"], TRAIN_SEED)
    test = trajectories(s["test"], s["test_steps"], TEST_SEED)
    return jax.block_until_ready(train), jax.block_until_ready(test)


def make_net(s):
    import jax
    import pdequinox as pdeqx

    c = s["dims"]
    return pdeqx.arch.ConvNet(s["dims"], c, c, hidden_channels=s["width"], depth=s["depth"],
                              activation=jax.nn.relu, boundary_mode="periodic",
                              key=jax.random.PRNGKey(INIT_SEED))


def make_optimizer(steps):
    import optax

    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=1e-3, warmup_steps=max(1, steps // 4), decay_steps=steps)
    return optax.adam(schedule)


# ------------------------------------------------------------------ workers
def apebench_pipeline(s, rollout, steps):
    """`train(net) -> trained` and `test_curve(trained, test) -> per-step mean nRMSE`,
    as APEBench runs them (trainax trainer, exponax rollout and metric)."""
    import exponax as ex
    import jax
    import trainax as tx

    def trainer_for(train, num_steps):
        trainer = tx.trainer.SupervisedTrainer(
            train, optimizer=make_optimizer(num_steps), num_training_steps=num_steps,
            batch_size=s["batch"], num_rollout_steps=rollout, cut_bptt=False,
            time_level_weights=None)

        def run(net):
            trained, _ = trainer(net, key=jax.random.PRNGKey(ORDER_SEED), spawn_tqdm=False)
            return jax.block_until_ready(trained)

        return run

    def test_curve(net, test):
        pred = jax.vmap(ex.rollout(net, s["test_steps"], include_init=False))(test[:, 0])
        metric = lambda p, r: ex.metrics.mean_metric(ex.metrics.nRMSE, p, r)  # noqa: E731
        return jax.vmap(metric, in_axes=1)(pred, test[:, 1:])

    return trainer_for, test_curve


def ours_pipeline(s, rollout, steps):
    """The same with online_emulate's `SupervisedTrainer` and metrics."""
    import jax

    from online_emulate.metrics import nrmse
    from online_emulate.metrics import rollout as free_rollout
    from online_emulate.trainer import SupervisedTrainer

    def trainer_for(train, num_steps):
        trainer = SupervisedTrainer(
            train, optimizer=make_optimizer(num_steps), num_training_steps=num_steps,
            batch_size=s["batch"], num_rollout_steps=rollout, progress_bar=False)

        def run(net):
            trained, _ = trainer(net, key=ORDER_SEED)
            return jax.block_until_ready(trained)

        return run

    def test_curve(net, test):
        pred = free_rollout(net, test[:, 0], s["test_steps"])
        return nrmse(pred, test[:, 1:])

    return trainer_for, test_curve


def worker(args):
    """One row: a library, a scenario, a rollout; prints one JSON line."""
    s = json.loads(args.setting)
    pipeline = apebench_pipeline if args.worker == "apebench" else ours_pipeline
    marks = {"start": _T0}
    import jax  # noqa: F401  (the import is timed as part of the pipeline)
    import numpy as np

    trainer_for, test_curve = pipeline(s, args.rollout, s["steps"])
    marks["import"] = time.perf_counter()
    train, test = make_data(s)
    marks["data"] = time.perf_counter()
    net = make_net(s)
    trained = trainer_for(train, s["steps"])(net)
    marks["train"] = time.perf_counter()
    curve = np.asarray(test_curve(trained, test))
    marks["test"] = time.perf_counter()
    summary = float(np.exp(np.mean(np.log(curve[:SUMMARY_STEPS]))))
    # steady state: the second call of one trainer (its first call compiled)
    steady = trainer_for(train, s["steady_steps"])
    steady(net)
    t = time.perf_counter()
    steady(net)
    steady_s = (time.perf_counter() - t) / s["steady_steps"]
    row = {"import": marks["import"] - marks["start"], "data": marks["data"] - marks["import"],
           "train": marks["train"] - marks["data"], "test": marks["test"] - marks["train"],
           "whole": marks["test"] - marks["start"], "steady_ms": 1e3 * steady_s,
           "gmean_nrmse": summary}
    print("ROW " + json.dumps(row), flush=True)


def plain_step(s, r):
    """The training step both libraries must compute, written plainly for the network of
    `s`: `(step, loss, params, opt_state, windows_shape, static)`; `step(p, state, w)`
    is the supervised rollout loss, its gradient and an adam update."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    net = make_net(s)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    opt = optax.adam(1e-3)
    opt_state = opt.init(params)
    shape = (s["batch"], r + 1, s["dims"]) + (s["n"],) * s["dims"]

    def loss(p, w):
        model = eqx.combine(p, static)
        u, total = w[:, 0], 0.0
        for t in range(1, r + 1):
            u = jax.vmap(model)(u)
            total = total + jnp.mean((u - w[:, t]) ** 2)
        return total

    def step(p, state, w):
        value, grads = jax.value_and_grad(loss)(p, w)
        updates, state = opt.update(grads, state, p)
        return optax.apply_updates(p, updates), state, value

    return step, loss, params, opt_state, shape, opt


def cost_worker(args):
    """FLOPs and bytes of one training step (XLA's cost analysis of `plain_step`), for
    each scenario and rollout."""
    import jax
    import jax.numpy as jnp

    out = {}
    for scenario in args.scenarios:
        s = setting(args, scenario)
        for r in args.rollouts:
            step, _, params, opt_state, shape, _ = plain_step(s, r)
            windows = jax.ShapeDtypeStruct(shape, jnp.float32)
            compiled = jax.jit(step).lower(params, opt_state, windows).compile()
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            out[f"{scenario}/{r}"] = {"flops": float(cost.get("flops", 0.0)),
                                      "bytes": float(cost.get("bytes accessed", 0.0))}
    print("COST " + json.dumps(out), flush=True)


def best_ms(fn, *xs, repeats=5):
    import jax

    jax.block_until_ready(fn(*xs))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*xs))
        best = min(best, time.perf_counter() - t)
    return 1e3 * best


def breakdown_worker(args):
    """Where the compute of one step goes, from jitted parts of `plain_step` on the
    same shapes: forward, forward + backward, adam; and, apart, the network's
    convolutions (VALID, on already padded inputs) and its periodic paddings, each
    forward + backward, over the rollout."""
    import jax
    import jax.numpy as jnp

    out = {}
    for scenario in args.scenarios:
        s = setting(args, scenario)
        for r in args.rollouts:
            step, loss, params, opt_state, shape, opt = plain_step(s, r)
            w = jax.random.normal(jax.random.PRNGKey(0), shape, jnp.float32)
            grads = jax.grad(loss)(params, w)
            row = {"step": best_ms(jax.jit(step), params, opt_state, w),
                   "forward": best_ms(jax.jit(loss), params, w),
                   "grad": best_ms(jax.jit(jax.value_and_grad(loss)), params, w),
                   "adam": best_ms(jax.jit(lambda g, st, p: opt.update(g, st, p)),
                                   grads, opt_state, params)}
            net = make_net(s)
            d = s["dims"]
            space = "HWD"[:d]
            numbers = ("NC" + space, "OI" + space, "NC" + space)
            layers = [(layer.weight, layer.bias) for layer in net.layers]
            b = s["batch"]

            def convs(ws, xs):
                return sum(jnp.sum(jax.lax.conv_general_dilated(
                    x, wt, (1,) * d, "VALID", dimension_numbers=numbers))
                    for (wt, _), x in zip(ws, xs))

            def pads(xs):
                widths = ((0, 0), (0, 0)) + ((1, 1),) * d
                return sum(jnp.sum(jnp.pad(x, widths, mode="wrap") ** 2) for x in xs)

            padded = [jnp.ones((b, wt.shape[1]) + (s["n"] + 2,) * d) for wt, _ in layers]
            plain = [jnp.ones((b, wt.shape[1]) + (s["n"],) * d) for wt, _ in layers]
            conv_grad = jax.jit(jax.grad(convs, argnums=(0, 1)))
            pad_grad = jax.jit(jax.grad(pads))
            row["convolutions"] = r * best_ms(conv_grad, layers, padded)
            row["padding"] = r * best_ms(pad_grad, plain)
            out[f"{scenario}/{r}"] = row
    print("BREAKDOWN " + json.dumps(out), flush=True)


def peak_worker(args):
    """Attainable float32 matmul GFLOP/s and streaming memory bandwidth GB/s."""
    import jax
    import jax.numpy as jnp

    n = 512 if args.quick else 2048
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(mm(a, a))
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        jax.block_until_ready(mm(a, a))
        best = min(best, time.perf_counter() - t)
    gflops = 2 * n ** 3 / best / 1e9
    m = (2 ** 22 if args.quick else 2 ** 26)  # float32 elements: 16 MiB / 256 MiB
    # in place (donated): a fresh output buffer would time the page faults of its
    # first touch, not the memory
    add = jax.jit(lambda v: v + 1.0, donate_argnums=0)
    x = jax.block_until_ready(add(jnp.ones((m,), jnp.float32)))
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        x = jax.block_until_ready(add(x))
        best = min(best, time.perf_counter() - t)
    gbs = 2 * 4 * m / best / 1e9  # one read, one write
    print("PEAK " + json.dumps({"gflops": gflops, "gbs": gbs}), flush=True)


# --------------------------------------------------------------------- main
def run_child(args, extra, tag):
    cmd = [sys.executable, os.path.abspath(__file__)] + extra
    if args.quick:
        cmd.append("--quick")
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    for line in done.stdout.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    raise RuntimeError(f"{' '.join(extra)}: the worker failed:\n{done.stdout}\n{done.stderr[-4000:]}")


def common_flags(args):
    return (["--steps", str(args.steps), "--steps-2d", str(args.steps_2d),
             "--steady-steps", str(args.steady_steps),
             "--steady-steps-2d", str(args.steady_steps_2d), "--rollouts"]
            + [str(r) for r in args.rollouts] + ["--scenarios"] + list(args.scenarios))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps, 1-D")
    parser.add_argument("--steps-2d", type=int, default=200, help="training steps, 2-D")
    parser.add_argument("--steady-steps", type=int, default=50,
                        help="steps of the second call that times the steady step")
    parser.add_argument("--steady-steps-2d", type=int, default=5,
                        help="the same for the 2-D scenario")
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--scenarios", nargs="+", default=["burgers_1d", "burgers_2d"],
                        choices=["burgers_1d", "burgers_2d"])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny network and grids (set --steps yourself)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the parts of one step (forward, backward, adam, "
                             "convolutions, padding) and print where each row's time goes")
    parser.add_argument("--worker", choices=LIBRARIES + ("cost", "peak", "breakdown"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--rollout", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker in LIBRARIES:
        return worker(args)
    if args.worker == "cost":
        return cost_worker(args)
    if args.worker == "peak":
        return peak_worker(args)
    if args.worker == "breakdown":
        return breakdown_worker(args)

    flags = common_flags(args)
    peak = run_child(args, ["--worker", "peak"] + flags, "PEAK")
    cost = run_child(args, ["--worker", "cost"] + flags, "COST")
    print(f"machine: {os.cpu_count()} CPUs; attainable peak: float32 matmul "
          f"{peak['gflops']:.1f} GFLOP/s, streaming add {peak['gbs']:.1f} GB/s"
          f"{' (quick)' if args.quick else ''}")
    print(f"adam warmup-cosine 0 -> 1e-3 (warmup = steps/4), batch 20, steady = second call "
          f"of {args.steady_steps} steps ({args.steady_steps_2d} in 2-D); seconds unless "
          f"marked; each row a fresh process")
    head = (f"{'scenario':<10} | {'R':>2} | {'library':<14} | {'steps':>5} | {'import':>6} | "
            f"{'data':>5} | {'compile+train':>13} | {'test':>5} | {'whole':>7} | {'ms/step':>8} | "
            f"{'GFLOP/step':>10} | {'MB/step':>7} | {'roofline':>8} | {'gmean nRMSE':>11}")
    print(head)
    ratios, table = [], {}
    for scenario in args.scenarios:
        s = setting(args, scenario)
        for r in args.rollouts:
            c = cost[f"{scenario}/{r}"]
            roof_s = max(c["flops"] / (1e9 * peak["gflops"]), c["bytes"] / (1e9 * peak["gbs"]))
            rows = {}
            for lib in LIBRARIES:
                row = run_child(args, ["--worker", lib, "--rollout", str(r), "--setting",
                                       json.dumps(s)] + flags, "ROW")
                rows[lib] = row
                fraction = roof_s / (1e-3 * row["steady_ms"])
                print(f"{scenario:<10} | {r:>2} | {lib:<14} | {s['steps']:>5} | "
                      f"{row['import']:>6.1f} | {row['data']:>5.1f} | {row['train']:>13.1f} | "
                      f"{row['test']:>5.1f} | {row['whole']:>7.1f} | {row['steady_ms']:>8.2f} | "
                      f"{c['flops'] / 1e9:>10.3f} | {c['bytes'] / 1e6:>7.1f} | "
                      f"{100 * fraction:>7.1f}% | {row['gmean_nrmse']:>11.4f}", flush=True)
            table[f"{scenario}/{r}"] = (s, rows)
            a, o = rows["apebench"], rows["online_emulate"]
            whole, step = a["whole"] / o["whole"], a["steady_ms"] / o["steady_ms"]
            ratios += [whole, step]
            print(f"{scenario:<10} | {r:>2} | speed-up APEBench / online_emulate: whole run "
                  f"{whole:.2f}x, steady step {step:.2f}x; gmean nRMSE {a['gmean_nrmse']:.4f} "
                  f"vs {o['gmean_nrmse']:.4f}", flush=True)
    if args.breakdown:
        print_breakdown(args, flags, table)
    print(f"speedup_vs_apebench={min(ratios):.2f}")


def print_breakdown(args, flags, table):
    """Each row's time: compile (first call minus its steps at the steady rate), and per
    steady step the plain jitted step's parts plus what the library adds around them."""
    parts = run_child(args, ["--worker", "breakdown"] + flags, "BREAKDOWN")
    print("\nwhere the time goes (ms per step unless marked; the parts are jitted pieces "
          "of the plain step, timed alone: XLA fuses them differently inside the step)")
    print(f"{'scenario':<10} | {'R':>2} | {'plain step':>10} | {'forward':>7} | "
          f"{'backward':>8} | {'adam':>5} | {'convs f+b':>9} | {'pads f+b':>8} | "
          f"{'library':<14} | {'steady':>7} | {'framework':>9} | {'compile s':>9}")
    for key, (s, rows) in table.items():
        scenario, r = key.split("/")
        p = parts[key]
        for lib, row in rows.items():
            compile_s = row["train"] - s["steps"] * row["steady_ms"] / 1e3
            print(f"{scenario:<10} | {r:>2} | {p['step']:>10.2f} | {p['forward']:>7.2f} | "
                  f"{p['grad'] - p['forward']:>8.2f} | {p['adam']:>5.2f} | "
                  f"{p['convolutions']:>9.2f} | {p['padding']:>8.2f} | {lib:<14} | "
                  f"{row['steady_ms']:>7.2f} | {row['steady_ms'] - p['step']:>9.2f} | "
                  f"{compile_s:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
