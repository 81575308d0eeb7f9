"""Bad arguments raise ValueError/TypeError naming the argument, before any tracing."""

import jax.numpy as jnp
import numpy as np
import pytest

from online_emulate.configuration import (
    Composite,
    DivertedChain,
    DivertedChainBranchOne,
    MixChainPostPhysics,
    MixChainPrePhysics,
    Residuum,
    Supervised,
    TeacherForcing,
)
from online_emulate.loss import MSELoss

ALL = [
    Supervised,
    TeacherForcing,
    DivertedChain,
    DivertedChainBranchOne,
    MixChainPostPhysics,
    MixChainPrePhysics,
    Residuum,
]


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_num_rollout_steps_must_be_positive_int(cls, bad):
    with pytest.raises(ValueError, match=r"num_rollout_steps.*>= 1.*got"):
        cls(bad)


@pytest.mark.parametrize("cls", ALL)
def test_cut_bptt_every_must_be_positive(cls):
    with pytest.raises(ValueError, match=r"cut_bptt_every.*>= 1, got 0"):
        cls(2, cut_bptt_every=0)


@pytest.mark.parametrize("cls", ALL)
def test_time_level_loss_must_be_a_loss(cls):
    with pytest.raises(TypeError, match="time_level_loss"):
        cls(2, time_level_loss=lambda a, b: jnp.mean((a - b) ** 2))


@pytest.mark.parametrize("cls", ALL)
def test_flags_must_be_bools(cls):
    with pytest.raises(TypeError, match="cut_bptt"):
        cls(2, cut_bptt="yes")


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda w: Supervised(3, time_level_weights=w), 3),
        (lambda w: TeacherForcing(3, 2, time_level_weights=w), 3),
        (lambda w: DivertedChainBranchOne(3, time_level_weights=w), 3),
        (lambda w: DivertedChain(3, 2, time_level_weights=w), 3),
        (lambda w: Residuum(3, time_level_weights=w), 3),
        (lambda w: MixChainPostPhysics(3, 2, time_level_weights=w), 5),
        (lambda w: MixChainPrePhysics(3, 2, time_level_weights=w), 5),
    ],
)
@pytest.mark.parametrize("length", [2, 6])
def test_time_level_weights_length(make, expected, length):
    with pytest.raises(ValueError, match=rf"time_level_weights.*\({expected},\).*got shape \({length},\)"):
        make(jnp.ones(length))
    make(np.ones(expected))  # the right length is accepted


def test_time_level_weights_must_be_one_dimensional():
    with pytest.raises(ValueError, match="time_level_weights"):
        Supervised(2, time_level_weights=jnp.ones((2, 1)))


def test_branch_level_weights_length():
    with pytest.raises(ValueError, match=r"branch_level_weights.*\(2,\).*got shape \(3,\)"):
        DivertedChain(3, 2, branch_level_weights=jnp.ones(3))


def test_num_branch_steps():
    with pytest.raises(ValueError, match=r"num_branch_steps: expected at most num_rollout_steps = 2, got 3"):
        DivertedChain(2, 3)
    with pytest.raises(ValueError, match=r"num_branch_steps.*>= 1, got 0"):
        DivertedChain(2, 0)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: TeacherForcing(3, 0), "reset_every"),
        (lambda: MixChainPostPhysics(2, 0), "num_post_physics_steps"),
        (lambda: MixChainPrePhysics(2, 0), "num_pre_physics_steps"),
    ],
)
def test_other_counts(make, name):
    with pytest.raises(ValueError, match=rf"{name}.*>= 1, got 0"):
        make()


def test_composite_arguments():
    with pytest.raises(ValueError, match="configurations"):
        Composite([])
    with pytest.raises(TypeError, match=r"configurations\[1\]"):
        Composite([Supervised(), MSELoss()])
    with pytest.raises(ValueError, match=r"weights.*\(2,\).*got shape \(1,\)"):
        Composite([Supervised(), Residuum()], [1.0])


# --------------------------------------------------------------------------- call time


def stepper(u):
    return 0.9 * u


DATA = jnp.ones((2, 3, 1, 8))


@pytest.mark.parametrize(
    "cfg, needed",
    [
        (Supervised(3), 4),
        (TeacherForcing(4, 2), 5),
        (MixChainPostPhysics(2, 2), 5),
        (MixChainPrePhysics(1, 3), 5),
        (Composite([Supervised(1), Supervised(5)]), 6),
    ],
)
def test_too_few_time_levels(cfg, needed):
    # prove nothing is traced: a stepper that is called fails the test
    def untraceable(u):  # pragma: no cover
        raise AssertionError("traced before validation")

    with pytest.raises(ValueError, match=rf"data: expected at least {needed} time levels.*got 3"):
        cfg(untraceable, DATA, ref_stepper=stepper)


@pytest.mark.parametrize(
    "cfg, name",
    [
        (DivertedChainBranchOne(2), "ref_stepper"),
        (DivertedChain(2, 2), "ref_stepper"),
        (MixChainPostPhysics(1, 1), "ref_stepper"),
        (MixChainPrePhysics(1, 1), "ref_stepper"),
        (Residuum(2), "residuum_fn"),
        (Composite([Supervised(1), Residuum(1)]), "residuum_fn"),
    ],
)
def test_missing_helper(cfg, name):
    with pytest.raises(ValueError, match=rf"{name}: expected .* needs it.*got None") as info:
        cfg(stepper, DATA)
    # the message names the configuration that needs it
    expected_owner = "Residuum" if isinstance(cfg, Composite) else type(cfg).__name__
    assert expected_owner in str(info.value)


def test_helper_must_be_callable():
    with pytest.raises(TypeError, match="ref_stepper"):
        DivertedChainBranchOne(1)(stepper, DATA, ref_stepper=3)
    with pytest.raises(TypeError, match="stepper"):
        Supervised(1)(None, DATA)


@pytest.mark.parametrize(
    "data",
    [
        jnp.ones((2, 3)),
        {"a": jnp.ones((2, 3, 1, 4)), "b": jnp.ones(4)},
        [1.0, 2.0],
        {},
        {"a": jnp.ones((2, 3, 1, 4)), "b": jnp.ones((2, 4, 1, 4))},
        "data",
    ],
    ids=["2d", "leaf_1d", "floats", "empty", "mismatch", "string"],
)
def test_bad_data(data):
    with pytest.raises(ValueError, match="data: expected"):
        Supervised(1)(stepper, data)


def test_stepper_changing_shape():
    with pytest.raises(ValueError, match="stepper"):
        Supervised(1)(lambda u: u[:, :4], DATA)


def test_validation_happens_before_tracing():
    traced = []

    def counting(u):
        traced.append(1)
        return u

    with pytest.raises(ValueError):
        Supervised(5)(counting, DATA)
    with pytest.raises(ValueError):
        DivertedChain(2, 2)(counting, DATA)
    assert not traced
