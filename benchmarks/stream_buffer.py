"""How the StreamTrainer's buffer policies use the stream: FIFO against a reservoir.

A simulated run offers `writes` windows per training step (one per solver stream) and
draws `batch` windows per step, exactly as `StreamTrainer` does (the buffer's own
`offer` and `draw_ids`, windows tagged by their index in the stream). Per policy it
prints the share of offered windows never drawn, the mean and coefficient of variation
of the draws per window (over windows offered after the buffer was first full), the
mean age in steps of the drawn windows in the last tenth of the run, and the share of
the last tenth's draws that come from the first half of the stream. Ends with
`fifo_vs_reservoir_age=<ratio>` (mean age of the drawn windows, FIFO over reservoir).

Usage: python benchmarks/stream_buffer.py [--steps 2000] [--buffer 256] [--writes 8] [--batch 8]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from online_emulate.trainer._stream_buffer import draw_ids, init_buffer, offer


def simulate(policy, *, steps, buffer_size, writes, batch, key):
    state = init_buffer(buffer_size, (1,), jnp.float32)
    # prefill, as the trainer does
    tags = jnp.arange(buffer_size, dtype=jnp.float32)[:, None]
    state = offer(state, tags, jnp.ones((buffer_size,), bool), key, policy=policy)

    def step(state, s):
        first = buffer_size + s * writes
        new = (first + jnp.arange(writes, dtype=jnp.float32))[:, None]
        state = offer(state, new, jnp.ones((writes,), bool), key, policy=policy)
        ids = draw_ids(state, jax.random.fold_in(key, s), batch)
        return state, state.windows[ids, 0]

    _, drawn = jax.jit(lambda st: jax.lax.scan(step, st, jnp.arange(steps)))(state)
    return np.asarray(drawn).astype(np.int64)  # (steps, batch) window tags


def summarize(drawn, *, steps, buffer_size, writes):
    total = buffer_size + steps * writes
    uses = np.bincount(drawn.ravel(), minlength=total)
    late = uses[buffer_size:]
    made_at = lambda tag: np.maximum(tag - buffer_size, -writes) // writes  # noqa: E731
    tail = drawn[-steps // 10:]
    ages = (np.arange(steps)[-steps // 10:, None] - made_at(tail)).mean()
    old = (tail < total // 2).mean()
    return dict(never=(uses == 0).mean(), mean=late.mean(), cv=late.std() / late.mean(),
                age=ages, old=old)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--buffer", type=int, default=256)
    parser.add_argument("--writes", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    kw = dict(steps=args.steps, buffer_size=args.buffer, writes=args.writes)
    print(f"steps={args.steps} buffer={args.buffer} writes/step={args.writes} "
          f"batch={args.batch}")
    print(f"{'policy':<10} {'never drawn':>11} {'draws/window':>12} {'cv':>6} "
          f"{'age (steps)':>11} {'first half':>10}")
    rows = {}
    for policy in ("fifo", "reservoir"):
        drawn = simulate(policy, batch=args.batch, key=jax.random.PRNGKey(0), **kw)
        r = rows[policy] = summarize(drawn, **kw)
        print(f"{policy:<10} {r['never']:>11.3f} {r['mean']:>12.3f} {r['cv']:>6.2f} "
              f"{r['age']:>11.1f} {r['old']:>10.3f}")
    print(f"fifo_vs_reservoir_age={rows['fifo']['age'] / rows['reservoir']['age']:.3f}")


if __name__ == "__main__":
    main()
