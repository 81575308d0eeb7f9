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
* burgers_2d: the same scenario on an `--n-2d` x `--n-2d` grid (the issue's 64 by default;
  2 velocity channels), a 2-D ConvNet; 10 test trajectories of 100 steps (the steps the
  summary reads).

Each row runs one library in a fresh `python` process and reports: import, data,
compile + train (the first call of the trainer, `--steps` steps), test rollout, their
sum (the whole run), and the steady time per step (a second call of a trainer of
`--steady-steps` steps; wall clock). Three rows per scenario and rollout: APEBench
(trainax), online_emulate's `SupervisedTrainer` on the pdequinox net, and the same
trainer on its built-in `ConvNet` holding the same weights (the user-model row: a user's
network should train within 1.2x of the built-in one).

The roofline (`_roofline.py`): the same run measures the machine's attainable peak (a
2048^2 float32 matmul, GFLOP/s; an in-place add over 256 MiB, GB/s), counts the FLOPs and
bytes of one step with XLA's `cost_analysis` of the program each row runs per step
(trainax's jitted `step_fn`; our trainer's compiled chunk, whose loop body XLA counts
once) and of a plain jitted equinox step (loss, gradient and adam update: the work all
must do), and prints per row the achieved GFLOP/s and GB/s, the arithmetic intensity and
the fraction of the bound:

    bound    = min(peak_flops, intensity * bandwidth),   intensity = flops / bytes,
    fraction = (flops / steady time per step) / bound.

    python benchmarks/vs_apebench.py [--steps 2000] [--steps-2d 200] [--rollouts 1 5]
        [--steady-steps 50] [--steady-steps-2d 5] [--n-2d 64]
        [--scenarios burgers_1d burgers_2d] [--no-builtin] [--quick] [--breakdown]

`--quick` (a smoke test: tiny network, tiny grids, a few steps) runs in well under a
minute per row. The last two lines are `user_model_vs_builtin=<worst ratio>` (pdequinox
net over built-in twin, steady step; absent with `--no-builtin`) and
`speedup_vs_apebench=<worst ratio>`, the smallest of the APEBench / online_emulate
ratios of every row (whole run and steady step).
"""

import time

_T0 = time.perf_counter()  # before any heavy import: the whole run starts here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

LIBRARIES = ("apebench", "online_emulate", "builtin")
LABELS = {"apebench": "apebench", "online_emulate": "online_emulate", "builtin": "ours, built-in"}
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
        n, width, depth = args.n_2d, 26, 8
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
def windows_of(s, rollout):
    """A minibatch of training windows `(batch, rollout + 1, C, *N)`, zeros (lowering
    needs only its shape; the quick setting has fewer trajectories than a batch)."""
    import jax.numpy as jnp

    return jnp.zeros((s["batch"], rollout + 1, s["dims"]) + (s["n"],) * s["dims"], jnp.float32)


def apebench_pipeline(s, rollout):
    """`trainer_for(train, steps) -> run` and `test_curve(trained, test) -> per-step
    mean nRMSE`, as APEBench runs them (trainax trainer, exponax rollout and metric).
    `run(net) -> trained` trains; `run.record()` (called before a timed call) and
    `run.cost(net) -> (flops, bytes)` give XLA's counts of the program one step runs."""
    import equinox as eqx
    import exponax as ex
    import jax
    import trainax as tx
    from _roofline import xla_cost

    def trainer_for(train, num_steps):
        trainer = tx.trainer.SupervisedTrainer(
            train, optimizer=make_optimizer(num_steps), num_training_steps=num_steps,
            batch_size=s["batch"], num_rollout_steps=rollout, cut_bptt=False,
            time_level_weights=None)

        def run(net):
            trained, _ = trainer(net, key=jax.random.PRNGKey(ORDER_SEED), spawn_tqdm=False)
            return jax.block_until_ready(trained)

        def cost(net):
            # the program trainax jits for every minibatch: loss, gradient, adam update
            opt_state = trainer.optimizer.init(eqx.filter(net, eqx.is_array))
            lowered = eqx.filter_jit(trainer.step_fn).lower(
                net, opt_state, windows_of(s, rollout))
            return xla_cost(lowered.compile().compiled)

        run.record, run.cost = (lambda: None), cost
        return run

    def test_curve(net, test):
        pred = jax.vmap(ex.rollout(net, s["test_steps"], include_init=False))(test[:, 0])
        metric = lambda p, r: ex.metrics.mean_metric(ex.metrics.nRMSE, p, r)  # noqa: E731
        return jax.vmap(metric, in_axes=1)(pred, test[:, 1:])

    return trainer_for, test_curve


