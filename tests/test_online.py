"""Online learning: braintrace exclusion check and the 10,000-step streaming trainer."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from online_emulate._checks import key_data
from online_emulate.configuration import Supervised
from online_emulate.emulators import ConvNet, LinearStencil, get_params, set_params
from online_emulate.estimators import ETrace, TruncatedBPTT, value_and_grad
from online_emulate.online import (ExcludedParameterError, OnlineTrainer, RecurrentEmulator,
                                   compile_learner)
from online_emulate.trainer import TrainingDiverged, load_checkpoint


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


@pytest.mark.slow  # a 10,000-step stream
def test_streaming_10000_steps(tmp_path):
    emu = LinearStencil(1, 1, 1, key=3)
    # a contracting start: a free run of 10,000 steps stays finite
    set_params(emu, {"conv": {"weight": jnp.full((3, 1, 1), 0.3)}})
    before = get_params(emu)
    path = os.path.join(tmp_path, "ckpt.npz")
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
    restored = OnlineTrainer(LinearStencil(1, 1, 1), optax.adam(1e-2), ic_sampler=_ic, ref_stepper=_ref,
                             rollout_length=10, progress_bar=False).restore(path)
    # the last checkpoint (update 100) is the end state of the stream
    assert restored.step == trainer.step == 100
    jax.tree_util.tree_map(np.testing.assert_array_equal, restored.params, trainer.params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, restored.params, after)
    assert [h["step"] for h in restored.history] == [h["step"] for h in trainer.history]
    np.testing.assert_array_equal(key_data(restored.key), key_data(trainer.key))


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


# ---------------------------------------------------------------- stream sources
def _stream_data(num=4, levels=41, n=16):
    x = jnp.linspace(0, 2 * jnp.pi, n, endpoint=False)
    phase = jnp.arange(num)[:, None, None, None] * 0.7
    t = jnp.arange(levels)[None, :, None, None]
    return np.asarray(jnp.sin(x[None, None, None] + phase - 0.3 * t), np.float32)  # (num, levels, 1, n)


def test_online_trainer_streams_reference_data_without_a_stepper():
    data = _stream_data()
    trainer = OnlineTrainer(LinearStencil(1, 1, 1, kernel_size=3, key=0), optax.adam(3e-2),
                            reference_data=data, batch_size=2, rollout_length=10, num_rollouts=40,
                            update_every=5, estimator=TruncatedBPTT(5), progress_bar=False)
    trainer.train()
    losses = [h["loss"] for h in trainer.history]
    assert len(losses) == 40 * 2
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])


def test_online_trainer_is_deterministic():
    def run():
        t = OnlineTrainer(LinearStencil(1, 1, 1, kernel_size=3, key=1), optax.adam(1e-2), ic_sampler=_ic,
                          ref_stepper=_ref, rollout_length=20, num_rollouts=2, update_every=5,
                          estimator=ETrace("d_rtrl"), progress_bar=False, key=4)
        t.train()
        return t
    a, b = run(), run()
    jax.tree_util.tree_map(np.testing.assert_array_equal, a.params, b.params)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_online_trainer_divergence_keeps_last_good_params(tmp_path):
    emu = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    trainer = OnlineTrainer(emu, optax.sgd(1e6), ic_sampler=_ic, ref_stepper=_ref, rollout_length=20,
                            num_rollouts=20, update_every=5, estimator=TruncatedBPTT(5), progress_bar=False,
                            checkpoint_path=str(tmp_path / "ckpt.npz"))
    with pytest.raises(TrainingDiverged) as info:
        trainer.train()
    params = get_params(info.value.emulator)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(params))
    saved = load_checkpoint(info.value.checkpoint)
    jax.tree_util.tree_map(np.testing.assert_array_equal, saved["params"], params)


def test_online_trainer_reference_data_validation():
    data = _stream_data(levels=11)
    with pytest.raises(ValueError, match="reference_data"):
        OnlineTrainer(LinearStencil(1, 1, 1), optax.adam(1e-2), reference_data=data, batch_size=2, rollout_length=20)
    with pytest.raises(ValueError, match="batch_size"):
        OnlineTrainer(LinearStencil(1, 1, 1), optax.adam(1e-2), reference_data=data, batch_size=9, rollout_length=5)


def test_online_trainer_second_call_continues_rollout_numbering():
    t = OnlineTrainer(LinearStencil(1, 1, 1, kernel_size=3), optax.adam(1e-2), ic_sampler=_ic, ref_stepper=_ref,
                      rollout_length=6, num_rollouts=2, update_every=3, estimator=TruncatedBPTT(3), progress_bar=False)
    t.train()
    t.train()
    assert [h["rollout"] for h in t.history] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [h["update"] for h in t.history] == list(range(1, 9))
