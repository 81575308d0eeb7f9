"""Which exact BPTT scheme fits a memory budget: compiled from shapes, searched."""

from __future__ import annotations

import dataclasses

import jax

from .._rollout import bind

__all__ = ["ExactChoice", "Compiler", "choose_exact_scheme", "largest_binomial",
           "loop_lengths"]


def _structs(tree):
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _exact_temp_bytes(estimator, configuration, apply, params, data, ref_stepper,
                      residuum_fn) -> int:
    """Compiled temp bytes of `estimator.value_and_grad` from shapes only (so it also
    works while an outer program is being traced)."""
    fn = jax.jit(lambda p, d: estimator.value_and_grad(
        configuration, apply, p, d, ref_stepper=ref_stepper, residuum_fn=residuum_fn))
    lowered = fn.lower(_structs(params), _structs(data))
    return int(lowered.compile().memory_analysis().temp_size_in_bytes)


def loop_lengths(configuration, apply, params, data, *, ref_stepper=None,
                 residuum_fn=None) -> list[int]:
    """The lengths of every rollout loop the configuration runs (traced, not run)."""
    lengths = []

    def recording_scan(f, init, xs=None, length=None, **kwargs):
        leaves = jax.tree_util.tree_leaves(xs)
        lengths.append(int(leaves[0].shape[0]) if leaves else int(length))
        return jax.lax.scan(f, init, xs, length=length, **kwargs)

    jax.eval_shape(
        lambda p, d: configuration.loss(bind(apply, p), d, ref_stepper=ref_stepper,
                                        residuum_fn=residuum_fn, scan=recording_scan),
        _structs(params), _structs(data),
    )
    return lengths


@dataclasses.dataclass(frozen=True)
class ExactChoice:
    """The exact scheme picked for a memory budget.

    Attributes:
        estimator: the fixed-scheme `BPTT` picked.
        temp_bytes: its compiled temp memory.
        candidates: `{repr(BPTT scheme): compiled temp bytes}` of every scheme compiled
            on the way (so a caller can report them).
        longest_loop: the longest rollout loop of the configuration (checkpoints
            beyond it are never used).
    """

    estimator: object
    temp_bytes: int
    candidates: dict
    longest_loop: int


class Compiler:
    """Compiled temp bytes of exact schemes for one problem, each compiled once."""

    def __init__(self, scheme, configuration, apply, params, data, ref_stepper, residuum_fn):
        self.scheme = scheme
        self.args = (configuration, apply, params, data, ref_stepper, residuum_fn)
        self.bytes = {}
        self.longest = max(loop_lengths(configuration, apply, params, data,
                                        ref_stepper=ref_stepper, residuum_fn=residuum_fn)
                           or [1])

    def binomial(self, n):
        return self.scheme(checkpoint="binomial", num_checkpoints=n)

    def __call__(self, est) -> int:
        if repr(est) not in self.bytes:
            self.bytes[repr(est)] = _exact_temp_bytes(est, *self.args)
        return self.bytes[repr(est)]


def largest_binomial(temp: Compiler, M: int, max_compiles: int = 8):
    """Binomial BPTT with the most checkpoints (at most the longest loop) that fits M,
    or None when one checkpoint does not fit.

    Memory grows with the count (each checkpoint is one carry) but not exactly
    linearly (XLA's buffer assignment), so the count is searched: each guess is the
    secant through the compiled sizes of 1 checkpoint and the largest count known to
    fit, kept strictly between the largest count known to fit and the smallest known
    not to; at most `max_compiles` guesses beyond 1 and 2 checkpoints."""
    m1 = temp(temp.binomial(1))
    if m1 > M:
        return None
    lo, hi = 1, temp.longest + 1  # lo fits; hi does not (or is past the useful range)
    if hi > 2:
        if temp(temp.binomial(2)) <= M:
            lo = 2
        else:
            hi = 2
    for _ in range(max_compiles):
        if hi - lo <= 1:
            break
        grown = temp(temp.binomial(lo)) - m1
        guess = hi - 1 if grown <= 0 else 1 + (M - m1) * (lo - 1) // grown
        guess = min(max(guess, lo + 1), hi - 1)
        if temp(temp.binomial(guess)) <= M:
            lo = guess
        else:
            hi = guess
    return temp.binomial(lo)


def choose_exact_scheme(scheme, configuration, apply, params, data, memory_budget_bytes: int, *,
                        ref_stepper=None, residuum_fn=None, compiler=None) -> ExactChoice:
    """The cheapest exact `BPTT` whose compiled temp memory fits the budget.

    `scheme(checkpoint=..., num_checkpoints=...)` builds the fixed-scheme estimators
    (the `BPTT` class; passed in so this module does not import it).

    Order (least recomputation first): plain BPTT (each step run once), then "sqrt"
    (about twice), then "binomial" with the largest `num_checkpoints` that fits
    (fewer checkpoints, more recomputation).

    Returns:
        An `ExactChoice`.

    Raises:
        ValueError: if not even one checkpoint fits; the message names the smallest
            budget that would work.
    """
    M = memory_budget_bytes
    temp = compiler or Compiler(scheme, configuration, apply, params, data, ref_stepper,
                                residuum_fn)
    for est in (scheme(), scheme(checkpoint="sqrt")):
        if temp(est) <= M:
            return ExactChoice(est, temp(est), dict(temp.bytes), temp.longest)
    est = largest_binomial(temp, M)
    if est is None:
        smallest = min(temp.bytes.values())
        raise ValueError(
            f"memory_budget_bytes: expected a budget that an exact gradient scheme for "
            f"{configuration!r} fits, got {M} bytes; the smallest is "
            f"{min(temp.bytes, key=temp.bytes.get)} with {smallest} bytes of compiled temp "
            f"memory (others: {temp.bytes}). "
            f"Pass memory_budget_bytes >= {smallest}, or use an approximate online "
            f"estimator (see estimators.plan)."
        )
    return ExactChoice(est, temp(est), dict(temp.bytes), temp.longest)
