"""Memory planner: what each gradient estimator costs for one problem, before training."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax

from .._checks import check_positive_int
from ..emulators import functional
from ._base import Estimator
from ._bptt import BPTT
from ._checkpoint_scan import binomial_step_evaluations
from ._etrace import ETrace
from ._fidelity import compiled_temp_bytes
from ._forward_rtrl import ForwardRTRL
from ._truncated import TruncatedBPTT

__all__ = ["plan", "Plan", "PlanRow", "ExactChoice", "choose_exact_scheme", "loop_lengths"]

# Counting binomial recomputation runs a host callback per step evaluation (~40 us).
_COUNT_LIMIT = 300_000


def _structs(tree):
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _exact_temp_bytes(estimator: BPTT, configuration, apply, params, data, ref_stepper,
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
        lambda p, d: configuration.loss(lambda u: apply(p, u), d, ref_stepper=ref_stepper,
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

    estimator: BPTT
    temp_bytes: int
    candidates: dict
    longest_loop: int


class _Compiler:
    """Compiled temp bytes of exact schemes for one problem, each compiled once."""

    def __init__(self, configuration, apply, params, data, ref_stepper, residuum_fn):
        self.args = (configuration, apply, params, data, ref_stepper, residuum_fn)
        self.bytes = {}
        self.longest = max(loop_lengths(configuration, apply, params, data,
                                        ref_stepper=ref_stepper, residuum_fn=residuum_fn)
                           or [1])

    def __call__(self, est: BPTT) -> int:
        if repr(est) not in self.bytes:
            self.bytes[repr(est)] = _exact_temp_bytes(est, *self.args)
        return self.bytes[repr(est)]


def _binomial(n):
    return BPTT(checkpoint="binomial", num_checkpoints=n)


def _largest_binomial(temp: _Compiler, M: int, max_compiles: int = 8) -> BPTT | None:
    """Binomial BPTT with the most checkpoints (at most the longest loop) that fits M,
    or None when one checkpoint does not fit.

    Memory grows with the count (each checkpoint is one carry) but not exactly
    linearly (XLA's buffer assignment), so the count is searched: each guess is the
    secant through the compiled sizes of 1 checkpoint and the largest count known to
    fit, kept strictly between the largest count known to fit and the smallest known
    not to; at most `max_compiles` guesses beyond 1 and 2 checkpoints."""
    m1 = temp(_binomial(1))
    if m1 > M:
        return None
    lo, hi = 1, temp.longest + 1  # lo fits; hi does not (or is past the useful range)
    if hi > 2:
        if temp(_binomial(2)) <= M:
            lo = 2
        else:
            hi = 2
    for _ in range(max_compiles):
        if hi - lo <= 1:
            break
        grown = temp(_binomial(lo)) - m1
        guess = hi - 1 if grown <= 0 else 1 + (M - m1) * (lo - 1) // grown
        guess = min(max(guess, lo + 1), hi - 1)
        if temp(_binomial(guess)) <= M:
            lo = guess
        else:
            hi = guess
    return _binomial(lo)


def choose_exact_scheme(configuration, apply, params, data, memory_budget_bytes: int, *,
                        ref_stepper=None, residuum_fn=None, _compiler=None) -> ExactChoice:
    """The cheapest exact `BPTT` whose compiled temp memory fits the budget.

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
    temp = _compiler or _Compiler(configuration, apply, params, data, ref_stepper, residuum_fn)
    for est in (BPTT(), BPTT(checkpoint="sqrt")):
        if temp(est) <= M:
            return ExactChoice(est, temp(est), dict(temp.bytes), temp.longest)
    est = _largest_binomial(temp, M)
    if est is None:
        smallest = min(temp.bytes.values())
        raise ValueError(
            f"memory_budget_bytes: no exact gradient scheme fits {M} bytes for "
            f"{configuration!r}; the smallest is {min(temp.bytes, key=temp.bytes.get)} "
            f"with {smallest} bytes of compiled temp memory (others: {temp.bytes}). "
            f"Pass memory_budget_bytes >= {smallest}, or use an approximate online "
            f"estimator (see estimators.plan)."
        )
    return ExactChoice(est, temp(est), dict(temp.bytes), temp.longest)


@dataclasses.dataclass(frozen=True)
class PlanRow:
    """One estimator in a `Plan`.

    Attributes:
        estimator: repr of the estimator.
        exact: whether its gradient equals BPTT's (None: depends, see `note`).
        supported: whether it supports the configuration.
        temp_bytes: compiled temp memory of its value-and-grad program (None when
            unsupported).
        recompute: how many times each rollout step is evaluated, forward and
            backward passes together, for the longest loop (1.0: never twice); None
            when unknown or not counted (see `note`).
        fits: `temp_bytes <= memory_budget_bytes`.
        note: anything the numbers do not say.
    """

    estimator: str
    exact: bool | None
    supported: bool
    temp_bytes: int | None
    recompute: float | None
    fits: bool
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every estimator costs for one problem, and the exact scheme to use.

    Attributes:
        rows: one `PlanRow` per estimator.
        choice: the cheapest exact `BPTT` that fits (what
            `BPTT(memory_budget_bytes=...)` runs), or None when none fits.
        memory_budget_bytes: the budget.
        longest_loop: the longest rollout loop of the configuration.

    `str(plan)` is a text table; `plan.to_dicts()` a list of dicts (one per row).
    """

    rows: tuple
    choice: BPTT | None
    memory_budget_bytes: int
    longest_loop: int

    def to_dicts(self) -> list[dict]:
        return [dataclasses.asdict(r) for r in self.rows]

    def __str__(self):
        head = (f"{'estimator':52s} {'exact':>5s} {'temp MiB':>9s} {'recompute':>9s} "
                f"{'fits':>4s}  note")
        lines = [f"memory budget {self.memory_budget_bytes / 2**20:.3f} MiB, longest rollout "
                 f"loop {self.longest_loop} steps", head, "-" * len(head)]
        for r in self.rows:
            exact = "-" if r.exact is None else ("yes" if r.exact else "no")
            mem = "-" if r.temp_bytes is None else f"{r.temp_bytes / 2**20:9.3f}"
            rec = "-" if r.recompute is None else f"{r.recompute:9.2f}"
            fits = "yes" if r.fits else "no"
            lines.append(f"{r.estimator[:52]:52s} {exact:>5s} {mem:>9s} {rec:>9s} {fits:>4s}  "
                         f"{r.note}")
        lines.append("choice (exact, fits, least recomputation): "
                     + (repr(self.choice) if self.choice is not None else
                        "none; no exact scheme fits, see the approximate estimators above"))
        return "\n".join(lines)


def _online_row(est, configuration, emulator, data, budget, longest, ref_stepper, residuum_fn):
    try:
        mem = compiled_temp_bytes(est, configuration, emulator, data, ref_stepper=ref_stepper,
                                  residuum_fn=residuum_fn)
    except ValueError as err:
        return PlanRow(repr(est), None, False, None, None, False,
                       "unsupported: " + str(err).split(". ")[0])
    exact, note = None, ""
    if isinstance(est, ForwardRTRL):
        exact, note = True, "plus one Jacobian-vector product per parameter per step"
    elif isinstance(est, ETrace):
        exact, note = False, "approximate; can update parameters mid-stream"
    elif isinstance(est, TruncatedBPTT):
        exact = est.k >= longest
        note = "exact (window covers the rollout)" if exact else "truncated: approximate"
    return PlanRow(repr(est), exact, True, mem, 1.0, mem <= budget, note)


def plan(configuration, emulator, data, memory_budget_bytes: int, *,
         ref_stepper=None, residuum_fn=None,
         estimators: Sequence[Estimator] | None = None) -> Plan:
    """Predicted memory and recomputation of every estimator for one problem.

    The exact schemes (plain, "step", "sqrt" BPTT and the binomial scheme that
    `BPTT(memory_budget_bytes=...)` would pick, or one checkpoint when nothing fits)
    are compiled for the shapes of `data` and the emulator's parameters; the
    approximate / online `estimators` likewise when they support the configuration.
    Nothing is trained or run except the binomial recomputation count (a scalar loop,
    see `binomial_step_evaluations`).

    Arguments:
        configuration: an `online_emulate.configuration` object.
        emulator: a brainstate emulator.
        data: a batch `(batch, time, C, *N)` (values unused, only shapes), with at
            least `configuration.num_time_levels` levels.
        memory_budget_bytes: the compiled temp-memory budget (positive int, bytes).
        ref_stepper, residuum_fn: as the configuration needs them.
        estimators: the non-BPTT estimators to list. Default: `TruncatedBPTT(1)`,
            `ForwardRTRL()`, `ETrace("d_rtrl")`, `ETrace("es_d_rtrl", decay=0.9)`.

    Returns:
        A `Plan` (`print(plan)` shows the table).

    Raises:
        ValueError: `memory_budget_bytes` not a positive int, too few time levels in
            `data`.
        TypeError: `emulator` is not a brainstate module, an entry of `estimators` is
            not an Estimator.
    """
    memory_budget_bytes = check_positive_int("memory_budget_bytes", memory_budget_bytes)
    if estimators is None:
        estimators = (TruncatedBPTT(1), ForwardRTRL(), ETrace("d_rtrl"),
                      ETrace("es_d_rtrl", decay=0.9))
    for e in estimators:
        if not isinstance(e, Estimator):
            raise TypeError(f"estimators: expected Estimator objects, got {type(e).__name__}")
    levels = configuration.num_time_levels
    have = jax.tree_util.tree_leaves(data)[0].shape[1]
    if have < levels:
        raise ValueError(f"data: {configuration!r} reads {levels} time levels, data has {have}")
    data = jax.tree_util.tree_map(lambda x: x[:, :levels], data)
    apply, params = functional(emulator)
    M = memory_budget_bytes
    temp = _Compiler(configuration, apply, params, data, ref_stepper, residuum_fn)
    longest = temp.longest
    try:
        chosen = choose_exact_scheme(configuration, apply, params, data, M,
                                     _compiler=temp).estimator
    except ValueError:
        chosen = None
    # the binomial row shows the most checkpoints that fit (one when none fits)
    binomial = _largest_binomial(temp, M) or _binomial(1)
    rows = []
    for est in (BPTT(), BPTT(checkpoint="step"), BPTT(checkpoint="sqrt"), binomial):
        mem = temp(est)
        note = ""
        if est.checkpoint is None:
            recompute = 1.0
        elif est.checkpoint == "step":
            recompute = 2.0
        elif est.checkpoint == "sqrt":
            # segments run twice, the remainder (fewer than ceil(sqrt(T)) steps) once
            seg = math.ceil(math.sqrt(longest))
            recompute = 2.0 - (longest % seg) / longest
        else:
            n = min(est.num_checkpoints, longest)
            count = binomial_step_evaluations(longest, n, limit=_COUNT_LIMIT)
            recompute = None if count is None else count / longest
            if count is None:
                note = f"more than {_COUNT_LIMIT} step evaluations (counting stopped)"
            elif longest > (n + 1) * (n + 2) // 2:
                note = "few checkpoints for T: equinox's online schedule recomputes more"
        if est == chosen:
            note = ("chosen; " + note) if note else "chosen"
        rows.append(PlanRow(repr(est), True, True, mem, recompute, mem <= M, note))
    for est in estimators:
        rows.append(_online_row(est, configuration, emulator, data, M, longest, ref_stepper,
                                residuum_fn))
    return Plan(tuple(rows), chosen, M, longest)
