"""Online learning: braintrace exclusion check and the 10,000-step streaming trainer."""

import os

import jax
import jax.numpy as jnp
import optax
import pytest

from online_emulate.configuration import Supervised
from online_emulate.emulators import ConvNet, LinearStencil, get_params, set_params
from online_emulate.estimators import ETrace, TruncatedBPTT, value_and_grad
from online_emulate.online import (ExcludedParameterError, OnlineTrainer, RecurrentEmulator,
                                   compile_learner, load_checkpoint)


def test_exclusion_of_inner_layer_raises_naming_the_parameter():
    emu = ConvNet(1, 1, 1, hidden_channels=3, depth=2)
    model = RecurrentEmulator(emu, (2, 1, 16), intermediate_states=False)
    with pytest.raises(ExcludedParameterError, match=r"(?s)layers/0/weight.*Fix:"):
        compile_learner(model, "d_rtrl")


def test_parameter_without_etp_op_is_reported():
    import brainstate

    class Scaled(LinearStencil):
        def __init__(self):
            super().__init__(1, 1, 1)
            self.scale = brainstate.ParamState(jnp.ones(()))

        def _forward(self, x):
            return self.scale.value * self.conv(x)

    model = RecurrentEmulator(Scaled(), (2, 1, 16))
    with pytest.raises(ExcludedParameterError, match="scale"):
        compile_learner(model, "d_rtrl")


def test_recurrent_wrapper_validates_shape():
    with pytest.raises(ValueError, match="state_shape"):
        RecurrentEmulator(LinearStencil(1, 1, 1), (2, 3, 16))


def test_etrace_on_excluding_model_never_returns_silent_zero():
    # the estimator path uses intermediate states, so every ConvNet layer is trained
    emu = ConvNet(1, 1, 1, hidden_channels=3, depth=3)
    data = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 1, 16))
    _, g = value_and_grad(Supervised(2), emu, data, estimator=ETrace("es_d_rtrl", decay=0.5))
    assert all(float(jnp.abs(x).max()) > 0 for x in jax.tree_util.tree_leaves(g))


def _ref(u):
    return jnp.roll(u, 1, axis=-1)


def _smooth(u):
    return 0.5 * (u + jnp.roll(u, 1, axis=-1))


def _ic(key):
    return jax.random.normal(key, (2, 1, 16))


def test_streaming_10000_steps(tmp_path):
    emu = LinearStencil(1, 1, 1, key=3)
    # a contracting start: a free run of 10,000 steps stays finite
    set_params(emu, {"conv": {"weight": jnp.full((3, 1, 1), 0.3)}})
    before = get_params(emu)
    path = os.path.join(tmp_path, "ckpt.pkl")
    trainer = OnlineTrainer(emu, optax.adam(1e-2), ic_sampler=_ic, ref_stepper=_smooth,
                            target="one_step", rollout_length=10_000, update_every=100, estimator=ETrace("d_rtrl"),
                            progress_bar=False, checkpoint_path=path, checkpoint_every=50)
    trainer.train()
    assert len(trainer.history) == 100 and trainer.history[-1]["step"] == 10_000
    assert all(jnp.isfinite(h["loss"]) for h in trainer.history)
    after = get_params(emu)
    assert float(jnp.abs(after["conv"]["weight"] - before["conv"]["weight"]).max()) > 1e-3
    state = load_checkpoint(path)
    assert state["step"] == 100
    OnlineTrainer(LinearStencil(1, 1, 1), optax.adam(1e-2), ic_sampler=_ic, ref_stepper=_ref,
                  rollout_length=10, progress_bar=False).restore(path)


def test_streaming_learns_shift_once_per_rollout():
    emu = LinearStencil(1, 1, 1, key=3)
    trainer = OnlineTrainer(emu, optax.adam(3e-2), ic_sampler=_ic, ref_stepper=_ref,
                            rollout_length=20, num_rollouts=60, chunk_size=5,
                            estimator=TruncatedBPTT(5), progress_bar=False)
    trainer.train()
    assert trainer.history[-1]["loss"] < 0.2 * trainer.history[0]["loss"]


def test_trainer_validates_arguments():
    with pytest.raises(ValueError, match="rollout_length"):
        OnlineTrainer(LinearStencil(1, 1, 1), optax.adam(1e-2), ic_sampler=_ic, ref_stepper=_ref,
                      rollout_length=0)
    with pytest.raises(ValueError, match="target"):
        OnlineTrainer(LinearStencil(1, 1, 1), optax.adam(1e-2), ic_sampler=_ic, ref_stepper=_ref,
                      rollout_length=5, target="x")
