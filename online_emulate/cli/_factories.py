"""Build library objects from the command line's names and numbers."""

from __future__ import annotations

import jax
import optax

from .. import configuration as cfg
from .. import estimators as est
from ..emulators import ConvNet, LinearStencil
from ..optim import KFAC
from ..sample_data import PROBLEMS, get_problem

__all__ = [
    "CONFIGURATIONS",
    "ESTIMATORS",
    "EMULATORS",
    "OPTIMIZERS",
    "make_problem",
    "make_configuration",
    "make_estimator",
    "make_emulator",
    "make_optimizer",
    "make_residuum_fn",
    "DEFAULT_DECAY",
    "DEFAULT_NUM_CHECKPOINTS",
]

CONFIGURATIONS = (
    "supervised",
    "diverted-chain",
    "diverted-chain-branch-one",
    "mix-chain-post-physics",
    "mix-chain-pre-physics",
    "residuum",
    "teacher-forcing",
)
ESTIMATORS = ("bptt", "bptt-step", "bptt-sqrt", "bptt-binomial", "tbptt", "rtrl", "d_rtrl", "es_d_rtrl")
EMULATORS = ("linear", "convnet")
OPTIMIZERS = ("adam", "sgd", "kfac")
#: ES_D_RTRL's trace decay when --decay is not given (braintrace has no default)
DEFAULT_DECAY = 0.9
#: stored states of bptt-binomial when --num-checkpoints is not given
DEFAULT_NUM_CHECKPOINTS = 16


def make_problem(name: str, num_points: int | None = None):
    overrides = {} if num_points is None else {"num_points": num_points}
    return get_problem(name, **overrides)


def make_configuration(name: str, args):
    common = dict(cut_bptt=args.cut_bptt, cut_bptt_every=args.cut_bptt_every)
    r = args.rollout_steps
    if name == "supervised":
        return cfg.Supervised(r, **common)
    if name == "diverted-chain":
        return cfg.DivertedChain(r, args.branch_steps, cut_div_chain=args.cut_div_chain, **common)
    if name == "diverted-chain-branch-one":
        return cfg.DivertedChainBranchOne(r, cut_div_chain=args.cut_div_chain, **common)
    if name == "mix-chain-post-physics":
        return cfg.MixChainPostPhysics(r, args.physics_steps, **common)
    if name == "mix-chain-pre-physics":
        return cfg.MixChainPrePhysics(r, args.physics_steps, **common)
    if name == "residuum":
        return cfg.Residuum(r, cut_prev=args.cut_prev, cut_next=args.cut_next, **common)
    if name == "teacher-forcing":
        return cfg.TeacherForcing(r, args.reset_every, **common)
    raise ValueError(f"--configuration: expected one of {', '.join(CONFIGURATIONS)}, got {name!r}")


def make_estimator(name: str, *, truncation: int = 1, decay: float | None = None,
                   num_checkpoints: int | None = None):
    if decay is not None and name != "es_d_rtrl":
        raise ValueError(f"--decay: expected no decay unless --estimator es_d_rtrl, got "
                         f"--estimator {name}")
    if num_checkpoints is not None and name != "bptt-binomial":
        raise ValueError("--num-checkpoints: expected no checkpoint count unless --estimator "
                         f"bptt-binomial, got --estimator {name}")
    if name == "bptt":
        return est.BPTT()
    if name == "bptt-step":
        return est.BPTT(checkpoint="step")
    if name == "bptt-sqrt":
        return est.BPTT(checkpoint="sqrt")
    if name == "bptt-binomial":
        return est.BPTT(checkpoint="binomial", num_checkpoints=num_checkpoints)
    if name == "tbptt":
        return est.TruncatedBPTT(truncation)
    if name == "rtrl":
        return est.ForwardRTRL()
    if name == "d_rtrl":
        return est.ETrace("d_rtrl")
    if name == "es_d_rtrl":
        return est.ETrace("es_d_rtrl", decay=DEFAULT_DECAY if decay is None else decay)
    raise ValueError(f"--estimator: expected one of {', '.join(ESTIMATORS)}, got {name!r}")


def make_emulator(spec: dict):
    """`spec` (as saved in config.json): kind, num_spatial_dims, channels, options, seed."""
    kind = spec["kind"]
    d, c = spec["num_spatial_dims"], spec["channels"]
    if kind == "linear":
        return LinearStencil(d, c, c, kernel_size=spec["kernel_size"], key=spec["seed"])
    if kind == "convnet":
        return ConvNet(
            d, c, c, hidden_channels=spec["hidden_channels"], depth=spec["depth"],
            kernel_size=spec["kernel_size"], residual=True, key=spec["seed"],
        )
    raise ValueError(f"--emulator: expected one of {', '.join(EMULATORS)}, got {kind!r}")


def make_optimizer(name: str, learning_rate: float):
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "sgd":
        return optax.sgd(learning_rate)
    if name == "kfac":
        return KFAC()
    raise ValueError(f"--optimizer: expected one of {', '.join(OPTIMIZERS)}, got {name!r}")


def make_residuum_fn(ref_stepper):
    """r(next, prev) = next - P(prev): zero exactly on the reference trajectories."""
    batched = jax.vmap(ref_stepper)

    def residuum_fn(nxt, prev):
        return nxt - batched(prev)

    return residuum_fn


PROBLEM_NAMES = tuple(PROBLEMS)
