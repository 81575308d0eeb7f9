"""Importing kfac-jax, and our compatibility shim for kfac-jax 0.0.8 on new jax.

kfac-jax 0.0.8 evaluates single jaxpr equations with
`subfuns, params = eqn.primitive.get_bind_params(eqn.params)`; newer jax returns one
dict there (call primitives put their sub-functions into it), so the first
`Optimizer.step` fails with "too many values to unpack". We probe whether the
installed kfac-jax evaluates a small equation correctly and, only if it does not,
replace `kfac_jax._src.tag_graph_matcher.eval_jaxpr_eqn` by a version that handles
both conventions.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = [
    "INSTALL_HINT",
    "import_kfac",
    "bind_params_convention",
    "eval_eqn_works",
    "kfac_needs_shim",
    "apply_kfac_shim",
]

INSTALL_HINT = (
    "K-FAC needs the optional dependency kfac-jax. Install it with\n"
    '    pip install -e ".[kfac]"      (from the online_emulate checkout)\n'
    'or  pip install "kfac-jax>=0.0.8,<0.1"'
)

_SHIM_APPLIED = False


def _probe_eqn():
    """A small jaxpr equation (`sin`) and an input for it."""
    x = jnp.asarray(0.5, jnp.float32)
    return jax.make_jaxpr(jnp.sin)(x).eqns[0], x


def bind_params_convention() -> str:
    """What `Primitive.get_bind_params` returns in the installed jax.

    Returns:
        `"pair"` for the old `(subfuns, params)` tuple, `"dict"` for the newer
        single dict.
    """
    eqn, _ = _probe_eqn()
    out = eqn.primitive.get_bind_params(eqn.params)
    return "dict" if isinstance(out, dict) else "pair"


def eval_eqn_works(eval_jaxpr_eqn: Callable) -> bool:
    """Whether `eval_jaxpr_eqn(eqn, in_values)` evaluates a probe equation correctly."""
    eqn, x = _probe_eqn()
    try:
        out = eval_jaxpr_eqn(eqn, [x])
    except Exception:  # noqa: BLE001 - any failure means "does not work"
        return False
    return (
        isinstance(out, (list, tuple))
        and len(out) == 1
        and bool(jnp.allclose(out[0], jnp.sin(x)))
    )


def _compatible_eval_jaxpr_eqn(eqn, in_values: list) -> list:
    """Evaluate one jaxpr equation under either `get_bind_params` convention."""
    bound = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(bound, dict):
        subfuns, bind_params = (), bound
    else:
        subfuns, bind_params = bound
    with jax.extend.source_info_util.user_context(eqn.source_info.traceback):
        output = eqn.primitive.bind(*subfuns, *in_values, **bind_params)
    return output if isinstance(output, list) else [output]


def kfac_needs_shim(tag_graph_matcher: Any | None = None) -> bool:
    """Whether the installed kfac-jax fails to evaluate jaxpr equations of this jax.

    Arguments:
        tag_graph_matcher: the module holding `eval_jaxpr_eqn` (default: the
            installed `kfac_jax._src.tag_graph_matcher`).

    Returns:
        True when kfac-jax's `eval_jaxpr_eqn` fails on a probe equation.
    """
    if tag_graph_matcher is None:
        tag_graph_matcher = importlib.import_module("kfac_jax._src.tag_graph_matcher")
    return not eval_eqn_works(tag_graph_matcher.eval_jaxpr_eqn)


def apply_kfac_shim() -> bool:
    """Patch kfac-jax's equation evaluator if (and only if) it needs it.

    Idempotent. The tracer module calls `tag_graph_matcher.eval_jaxpr_eqn` through
    the module, so replacing the module attribute reaches every caller.

    Returns:
        Whether the shim is in place (False when kfac-jax works as installed).

    Raises:
        RuntimeError: if kfac-jax still cannot evaluate the probe after patching.
    """
    global _SHIM_APPLIED
    tgm = importlib.import_module("kfac_jax._src.tag_graph_matcher")
    if _SHIM_APPLIED or not kfac_needs_shim(tgm):
        return _SHIM_APPLIED
    tgm.eval_jaxpr_eqn = _compatible_eval_jaxpr_eqn
    if kfac_needs_shim(tgm):
        raise RuntimeError(
            "kfac-jax could not evaluate a jaxpr equation even after the "
            "online_emulate compatibility shim; this kfac-jax/jax pair is unsupported"
        )
    _SHIM_APPLIED = True
    return True


def import_kfac():
    """Import kfac_jax, applying the compatibility shim when needed.

    Returns:
        The `kfac_jax` module.

    Raises:
        ImportError: if kfac-jax is not installed (the message says how to install it).
    """
    try:
        kfac_jax = importlib.import_module("kfac_jax")
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    apply_kfac_shim()
    return kfac_jax