def ours_pipeline(s, rollout):
    """The same with online_emulate's `SupervisedTrainer` and metrics."""
    import jax

    from _roofline import xla_cost
    from online_emulate.metrics import nrmse
    from online_emulate.metrics import rollout as free_rollout
    from online_emulate.trainer import SupervisedTrainer

    def trainer_for(train, num_steps):
        trainer = SupervisedTrainer(
            train, optimizer=make_optimizer(num_steps), num_training_steps=num_steps,
            batch_size=s["batch"], num_rollout_steps=rollout, progress_bar=False)
        seen = {}

        def run(net):
            trained, _ = trainer(net, key=ORDER_SEED)
            return jax.block_until_ready(trained)

        def record():
            # The trainer keeps its compiled chunk (a `while_loop` over up to
            # `steps_per_call` steps) in `_compiled`; wrap it to keep the arguments of
            # its next call, so that the same program can be lowered for XLA's counts.
            # A private attribute: this is a benchmark, not library code.
            signature, apply, chunk = trainer._compiled

            def recording(*a):
                seen["args"], seen["chunk"] = a, chunk
                return chunk(*a)

            trainer._compiled = (signature, apply, recording)

        def cost(net):
            if not hasattr(seen["chunk"], "lower"):
                return float("nan"), float("nan")
            args = jax.tree_util.tree_map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if hasattr(x, "shape") else x,
                seen["args"])
            # XLA counts a loop body once: the chunk's counts are those of one step
            # (minibatch gather, loss, gradient, adam, finiteness checks)
            return xla_cost(seen["chunk"].lower(*args).compile())

        run.record, run.cost = record, cost
        return run

    def test_curve(net, test):
        pred = free_rollout(net, test[:, 0], s["test_steps"])
        return nrmse(pred, test[:, 1:])

    return trainer_for, test_curve


def builtin_twin(s, net):
    """online_emulate's built-in `ConvNet` of the architecture of the pdequinox `net`,
    holding its weights: pdequinox's depth counts hidden layers (depth + 1
    convolutions), its weights are `(out, in, *kernel)` and the built-in ones
    `(*kernel, in, out)`."""
    import jax
    import jax.numpy as jnp

    from online_emulate.emulators import ConvNet

    d, c = s["dims"], s["dims"]
    twin = ConvNet(d, c, c, hidden_channels=s["width"], depth=s["depth"] + 1,
                   activation=jax.nn.relu, key=INIT_SEED)
    perm = tuple(range(2, 2 + d)) + (1, 0)
    for theirs, ours in zip(net.layers, twin.layers, strict=True):
        ours.weight.value = jnp.transpose(theirs.weight, perm)
        ours.bias.value = theirs.bias.reshape(-1)
    return twin


def worker(args):
    """One row: a library, a scenario, a rollout; prints one JSON line."""
    s = json.loads(args.setting)
    pipeline = apebench_pipeline if args.worker == "apebench" else ours_pipeline  # or built-in
    marks = {"start": _T0}
    import jax  # noqa: F401  (the import is timed as part of the pipeline)
    import numpy as np

    trainer_for, test_curve = pipeline(s, args.rollout)
    marks["import"] = time.perf_counter()
    train, test = make_data(s)
    marks["data"] = time.perf_counter()
    net = make_net(s)
    if args.worker == "builtin":
        net = builtin_twin(s, net)
    trained = trainer_for(train, s["steps"])(net)
    marks["train"] = time.perf_counter()
    curve = np.asarray(test_curve(trained, test))
    marks["test"] = time.perf_counter()
    summary = float(np.exp(np.mean(np.log(curve[:SUMMARY_STEPS]))))
    # steady state: the second call of one trainer (its first call compiled)
    steady = trainer_for(train, s["steady_steps"])
    steady(net)
    steady.record()
    t = time.perf_counter()
    steady(net)
    steady_s = (time.perf_counter() - t) / s["steady_steps"]
    flops, nbytes = steady.cost(net)  # after the timings: it compiles again
    row = {"import": marks["import"] - marks["start"], "data": marks["data"] - marks["import"],
           "train": marks["train"] - marks["data"], "test": marks["test"] - marks["train"],
           "whole": marks["test"] - marks["start"], "steady_ms": 1e3 * steady_s,
           "gmean_nrmse": summary, "flops": flops, "bytes": nbytes}
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
    from _roofline import xla_cost

    out = {}
    for scenario in args.scenarios:
        s = setting(args, scenario)
        for r in args.rollouts:
            step, _, params, opt_state, shape, _ = plain_step(s, r)
            windows = jax.ShapeDtypeStruct(shape, jnp.float32)
            flops, nbytes = xla_cost(jax.jit(step).lower(params, opt_state, windows).compile())
            out[f"{scenario}/{r}"] = {"flops": flops, "bytes": nbytes}
    print("COST " + json.dumps(out), flush=True)


