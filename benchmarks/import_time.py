"""Import time of online_emulate against brainstate (and trainax), each in a fresh process.

Every statement runs in its own `python -c` process, `--repeats` times, interleaved so
that machine load hits all rows alike; the table shows the median wall time of the
whole statement, the ratio to `import brainstate` measured in the same run, and which
heavy modules the statement loaded. Usage:

    python benchmarks/import_time.py            # 5 repeats
    python benchmarks/import_time.py --quick    # 1 repeat
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

HEAVY = ("matplotlib", "scipy.stats", "braintrace", "exponax", "equinox", "optax",
         "online_emulate.plot")

ROWS = {
    "brainstate": "import brainstate",
    "trainax, equinox": "import trainax, equinox",
    "online_emulate": "import online_emulate",
    "online_emulate + core subpackages": (
        "from online_emulate import configuration, data, emulators, estimators, loss, "
        "metrics, sample_data, trainer"
    ),
    "online_emulate.online (braintrace bridge)": "import online_emulate.online",
    "online_emulate.plot": "import online_emulate.plot",
}

_PROBE = """
import sys, time
t0 = time.perf_counter()
{statement}
dt = time.perf_counter() - t0
import json
print(json.dumps({{"seconds": dt, "loaded": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def _time_once(statement: str) -> dict | None:
    code = _PROBE.format(statement=statement, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return None  # e.g. trainax not installed
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one repeat")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    times: dict[str, list[float]] = {name: [] for name in ROWS}
    loaded: dict[str, list[str]] = {}
    for _ in range(repeats):
        for name, statement in ROWS.items():
            result = _time_once(statement)
            if result is not None:
                times[name].append(result["seconds"])
                loaded[name] = result["loaded"]

    base = statistics.median(times["brainstate"])
    print(f"import time, median of {repeats} fresh process(es); ratio to `import brainstate`")
    print(f"{'statement':44s} {'seconds':>8s} {'ratio':>6s}  heavy modules loaded")
    for name in ROWS:
        if not times[name]:
            print(f"{name:44s} {'n/a':>8s} {'':>6s}  (not installed)")
            continue
        t = statistics.median(times[name])
        print(f"{name:44s} {t:8.2f} {t / base:6.2f}  {', '.join(loaded[name]) or '-'}")


if __name__ == "__main__":
    main()
