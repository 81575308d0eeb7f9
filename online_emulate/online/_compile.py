"""braintrace compilation of a recurrent emulator, with the exclusion check."""

from __future__ import annotations

from typing import Any

import braintrace
import jax.numpy as jnp
from jax.extend import core as jcore

from ..emulators._lift import reached_from
from ..emulators._patch_op import is_factored
from ._recurrent import RecurrentEmulator

__all__ = ["compile_learner", "ExcludedParameterError", "check_no_excluded_parameters",
           "check_factored_traces", "ALGORITHMS"]

ALGORITHMS = {"d_rtrl": braintrace.ParamDimVjpAlgorithm, "es_d_rtrl": braintrace.IODimVjpAlgorithm}


class ExcludedParameterError(ValueError):
    """A trainable parameter would get no (or a structurally zero) eligibility-trace gradient."""


def _path(p) -> str:
    return "/".join(str(k) for k in p)


def check_no_excluded_parameters(learner: Any, model: RecurrentEmulator) -> None:
    """Raise if any trainable ParamState of `model.emulator` has no hidden-param relation.

    braintrace silently gives such a parameter a zero gradient: a weight whose output
    reaches the field only through another ETP op, or a parameter used with a plain JAX
    op instead of an ETP op (braintrace.conv / matmul / element_wise).

    Raises:
        ExcludedParameterError: naming every excluded parameter, braintrace's reason and
            the fix.
    """
    report = learner.report
    excluded = list(report.excluded_weights)
    routed = set()
    for rel in learner.graph.hidden_param_op_relations:
        if rel.hidden_groups:
            routed.update(rel.trainable_paths.values())
    known = {p for p, _ in excluded}
    for path in learner.param_states.keys():
        if path not in routed and path not in known:
            excluded.append((path, "no hidden group reached"))
    if excluded:
        lines = [f"  {_path(p)}: {reason or 'not routed through an ETP op into a hidden state'}"
                 for p, reason in excluded]
        raise ExcludedParameterError(
            f"ETrace: braintrace excluded these trainable parameters of the "
            f"{type(model.emulator).__name__} model from the eligibility trace, so they "
            "would silently get a zero gradient:\n" + "\n".join(lines) +
            "\nFix: use every parameter through a braintrace ETP op (braintrace.nn layers, "
            "braintrace.conv / matmul / element_wise; not a plain jnp op) and declare the "
            "output of every inner ETP op with online_emulate.emulators.hidden_state(...) "
            "so it reaches a hidden state directly; or train with BPTT(), "
            "TruncatedBPTT(k) or ForwardRTRL(), which work with any model."
        )


def _reads_old_hidden(jaxpr) -> bool:
    """Whether a hidden group's transition jaxpr (hidden states in, hidden states out,
    braintrace's `HiddenGroup.transition_jaxpr`) has an output that depends on an input:
    its Jacobian is not structurally zero."""
    reached = reached_from(jaxpr, jaxpr.invars)
    return any(not isinstance(v, jcore.Literal) and v in reached for v in jaxpr.outvars)


def check_factored_traces(learner: Any) -> None:
    """Raise if an op keeping its trace as two factors (`emulators._patch_op`, lifted
    where the step's hidden-to-hidden Jacobian is structurally zero) writes a hidden
    group whose compiled transition reads the old hidden states.

    Raises:
        RuntimeError: naming the op; the lift's analysis and braintrace's graph
            disagree, a bug of this library (the factored trace would be wrong).
    """
    for rel in learner.graph.hidden_param_op_relations:
        if not is_factored(rel.primitive):
            continue
        for group in rel.hidden_groups:
            if _reads_old_hidden(group.transition_jaxpr):
                paths = ", ".join(_path(p) for p in rel.trainable_paths.values())
                raise RuntimeError(
                    f"ETrace: expected the hidden group {group.index} written by the op of "
                    f"{paths} to have a structurally zero hidden-to-hidden Jacobian (its "
                    "D-RTRL trace is kept as two factors), got a transition that reads "
                    "the old hidden states; this is a bug of online_emulate: please "
                    "report it (ETrace('es_d_rtrl', ...) and the BPTT estimators are not "
                    "affected)")


def compile_learner(model: RecurrentEmulator, algorithm: str, *, decay: float | None = None,
                    recurrence: str = "diagonal") -> Any:
    """`braintrace.compile` the recurrent emulator and check that no parameter is excluded.

    Arguments:
        model: the recurrent wrapper (its emulator's ParamStates are the trained weights).
        algorithm: "d_rtrl" (ParamDimVjpAlgorithm) or "es_d_rtrl" (IODimVjpAlgorithm).
        decay: ES_D_RTRL's trace decay in (0, 1) (required for "es_d_rtrl").
        recurrence: "diagonal" (braintrace's default: mixing ops are dropped from the
            hidden-to-hidden Jacobian) or "coupled" (`ETraceConfig(recurrence_scope=
            'coupled')`: the true diagonal of that Jacobian is kept).

    Returns:
        The learner; calling `learner(dummy)` advances the field one step.

    Raises:
        ValueError: unknown algorithm or recurrence, or missing decay.
        ExcludedParameterError: see `check_no_excluded_parameters`.
        RuntimeError: see `check_factored_traces`.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm: expected one of {sorted(ALGORITHMS)}, got {algorithm!r}")
    if recurrence not in ("diagonal", "coupled"):
        raise ValueError(f"recurrence: expected 'diagonal' or 'coupled', got {recurrence!r}")
    options = {}
    if algorithm == "es_d_rtrl":
        if decay is None:
            raise ValueError("decay: expected a number in (0, 1) (ETrace('es_d_rtrl') needs "
                             "it), got None")
        options["decay_or_rank"] = decay
    B = model.state_shape[0]
    dummy = jnp.zeros((B, 1), model.dtype)
    if recurrence == "coupled":
        factorization = "per_param" if algorithm == "d_rtrl" else "io_factorized"
        config = braintrace.ETraceConfig(trace_factorization=factorization, decay=decay,
                                         recurrence_scope="coupled")
        learner = braintrace.compile(model, config, dummy, batch_size=B)
    else:
        learner = braintrace.compile(model, ALGORITHMS[algorithm], dummy, batch_size=B,
                                     **options)
    check_no_excluded_parameters(learner, model)
    check_factored_traces(learner)
    return learner
