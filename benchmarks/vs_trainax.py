"""The trainax quickstart, trained with trainax and with online_emulate in one process.

Prints the learned stencil's distance to the first-order-upwind stencil [1+CFL, -CFL]
for rollouts 1 / 5 / 20 with both libraries, and the steady-state wall time per 1000
training steps after compilation: each library's trainer is called once to compile
(and that run gives the stencil error), then the same trainer object is called again
for the same number of steps and timed; both libraries cache their compiled step
between calls of one trainer.
`speedup_vs_trainax=<trainax time / ours>` is the quickstart's ratio (median of the
repeats, summed over the three rollout lengths).

Then the realistic network (the APEBench default family: 9 periodic convolutions of
kernel 3, 26 hidden channels, relu, bias; 1-D Burgers N=160, batch 20, adam 1e-3):
trainax with an equinox net of the same architecture against online_emulate's
`ConvNet(1, 1, 1, hidden_channels=26, depth=9)` (and the same network trained by
online_emulate as the equinox net and as a user's brainstate module) for rollouts 1
and 5 with every estimator that applies, steady-state ms/step (second call of the
same trainer). The last line is `speedup_vs_trainax_realistic=<the smaller of the
BPTT ratios of rollouts 1 and 5>` (wall clock; the table also gives process CPU
time, steadier when other jobs share the machine).

Finally the whole process, as a user meets it: the README quickstart (its first Python
block, run as written) and trainax's README quickstart, each as a fresh
`python -c ...` (import + data + compile + 3 x 1000 steps), alternated `--repeats`
times; `speedup_vs_trainax_whole_process=<median trainax wall / median ours>` (jax's
defaults; an extra row shows both with jax's persistent compilation cache switched on
and warm, an opt-in the README describes).

Needs the bench extra (`pip install -e ".[bench]"`); installs nothing itself.

    python benchmarks/vs_trainax.py [--repeats 3] [--steps 1000] [--realistic-steps 200]
    python benchmarks/vs_trainax.py --quick   # a few steps of everything
    python benchmarks/vs_trainax.py --realistic-only
    python benchmarks/vs_trainax.py --whole-process-only [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import brainstate
import braintrace
import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import trainax as tx

from online_emulate.emulators import ConvNet, LinearStencil, get_params
from online_emulate.estimators import BPTT, ETrace, TruncatedBPTT
from online_emulate.estimators._forward_rtrl import rtrl_memory_bytes
from online_emulate.sample_data import advection_1d_periodic, burgers_1d
from online_emulate.trainer import SupervisedTrainer

CFL = -0.75
FOU = jnp.array([1 + CFL, -CFL])
ROLLOUTS = (1, 5, 20)


def trainax_trainer(data, r, steps):
    conv = eqx.nn.Conv1d(1, 1, 2, padding="SAME", padding_mode="CIRCULAR", use_bias=False, key=jax.random.PRNGKey(73))
    trainer = tx.trainer.SupervisedTrainer(data, num_rollout_steps=r, optimizer=optax.adam(1e-2), num_training_steps=steps, batch_size=32)

    def run():
        trained, _ = trainer(conv, key=jax.random.PRNGKey(42), spawn_tqdm=False)
        jax.block_until_ready(trained.weight)
        return float(jnp.linalg.norm(trained.weight[0, 0] - FOU))

    return run


def ours_trainer(data, r, steps):
    emulator = LinearStencil(1, 1, 1, kernel_size=2, key=73)
    trainer = SupervisedTrainer(data, num_rollout_steps=r, optimizer=optax.adam(1e-2), num_training_steps=steps, batch_size=32, progress_bar=False)

    def run():
        trainer.reset()  # same starting point every call; the compiled program is kept
        trained, _ = trainer(emulator, key=42)
        return float(jnp.linalg.norm(trained.stencil[0, 0] - FOU))

    return run


def timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


# The realistic network (issue 15): APEBench's default conv family on 1-D Burgers.
REAL_N, REAL_BATCH, REAL_WIDTH, REAL_DEPTH = 160, 20, 26, 9
REAL_ROLLOUTS = (1, 5)


def realistic_data(key=jax.random.PRNGKey(0)):
    """50 Burgers trajectories of 50 steps on N=160 (about APEBench's default set)."""
    return burgers_1d(REAL_N, 50, temporal_horizon=50, key=key)


class EqxConvNet(eqx.Module):
    """The equinox twin of `ConvNet(1, 1, 1, hidden_channels=26, depth=9)`."""

    layers: list

    def __init__(self, key):
        widths = [1] + [REAL_WIDTH] * (REAL_DEPTH - 1) + [1]
        keys = jax.random.split(key, REAL_DEPTH)
        self.layers = [
            eqx.nn.Conv1d(widths[i], widths[i + 1], 3, padding="SAME", padding_mode="CIRCULAR", key=keys[i])
            for i in range(REAL_DEPTH)
        ]

    def __call__(self, u):
        for layer in self.layers[:-1]:
            u = jax.nn.relu(layer(u))
        return self.layers[-1](u)


class BrainstateConvNet(brainstate.nn.Module):
    """The same network as a user's brainstate module: `braintrace.nn.Conv1d` layers on
    channel-last batches `(B, N, C)`, periodic padding written by hand."""

    def __init__(self):
        super().__init__()
        widths = [1] + [REAL_WIDTH] * (REAL_DEPTH - 1) + [1]
        self.layers = [braintrace.nn.Conv1d((REAL_N + 2, widths[i]), widths[i + 1], 3, padding="VALID",
                                            b_init=jnp.zeros(widths[i + 1]))
                       for i in range(REAL_DEPTH)]

    def __call__(self, u):
        for i, layer in enumerate(self.layers):
            u = layer(jnp.concatenate([u[:, -1:], u, u[:, :1]], axis=1))
            if i < REAL_DEPTH - 1:
                u = jax.nn.relu(u)
        return u


def realistic_trainax(data, r, steps):
    net = EqxConvNet(jax.random.PRNGKey(73))
    trainer = tx.trainer.SupervisedTrainer(data, num_rollout_steps=r, optimizer=optax.adam(1e-3), num_training_steps=steps, batch_size=REAL_BATCH)

    def run():
        trained, losses = trainer(net, key=jax.random.PRNGKey(42), spawn_tqdm=False)
        jax.block_until_ready(trained)
        return float(losses[-1])

    return run


def realistic_ours(data, r, steps, estimator, model=None):
    """Our trainer on the built-in `ConvNet`, or on `model` (e.g. the equinox twin)."""
    if model is None:
        model = ConvNet(1, 1, 1, hidden_channels=REAL_WIDTH, depth=REAL_DEPTH, key=73)
    trainer = SupervisedTrainer(data, num_rollout_steps=r, optimizer=optax.adam(1e-3), num_training_steps=steps, batch_size=REAL_BATCH, estimator=estimator, progress_bar=False)

    def run():
        trainer.reset()
        _, history = trainer(model, key=42)
        return float(history.loss[-1])

    return run


def realistic_estimators(r):
    """(label, estimator or None, reason when skipped) for a rollout of r steps."""
    rows = [("BPTT()", BPTT(), None), ("BPTT() + equinox net", BPTT(), None),
            ("BPTT() + user brainstate net", BPTT(), None),
            ("BPTT(checkpoint='sqrt')", BPTT(checkpoint="sqrt"), None),
            ("BPTT(checkpoint='binomial', n=4)", BPTT(checkpoint="binomial", num_checkpoints=4), None),
            ("TruncatedBPTT(1)", TruncatedBPTT(1), None)]
    params = get_params(ConvNet(1, 1, 1, hidden_channels=REAL_WIDTH, depth=REAL_DEPTH))
    need = rtrl_memory_bytes(params, (REAL_BATCH, 1, REAL_N), jnp.float32)
    num_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    rows.append(("ForwardRTRL()", None,
                 f"skipped: J is B*H*P = {need / 2**20:.0f} MiB and each step costs P = {num_params} "
                 "forward-mode directions"))
    rows.append(("ETrace('d_rtrl')", ETrace("d_rtrl"), None))
    return rows


def steady_ms(run, steps):
    """(wall, process CPU) ms per step of a second call. CPU time counts every thread of
    this process, so it is less sensitive than wall time to other jobs on the machine."""
    run()  # compiles
    cpu = time.process_time()
    wall = timed(run)
    return 1e3 * wall / steps, 1e3 * (time.process_time() - cpu) / steps


def realistic(steps):
    """Table of steady-state ms/step; returns the smaller BPTT ratio of rollouts 1 and 5."""
    data = realistic_data()
    print(f"\nrealistic network: {REAL_DEPTH} periodic convs k=3, {REAL_WIDTH} channels, relu, bias; "
          f"Burgers 1-D N={REAL_N}, batch {REAL_BATCH}, adam 1e-3, {steps} steps per call")
    print("steady-state ms/step (second call of the same trainer; includes gather + update);")
    print("wall clock and process CPU time (all threads); ratios = trainax / ours")
    print(f"{'rollout':>8} | {'library / estimator':<48} | {'wall ms':>8} | {'cpu ms':>8} | {'wall ratio':>10} | {'cpu ratio':>9}")
    ratios = {}
    for r in REAL_ROLLOUTS:
        t_tx, c_tx = steady_ms(realistic_trainax(data, r, steps), steps)
        print(f"{r:>8} | {'trainax 0.0.2 + equinox net':<48} | {t_tx:>8.2f} | {c_tx:>8.2f} | {'':>10} | {'':>9}", flush=True)
        for label, estimator, reason in realistic_estimators(r):
            name = f"online_emulate {label}"
            if estimator is None:
                print(f"{r:>8} | {name:<48} | {reason}", flush=True)
                continue
            # eligibility traces cost ~10x a BPTT step here: time fewer steps
            n = max(steps // 20, 5) if isinstance(estimator, ETrace) else steps
            model = (EqxConvNet(jax.random.PRNGKey(73)) if "equinox" in label
                     else BrainstateConvNet() if "brainstate" in label else None)
            t, c = steady_ms(realistic_ours(data, r, n, estimator, model), n)
            note = "" if n == steps else f"   ({n} steps per call)"
            print(f"{r:>8} | {name:<48} | {t:>8.2f} | {c:>8.2f} | {t_tx / t:>10.2f} | {c_tx / c:>9.2f}{note}", flush=True)
            if label == "BPTT()":
                ratios[r] = t_tx / t
    return min(ratios.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--realistic-steps", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="1 repeat, 100 / 20 steps")
    parser.add_argument("--realistic-only", action="store_true", help="only the realistic network's table")
    parser.add_argument("--whole-process-only", action="store_true",
                        help="only the whole-process table")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps, args.realistic_steps = 1, 100, 20
    if args.realistic_only:
        print(f"speedup_vs_trainax_realistic={realistic(args.realistic_steps):.2f}")
        return
    if args.whole_process_only:
        print(f"speedup_vs_trainax_whole_process={whole_process(args.repeats):.2f}")
        return
    quick = quickstart(args)
    whole = whole_process(args.repeats)
    real = realistic(args.realistic_steps)
    print(f"speedup_vs_trainax={quick:.2f}")
    print(f"speedup_vs_trainax_whole_process={whole:.2f}")
    print(f"speedup_vs_trainax_realistic={real:.2f}")


def quickstart(args):
    """The quickstart table; returns the speed-up summed over the rollouts."""
    data = advection_1d_periodic(cfl=CFL, key=jax.random.PRNGKey(0))

    runs = {r: (trainax_trainer(data, r, args.steps), ours_trainer(data, r, args.steps)) for r in ROLLOUTS}
    print(f"stencil error |w - [1+CFL, -CFL]| after {args.steps} steps (adam 1e-2, batch 32)")
    print(f"{'rollout':>8} | {'trainax':>9} | {'online_emulate':>14}")
    for r, (tx_run, oe_run) in runs.items():  # first calls compile
        print(f"{r:>8} | {tx_run():>9.4f} | {oe_run():>14.4f}")

    scale = 1000.0 / args.steps
    per_r = {r: ([], []) for r in ROLLOUTS}
    for _ in range(args.repeats):
        for r, (tx_run, oe_run) in runs.items():
            per_r[r][0].append(scale * timed(tx_run))
            per_r[r][1].append(scale * timed(oe_run))
    print(f"\nsteady-state seconds per 1000 steps after compilation (median of {args.repeats})")
    print(f"{'rollout':>8} | {'trainax':>9} | {'online_emulate':>14} | {'ratio':>6}")
    for r in ROLLOUTS:
        t_tx, t_oe = (statistics.median(v) for v in per_r[r])
        print(f"{r:>8} | {t_tx:>9.3f} | {t_oe:>14.3f} | {t_tx / t_oe:>6.1f}")
    total_tx = [sum(per_r[r][0][i] for r in ROLLOUTS) for i in range(args.repeats)]
    total_oe = [sum(per_r[r][1][i] for r in ROLLOUTS) for i in range(args.repeats)]
    print(f"{'all':>8} | {statistics.median(total_tx):>9.3f} | {statistics.median(total_oe):>14.3f} |")
    equinox_model_row(data, args.steps, args.repeats)
    return statistics.median(total_tx) / statistics.median(total_oe)


TRAINAX_QUICKSTART = """
import jax, jax.numpy as jnp, equinox as eqx, optax, trainax as tx
CFL = -0.75
ref_data = tx.sample_data.advection_1d_periodic(cfl=CFL, key=jax.random.PRNGKey(0))
conv = eqx.nn.Conv1d(1, 1, 2, padding="SAME", padding_mode="CIRCULAR", use_bias=False,
                     key=jax.random.PRNGKey(73))
for r in (1, 5, 20):
    trainer = tx.trainer.SupervisedTrainer(ref_data, num_rollout_steps=r, optimizer=optax.adam(1e-2),
                                           num_training_steps=1000, batch_size=32)
    trained, _ = trainer(conv, key=jax.random.PRNGKey(42))
    print(r, jnp.linalg.norm(trained.weight - jnp.array([1 + CFL, -CFL])))
"""


def readme_quickstart() -> str:
    """The first Python block of README.md: the quickstart a user copies."""
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def whole_process(repeats):
    """Wall seconds of the two READMEs' quickstarts as fresh processes; returns the ratio.

    The headline is the default behaviour (no cache). An extra row shows jax's own
    persistent compilation cache, which a user may switch on (README, "Compilation
    cache"): both quickstarts again with `JAX_COMPILATION_CACHE_DIR` pointing at a folder
    that one earlier run of each filled.
    """
    scripts = {"trainax": TRAINAX_QUICKSTART, "online_emulate": readme_quickstart()}

    def run(code, env=None):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       env=None if env is None else dict(os.environ, **env))
        return time.perf_counter() - start

    seconds = {name: [] for name in scripts}
    for _ in range(repeats):
        for name, code in scripts.items():
            seconds[name].append(run(code))
    t_tx, t_oe = (statistics.median(seconds[n]) for n in scripts)
    cached = {name: [] for name in scripts}
    with tempfile.TemporaryDirectory() as folder:
        env = {"JAX_COMPILATION_CACHE_DIR": folder,
               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        for code in scripts.values():  # fills the cache
            run(code, env)
        for _ in range(repeats):
            for name, code in scripts.items():
                cached[name].append(run(code, env))
    c_tx, c_oe = (statistics.median(cached[n]) for n in scripts)
    print(f"\nwhole process: each README's quickstart as a fresh python process (import, data, "
          f"compile, 3 x 1000 steps), median of {repeats}")
    print(f"{'':>24} | {'trainax':>9} | {'online_emulate':>14} | {'ratio':>6}")
    print(f"{'default':>24} | {t_tx:>8.2f}s | {t_oe:>13.2f}s | {t_tx / t_oe:>6.2f}")
    print(f"{'opt-in compilation cache':>24} | {c_tx:>8.2f}s | {c_oe:>13.2f}s | {c_tx / c_oe:>6.2f}")
    return t_tx / t_oe


def equinox_model_row(data, steps, repeats):
    """The quickstart with trainax's own equinox model trained by online_emulate too.

    Both libraries train the same `equinox.nn.Conv1d` (online_emulate through its
    equinox adapter); prints the summed steady-state seconds per 1000 steps over the
    three rollout lengths (median of `repeats`, after one compiling call each) and the
    stencil errors of the compiling calls.
    """

    def conv():
        return eqx.nn.Conv1d(1, 1, 2, padding="SAME", padding_mode="CIRCULAR", use_bias=False, key=jax.random.PRNGKey(73))

    def ours(r):
        trainer = SupervisedTrainer(data, num_rollout_steps=r, optimizer=optax.adam(1e-2), num_training_steps=steps, batch_size=32, progress_bar=False)
        model = conv()

        def run():
            trained, _ = trainer(model, jax.random.PRNGKey(42))  # every call starts fresh
            jax.block_until_ready(trained.weight)
            return float(jnp.linalg.norm(trained.weight[0, 0] - FOU))

        return run

    runs = {r: (trainax_trainer(data, r, steps), ours(r)) for r in ROLLOUTS}
    errors = {r: (tx_run(), oe_run()) for r, (tx_run, oe_run) in runs.items()}
    scale = 1000.0 / steps
    totals = ([], [])
    for _ in range(repeats):
        totals[0].append(scale * sum(timed(runs[r][0]) for r in ROLLOUTS))
        totals[1].append(scale * sum(timed(runs[r][1]) for r in ROLLOUTS))
    t_tx, t_oe = statistics.median(totals[0]), statistics.median(totals[1])
    print("\nequinox Conv1d model in both libraries (stencil errors rollout 1 / 5 / 20: "
          + ", ".join(f"{e_tx:.4f} vs {e_oe:.4f}" for e_tx, e_oe in errors.values()) + ")")
    print(f"{'eqx all':>8} | {t_tx:>9.3f} | {t_oe:>14.3f} | {t_tx / t_oe:>6.1f}")


if __name__ == "__main__":
    main()
