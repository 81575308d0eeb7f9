"""Memory planner: what each gradient estimator costs for one problem, before training."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax

from .._checks import check_positive_int
from ..configuration import BaseConfiguration
from ..emulators import functional
from ._base import Estimator
from ._bptt import BPTT
from ._budget import Compiler, choose_exact_scheme, largest_binomial
from ._catalogue import ESTIMATORS
from ._checkpoint_scan import binomial_step_evaluations
from ._etrace import ETrace
from ._fidelity import compiled_temp_bytes
from ._forward_rtrl import ForwardRTRL
from ._truncated import TruncatedBPTT

__all__ = ["plan", "Plan", "PlanRow"]

# Counting binomial recomputation runs a host callback per step evaluation (~40 us).
_COUNT_LIMIT = 300_000


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


def plan(
    configuration: BaseConfiguration,
    emulator: Any,
    data: jax.Array,
    memory_budget_bytes: int,
    *,
    ref_stepper: Callable | None = None,
    residuum_fn: Callable | None = None,
    estimators: Sequence[Estimator] | None = None,
) -> Plan:
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
        estimators: the non-BPTT estimators to list. Default: every entry of the
            `ESTIMATORS` catalogue that is not a `BPTT`, with its default options
            (`TruncatedBPTT(1)`, `ForwardRTRL()`, `ETrace("d_rtrl")`,
            `ETrace("es_d_rtrl", decay=0.9)` and any registered since).

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
        estimators = [e for e in map(ESTIMATORS.make, ESTIMATORS.names()) if not isinstance(e, BPTT)]
    for e in estimators:
        if not isinstance(e, Estimator):
            raise TypeError(f"estimators: expected Estimator objects, got {type(e).__name__}")
    levels = configuration.num_time_levels
    have = jax.tree_util.tree_leaves(data)[0].shape[1]
    if have < levels:
        raise ValueError(f"data: expected at least {levels} time levels ({configuration!r} "
                         f"reads them), got {have}")
    data = jax.tree_util.tree_map(lambda x: x[:, :levels], data)
    apply, params = functional(emulator)
    M = memory_budget_bytes
    temp = Compiler(BPTT, configuration, apply, params, data, ref_stepper, residuum_fn)
    longest = temp.longest
    try:
        chosen = choose_exact_scheme(BPTT, configuration, apply, params, data, M,
                                     compiler=temp).estimator
    except ValueError:
        chosen = None
    # the binomial row shows the most checkpoints that fit (one when none fits)
    binomial = largest_binomial(temp, M) or temp.binomial(1)
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