def best_ms(fn, *xs, repeats=5):
    from _roofline import best_seconds

    return 1e3 * best_seconds(lambda: fn(*xs), repeats=repeats)


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
    from _roofline import matmul_gflops, stream_gbs

    quick = args.quick  # 512^2 and 16 MiB; else 2048^2 and 256 MiB (beyond the caches)
    peak = {"gflops": matmul_gflops(512 if quick else 2048),
            "gbs": stream_gbs(2 ** 22 if quick else 2 ** 26)}
    print("PEAK " + json.dumps(peak), flush=True)


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
             "--steady-steps-2d", str(args.steady_steps_2d), "--n-2d", str(args.n_2d),
             "--rollouts"]
            + [str(r) for r in args.rollouts] + ["--scenarios"] + list(args.scenarios))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps, 1-D")
    parser.add_argument("--steps-2d", type=int, default=200, help="training steps, 2-D")
    parser.add_argument("--steady-steps", type=int, default=50,
                        help="steps of the second call that times the steady step")
    parser.add_argument("--steady-steps-2d", type=int, default=5,
                        help="the same for the 2-D scenario")
    parser.add_argument("--n-2d", type=int, default=64,
                        help="grid points per axis of the 2-D scenario (the issue's 64)")
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--scenarios", nargs="+", default=["burgers_1d", "burgers_2d"],
                        choices=["burgers_1d", "burgers_2d"])
    parser.add_argument("--no-builtin", action="store_true",
                        help="skip the user-model row (the built-in ConvNet twin)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny network and grids (set --steps yourself)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the parts of one step (forward, backward, adam, "
                             "convolutions, padding) and print where each row's time goes")
    parser.add_argument("--worker", choices=LIBRARIES + ("cost", "peak", "breakdown"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--rollout", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    return parser.parse_args()


def main():
    args = parse_args()
    if args.worker in LIBRARIES:
        return worker(args)
    if args.worker == "cost":
        return cost_worker(args)
    if args.worker == "peak":
        return peak_worker(args)
    if args.worker == "breakdown":
        return breakdown_worker(args)

    flags = common_flags(args)
    libraries = LIBRARIES[:2] if args.no_builtin else LIBRARIES
    peak = run_child(args, ["--worker", "peak"] + flags, "PEAK")
    plain = run_child(args, ["--worker", "cost"] + flags, "COST")
    print(f"machine: {os.cpu_count()} CPUs; attainable peak: float32 matmul "
          f"{peak['gflops']:.1f} GFLOP/s, streaming add {peak['gbs']:.1f} GB/s"
          f"{' (quick)' if args.quick else ''}")
    print(f"adam warmup-cosine 0 -> 1e-3 (warmup = steps/4), batch 20, steady = second call "
          f"of {args.steady_steps} steps ({args.steady_steps_2d} in 2-D); seconds unless "
          f"marked; each row a fresh process; '{LABELS['builtin']}' = online_emulate's "
          f"built-in ConvNet holding the pdequinox net's weights")
    print(f"{'scenario':<10} | {'R':>2} | {'library':<14} | {'steps':>5} | {'import':>6} | "
          f"{'data':>5} | {'compile+train':>13} | {'test':>5} | {'whole':>7} | {'ms/step':>8} | "
          f"{'gmean nRMSE':>11}")
    ratios, user_ratios, table = [], [], {}
    for scenario in args.scenarios:
        s = setting(args, scenario)
        for r in args.rollouts:
            rows = {}
            for lib in libraries:
                row = run_child(args, ["--worker", lib, "--rollout", str(r), "--setting",
                                       json.dumps(s)] + flags, "ROW")
                rows[lib] = row
                print(f"{scenario:<10} | {r:>2} | {LABELS[lib]:<14} | {s['steps']:>5} | "
                      f"{row['import']:>6.1f} | {row['data']:>5.1f} | {row['train']:>13.1f} | "
                      f"{row['test']:>5.1f} | {row['whole']:>7.1f} | {row['steady_ms']:>8.2f} | "
                      f"{row['gmean_nrmse']:>11.4f}", flush=True)
            table[f"{scenario}/{r}"] = (s, rows)
            a, o = rows["apebench"], rows["online_emulate"]
            whole, step = a["whole"] / o["whole"], a["steady_ms"] / o["steady_ms"]
            ratios += [whole, step]
            print(f"{scenario:<10} | {r:>2} | speed-up APEBench / online_emulate: whole run "
                  f"{whole:.2f}x, steady step {step:.2f}x; gmean nRMSE {a['gmean_nrmse']:.4f} "
                  f"vs {o['gmean_nrmse']:.4f}", flush=True)
            if "builtin" in rows:
                b = rows["builtin"]
                user_ratios.append(o["steady_ms"] / b["steady_ms"])
                print(f"{scenario:<10} | {r:>2} | user model: pdequinox net / built-in twin "
                      f"in SupervisedTrainer, steady step {user_ratios[-1]:.2f}x (target <= "
                      f"1.2); gmean nRMSE {o['gmean_nrmse']:.4f} vs {b['gmean_nrmse']:.4f}",
                      flush=True)
    parts = run_child(args, ["--worker", "breakdown"] + flags, "BREAKDOWN") \
        if args.breakdown else None
    print_roofline(peak, plain, parts, table)
    if parts is not None:
        print_breakdown(parts, table)
    if user_ratios:
        print(f"user_model_vs_builtin={max(user_ratios):.2f}")
    print(f"speedup_vs_apebench={min(ratios):.2f}")


def print_roofline(peak, plain, parts, table):
    """Each row's place under the roofline, from XLA's counts of the program it runs per
    step; 'plain step' is the plain jitted equinox step (the work both must do), timed
    only with `--breakdown`; 'of plain bound' = the plain step's least time over the
    row's time (how far the row is from the least time of the useful work)."""
    from _roofline import roofline

    print(f"\nroofline (XLA cost_analysis of one step; peak {peak['gflops']:.1f} GFLOP/s, "
          f"{peak['gbs']:.1f} GB/s; bound = min(peak, flop/byte * bandwidth); "
          f"'bytes accessed' sums every fused kernel's operands, cache hits included, so "
          f"flop/byte is a lower bound and a step whose data stays in cache can pass 100%)")
    print(f"{'scenario':<10} | {'R':>2} | {'program':<14} | {'ms/step':>8} | {'GFLOP/step':>10} | "
          f"{'MB/step':>8} | {'flop/byte':>9} | {'GFLOP/s':>7} | {'GB/s':>6} | "
          f"{'bound GFLOP/s':>13} | {'least ms':>8} | {'roofline':>8} | {'of plain bound':>14}")
    for key, (s, rows) in table.items():
        scenario, r = key.split("/")
        c = plain[key]
        least_plain_ms = 1e3 * roofline(c["flops"], c["bytes"], 1.0, peak_gflops=peak["gflops"],
                                        peak_gbs=peak["gbs"])["bound_s"]
        entries = [("plain step", c["flops"], c["bytes"],
                    parts[key]["step"] if parts is not None else None)]
        entries += [(LABELS[lib], row["flops"], row["bytes"], row["steady_ms"])
                    for lib, row in rows.items()]
        for label, flops, nbytes, ms in entries:
            lead = f"{scenario:<10} | {r:>2} | {label:<14} | "
            if not (flops > 0 and nbytes > 0):  # nan: a program XLA could not count
                print(lead + f"{ms:>8.2f} | (no XLA count)", flush=True)
                continue
            # untimed (the plain step without --breakdown): the counts and bound only
            x = roofline(flops, nbytes, 1.0 if ms is None else ms / 1e3,
                         peak_gflops=peak["gflops"], peak_gbs=peak["gbs"])
            counts = (f"{flops / 1e9:>10.3f} | {nbytes / 1e6:>8.1f} | {x['intensity']:>9.2f} | ")
            bound = f"{x['bound_gflops']:>13.1f} | {1e3 * x['bound_s']:>8.2f} | "
            if ms is None:
                print(lead + f"{'-':>8} | " + counts + f"{'-':>7} | {'-':>6} | " + bound
                      + f"{'-':>8} | {'-':>14}", flush=True)
                continue
            print(lead + f"{ms:>8.2f} | " + counts + f"{x['gflops']:>7.1f} | {x['gbs']:>6.1f} | "
                  + bound + f"{100 * x['fraction']:>7.1f}% | "
                  f"{100 * least_plain_ms / ms:>13.1f}%", flush=True)


def print_breakdown(parts, table):
    """Each row's time: compile (first call minus its steps at the steady rate), and per
    steady step the plain jitted step's parts plus what the library adds around them."""
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
            # the steady rate is timed after the run, at another moment of a shared
            # machine: when it ran slower than the run's own steps the difference says
            # nothing about compilation, and a negative "compile" time is not printed
            shown = f"{compile_s:>9.1f}" if compile_s >= 0 else f"{'(noise)':>9}"
            print(f"{scenario:<10} | {r:>2} | {p['step']:>10.2f} | {p['forward']:>7.2f} | "
                  f"{p['grad'] - p['forward']:>8.2f} | {p['adam']:>5.2f} | "
                  f"{p['convolutions']:>9.2f} | {p['padding']:>8.2f} | {LABELS[lib]:<14} | "
                  f"{row['steady_ms']:>7.2f} | {row['steady_ms'] - p['step']:>9.2f} | "
                  f"{shown}", flush=True)


if __name__ == "__main__":
    main()
