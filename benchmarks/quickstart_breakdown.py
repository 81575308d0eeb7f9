"""Where the README quickstart's fresh process spends its time.

Runs the statements of README.md's first Python block (the quickstart: 3 trainers of
1000 steps) in a fresh `python -c` process, with a timer between them, and counts what
jax compiles in each phase (jax's monitoring events: tracing, lowering and XLA
compilation, each with the name of the function compiled). The statements timed are
checked against the README block, so the two cannot drift apart.

Prints per phase the wall seconds, the number of XLA compilations and their seconds,
and (with `--programs`) the name and compile time of every program. The median of
`--repeats` fresh processes is shown. With `--against DIR` (another checkout of the
library, e.g. `git worktree add /tmp/old <commit>`) the processes alternate between
that tree and this one, and the table shows both and the ratio of the medians, so that
machine load hits both alike.

    python benchmarks/quickstart_breakdown.py [--repeats 3] [--programs] [--against DIR]
    python benchmarks/quickstart_breakdown.py --quick   # one process, 100 steps
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

# (phase, statements): the README quickstart, cut into the phases a user waits through
PHASES = [
    ("import jax, optax", "import jax, jax.numpy as jnp, optax"),
    ("import online_emulate", "from online_emulate.emulators import LinearStencil\n"
                              "from online_emulate.sample_data import advection_1d_periodic\n"
                              "from online_emulate.trainer import SupervisedTrainer"),
    ("data", "CFL = -0.75\n"
             "data = advection_1d_periodic(cfl=CFL, key=jax.random.PRNGKey(0))"),
    ("emulator", "emulator = LinearStencil(1, 1, 1, kernel_size=2, use_bias=False, key=73)"),
]
TRAIN = ("trainer = SupervisedTrainer(data, num_rollout_steps=r, optimizer=optax.adam(1e-2),\n"
         "                            num_training_steps={steps}, batch_size=32)\n"
         "trained, history = trainer(emulator, key=jax.random.PRNGKey(42))\n"
         "print(r, jnp.linalg.norm(trained.stencil[0, 0] - jnp.array([1 + CFL, -CFL])))")
ROLLOUTS = (1, 5, 20)

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import jax.monitoring as _mon  # imports jax: charged to the first phase below
imported = time.perf_counter() - t0
events = []
def _listen(event, duration, **kw):
    if event.startswith("/jax/core/compile/"):
        events.append((event.rsplit("/", 1)[1], kw.get("fun_name", "?"), duration))
_mon.register_event_duration_secs_listener(_listen)
phases = json.loads(sys.argv[1])
rows = []
ns = {}
for name, code in phases:
    start, first = time.perf_counter(), len(events)
    exec(code, ns)
    jax = ns.get("jax")
    if jax is not None:  # what the phase computed is done, not queued
        jax.effects_barrier()
    rows.append([name, time.perf_counter() - start + (imported if not rows else 0.0),
                 events[first:]])
print(json.dumps({"total": time.perf_counter() - t0, "rows": rows}))
"""


def readme_quickstart() -> str:
    """The first Python block of README.md."""
    return README.read_text().split("```python\n", 1)[1].split("```", 1)[0]


def phases(steps: int) -> list[tuple[str, str]]:
    """The timed phases; raises if a statement is no longer in the README quickstart."""
    block = readme_quickstart()
    for _, code in PHASES + [("train", TRAIN.format(steps=1000))]:
        for line in code.splitlines():
            if line.strip() not in block:
                raise SystemExit(f"quickstart_breakdown: {line.strip()!r} is no longer in "
                                 "README.md's quickstart; update PHASES")
    train = [(f"trainer r={r}", f"r = {r}\n" + TRAIN.format(steps=steps)) for r in ROLLOUTS]
    return PHASES + train


def run_once(steps: int, root: pathlib.Path) -> dict:
    """One fresh process of the phases, importing online_emulate from `root`."""
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(phases(steps))],
                         capture_output=True, text=True, check=True, env=env, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(runs: list[dict]) -> list[tuple]:
    """Per phase: (name, wall s, XLA compiles, compile s, trace s), medians over `runs`;
    last the whole process."""
    rows = []
    for i, name in enumerate(row[0] for row in runs[0]["rows"]):
        evs = [run["rows"][i][2] for run in runs]
        rows.append((
            name,
            statistics.median(run["rows"][i][1] for run in runs),
            statistics.median(sum(e[0] == "backend_compile_duration" for e in ev) for ev in evs),
            statistics.median(sum(e[2] for e in ev if e[0] == "backend_compile_duration")
                              for ev in evs),
            statistics.median(sum(e[2] for e in ev if e[0] != "backend_compile_duration")
                              for ev in evs)))
    rows.append(("all (in the process)", statistics.median(run["total"] for run in runs),
                 None, None, None))
    return rows


def print_table(title: str, rows: list[tuple], other: list[tuple] | None = None) -> None:
    print(title)
    head = f"{'phase':<22} | {'wall s':>7} | {'XLA compiles':>12} | {'compile s':>9} | {'trace s':>7}"
    print(head + (f" | {'other wall s':>12} | {'ratio':>5}" if other else ""))
    for i, (name, wall, count, comp, trace) in enumerate(rows):
        line = f"{name:<22} | {wall:>7.2f} | "
        line += (f"{count:>12g} | {comp:>9.2f} | {trace:>7.2f}" if count is not None
                 else f"{'':>12} | {'':>9} | {'':>7}")
        if other:
            line += f" | {other[i][1]:>12.2f} | {other[i][1] / wall:>5.2f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--programs", action="store_true", help="list every compiled program")
    parser.add_argument("--quick", action="store_true", help="one process, 100 steps")
    parser.add_argument("--against", help="another checkout of the library to compare with")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps = 1, 100
    here = README.parent
    against = None if args.against is None else pathlib.Path(args.against).resolve()
    runs, old = [], []
    for _ in range(args.repeats):  # alternated: load hits both trees alike
        if against is not None:
            old.append(run_once(args.steps, against))
        runs.append(run_once(args.steps, here))
    what = (f"README quickstart ({args.steps} steps per trainer), fresh process, median of "
            f"{args.repeats}; compile = XLA backend compilation, trace = tracing + lowering")
    if against is None:
        print_table(what, summary(runs))
    else:
        print_table(f"{what}\nthis tree ({here}); other = {against}, ratio = other / this",
                    summary(runs), summary(old))
        print_table(f"\nthe other tree ({against})", summary(old))
    if args.programs:
        print("\nprograms compiled (first process): phase, function, XLA compile seconds")
        for name, _, evs in runs[0]["rows"]:
            for event, fun, seconds in evs:
                if event == "backend_compile_duration":
                    print(f"  {name:<22} {fun:<48} {seconds:.3f}")


if __name__ == "__main__":
    main()
