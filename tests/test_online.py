"""Streaming online training (online_emulate.trainer.OnlineTrainer) and the braintrace bridge.

The streamed gradients are checked against independent references: hand-written rollouts
differentiated with plain `jax.grad`, through an optimizer that never moves the
parameters and sums the gradients it is given.
"""

import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from online_emulate.callback import CheckpointCallback
from online_emulate.configuration import Supervised
from online_emulate.emulators import ConvNet, LinearStencil, functional, get_params, set_params
from online_emulate.estimators import ETrace, ForwardRTRL, TruncatedBPTT, value_and_grad
from online_emulate.online import ExcludedParameterError, RecurrentEmulator, compile_learner
from online_emulate.trainer import OnlineTrainer, TrainingDiverged, load_checkpoint


# ---------------------------------------------------------------- references
def accumulate():
    """An optax transformation that never moves the parameters; its state is the running
    sum of the gradients it was given."""

    def init(params):
        return jax.tree_util.tree_map(jnp.zeros_like, params)

    def update(grads, state, params=None):
        return (jax.tree_util.tree_map(jnp.zeros_like, grads),
                jax.tree_util.tree_map(jnp.add, state, grads))

    return optax.GradientTransformation(init, update)


def flat(tree):
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree_util.tree_leaves(tree)])


def rel(a, b):
    a, b = flat(a), flat(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def mse(a, b):
    return jnp.mean(jnp.square(a - b))


def hand_rollout_loss(apply, params, u0, targets, *, cut_every=None):
    """sum_t mse(u_{t+1}, targets[:, t]) of a free rollout, gradient cut every `cut_every`."""
    u, total = u0, 0.0
    for t in range(targets.shape[1]):
        if cut_every is not None and t > 0 and t % cut_every == 0:
            u = jax.lax.stop_gradient(u)
        u = apply(params, u)
        total = total + mse(u, targets[:, t])
    return total


def waves(num=2, levels=41, n=16, speed=0.3):
    x = np.linspace(0, 2 * np.pi, n, endpoint=False)
    phase = np.arange(num)[:, None, None, None] * 1.1
    t = np.arange(levels)[None, :, None, None]
    return (0.5 * np.sin(x[None, None, None] + phase - speed * t)).astype(np.float32)


def emulator():
    # residual and nonlinear: the hidden-to-hidden Jacobian is far from 0 and from I
    emu = ConvNet(1, 1, 1, hidden_channels=3, depth=2, residual=True, key=0)
    return emu


# ------------------------------------------------- item 5: streamed sums are exact
# 6 s: the full suite
@pytest.mark.slow
def test_streamed_forward_rtrl_sums_to_bptt_of_the_whole_rollout():
    data = waves()
    emu = emulator()
    apply, params = functional(emu)
    g_ref = jax.grad(lambda p: hand_rollout_loss(apply, p, jnp.asarray(data[:, 0]),
                                                 jnp.asarray(data[:, 1:])))(params)
    trainer = OnlineTrainer(optimizer=accumulate(), rollout_length=40, update_every=5,
                            estimator=ForwardRTRL(), reference_data=data, batch_size=2,
                            progress_bar=False)
    trained, history = trainer(emu, key=0)
    assert rel(trainer.opt_state, g_ref) <= 1e-4
    assert history.loss.shape == (8,)
    ref_loss = hand_rollout_loss(apply, params, jnp.asarray(data[:, 0]), jnp.asarray(data[:, 1:]))
    np.testing.assert_allclose(history.loss.sum(), float(ref_loss), rtol=1e-5)


def test_streamed_trajectory_from_ref_stepper_equals_stored_levels():
    # the reference advanced inside the loop by ref_stepper gives the same sum
    shift = lambda u: jnp.roll(u, 1, axis=-1)  # noqa: E731
    u0 = jnp.asarray(waves(levels=1)[:, 0])
    targets = [u0]
    for _ in range(20):
        targets.append(jax.vmap(shift)(targets[-1]))
    targets = jnp.stack(targets[1:], axis=1)
    emu = emulator()
    apply, params = functional(emu)
    g_ref = jax.grad(lambda p: hand_rollout_loss(apply, p, u0, targets))(params)
    trainer = OnlineTrainer(optimizer=accumulate(), rollout_length=20, update_every=3,
                            estimator=ForwardRTRL(), ic_sampler=lambda key: u0,
                            ref_stepper=shift, progress_bar=False)
    trainer(emu, key=0)
    assert rel(trainer.opt_state, g_ref) <= 1e-4


def test_streamed_etrace_sums_to_its_window_value_and_grad():
    data = waves()
    emu = emulator()
    _, g_ref = value_and_grad(Supervised(40), emu, jnp.asarray(data), estimator=ETrace("d_rtrl"))
    trainer = OnlineTrainer(optimizer=accumulate(), rollout_length=40, update_every=5,
                            estimator=ETrace("d_rtrl"), reference_data=data, batch_size=2,
                            progress_bar=False)
    trainer(emu, key=0)
    assert rel(trainer.opt_state, g_ref) <= 1e-4


# 12 s: the long stream belongs to the full suite
@pytest.mark.slow
def test_streamed_truncated_bptt_sums_to_its_window_value_and_grad():
    data = waves()
    emu = emulator()
    apply, params = functional(emu)
    _, g_lib = value_and_grad(Supervised(40), emu, jnp.asarray(data), estimator=TruncatedBPTT(5))
    g_ref = jax.grad(lambda p: hand_rollout_loss(apply, p, jnp.asarray(data[:, 0]),
                                                 jnp.asarray(data[:, 1:]), cut_every=5))(params)
    assert rel(g_lib, g_ref) <= 1e-5
    trainer = OnlineTrainer(optimizer=accumulate(), rollout_length=40, update_every=5,
                            estimator=TruncatedBPTT(5), reference_data=data, batch_size=2,
                            progress_bar=False)
    trainer(emu, key=0)
    assert rel(trainer.opt_state, g_ref) <= 1e-4


# 9 s: the full suite
@pytest.mark.slow
def test_reference_data_without_batch_size_streams_every_trajectory():
    """batch_size defaults to all stored trajectories: the accumulated gradient equals
    the hand-written rollout's over the whole set (and the explicit batch_size's)."""
    data = waves()
    emu = emulator()
    apply, params = functional(emu)
    g_ref = jax.grad(lambda p: hand_rollout_loss(apply, p, jnp.asarray(data[:, 0]),
                                                 jnp.asarray(data[:, 1:]), cut_every=5))(params)
    trainer = OnlineTrainer(optimizer=accumulate(), rollout_length=40, update_every=5,
                            estimator=TruncatedBPTT(5), reference_data=data,
                            progress_bar=False)
    assert trainer.batch_size == data.shape[0]
    trainer(emu, key=0)
    assert rel(trainer.opt_state, g_ref) <= 1e-4


def test_persist_carry_false_restarts_the_gradient_at_every_update():
    data = waves()
    emu = emulator()
    apply, params = functional(emu)
    g_restart = jax.grad(lambda p: hand_rollout_loss(
        apply, p, jnp.asarray(data[:, 0]), jnp.asarray(data[:, 1:]), cut_every=5))(params)
    g_full = jax.grad(lambda p: hand_rollout_loss(
        apply, p, jnp.asarray(data[:, 0]), jnp.asarray(data[:, 1:])))(params)
    assert rel(g_restart, g_full) > 1e-2  # the two references really differ
    trainer = OnlineTrainer(optimizer=accumulate(), rollout_length=40, update_every=5,
                            estimator=ForwardRTRL(), persist_carry=False, reference_data=data,
                            batch_size=2, progress_bar=False)
    trainer(emu, key=0)
    assert rel(trainer.opt_state, g_restart) <= 1e-4


def test_carry_restarts_at_each_rollout_and_a_short_last_update():
    # two rollouts of 12 steps (updates of 5, 5, 2): the sum is the sum of two
    # independent whole-rollout gradients
    data = waves(num=4, levels=13)
    emu = emulator()
    apply, params = functional(emu)

    def both(p):
        return sum(hand_rollout_loss(apply, p, jnp.asarray(data[rows, 0]), jnp.asarray(data[rows, 1:]))
                   for rows in ([0, 1], [2, 3]))

    trainer = OnlineTrainer(optimizer=accumulate(), rollout_length=12, num_rollouts=2,
                            update_every=5, estimator=ForwardRTRL(), reference_data=data,
                            batch_size=2, progress_bar=False)
    _, history = trainer(emu, key=0)
    assert history.loss.shape == (6,)
    assert rel(trainer.opt_state, jax.grad(both)(params)) <= 1e-4


def test_one_step_target_streams_the_diverted_chain_gradient():
    shift = lambda u: jnp.roll(u, 1, axis=-1)  # noqa: E731
    u0 = jnp.asarray(waves(levels=1)[:, 0])
    emu = emulator()
    apply, params = functional(emu)

    def loss(p):
        u, total = u0, 0.0
        for _ in range(12):
            target = jax.lax.stop_gradient(jax.vmap(shift)(u))
            u = apply(p, u)
            total = total + mse(u, target)
        return total

    trainer = OnlineTrainer(optimizer=accumulate(), rollout_length=12, update_every=4,
                            estimator=ForwardRTRL(), target="one_step", ic_sampler=lambda k: u0,
                            ref_stepper=shift, progress_bar=False)
    trainer(emu, key=0)
    assert rel(trainer.opt_state, jax.grad(loss)(params)) <= 1e-4


# ------------------------------------------------------------- training behaviour
def _shift_problem(num=8, levels=41):
    return waves(num=num, levels=levels, speed=2 * np.pi / 16)  # one cell per step


@pytest.mark.parametrize("estimator", [ForwardRTRL(), ETrace("d_rtrl"), TruncatedBPTT(5)])
def test_streaming_learns_and_leaves_the_emulator_alone(estimator):
    data = _shift_problem()
    emu = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    before = get_params(emu)
    trainer = OnlineTrainer(optimizer=optax.adam(1e-2), rollout_length=10, num_rollouts=40,
                            update_every=5, estimator=estimator, reference_data=data,
                            batch_size=2, progress_bar=False)
    trained, history = trainer(emu, key=0)
    jax.tree_util.tree_map(np.testing.assert_array_equal, get_params(emu), before)
    assert history.loss.shape == (80,)
    assert np.mean(history.loss[-8:]) < 0.3 * np.mean(history.loss[:8])
    assert trained is not emu


def test_resume_continues_the_stream_and_a_call_starts_fresh():
    data = _shift_problem()
    make = lambda: OnlineTrainer(optimizer=optax.adam(1e-2), rollout_length=10,  # noqa: E731
                                 num_rollouts=2, update_every=5, estimator=ForwardRTRL(),
                                 reference_data=data, batch_size=2, progress_bar=False)
    once = make()
    once.num_rollouts = 4
    full, h_full = once(LinearStencil(1, 1, 1, key=1), key=0)
    twice = make()
    half, h_half = twice(LinearStencil(1, 1, 1, key=1), key=0)
    again, h_two = twice.resume()
    np.testing.assert_array_equal(h_two.loss, h_full.loss)
    jax.tree_util.tree_map(np.testing.assert_array_equal, get_params(again), get_params(full))
    assert len(h_half) == len(h_full) // 2  # resume returned a new history object
    # a second call starts over from the model passed in, like the first call
    fresh, h_fresh = twice(LinearStencil(1, 1, 1, key=1), key=0)
    np.testing.assert_array_equal(h_fresh.loss, h_half.loss)
    jax.tree_util.tree_map(np.testing.assert_array_equal, get_params(fresh), get_params(half))


def test_equinox_model_and_pair_stream_like_the_builtin_stencil():
    eqx = pytest.importorskip("equinox")
    data = _shift_problem()

    def make():
        return OnlineTrainer(optimizer=optax.adam(1e-2), rollout_length=10, num_rollouts=2,
                             update_every=5, estimator=ForwardRTRL(), reference_data=data,
                             batch_size=2, progress_bar=False)

    stencil = LinearStencil(1, 1, 1, kernel_size=3, use_bias=False, key=1)
    built, h_built = make()(stencil, key=0)
    # the same periodic kernel-3 convolution as a one-sample pure function
    w0 = np.asarray(stencil.stencil)  # (C_out, C_in, k)

    def apply(params, u):  # u: (C, N)
        padded = jnp.concatenate([u[:, -1:], u, u[:, :1]], axis=-1)
        return jnp.einsum("oik,ikn->on", params["w"], jnp.stack(
            [padded[:, k:k + u.shape[-1]] for k in range(3)], axis=1))

    pair_trained, h_pair = make()((apply, {"w": jnp.asarray(w0)}), key=0)
    np.testing.assert_allclose(h_pair.loss, h_built.loss, rtol=1e-5, atol=1e-7)
    assert isinstance(pair_trained, tuple) and pair_trained[0] is apply
    np.testing.assert_allclose(pair_trained[1]["w"], np.asarray(built.stencil), rtol=1e-4,
                               atol=1e-6)
    conv = eqx.nn.Conv1d(1, 1, 3, padding="SAME", padding_mode="CIRCULAR", use_bias=False,
                         key=jax.random.PRNGKey(0))
    trained_conv, h_eqx = make()(conv, key=0)
    assert isinstance(trained_conv, eqx.nn.Conv1d)
    assert np.all(np.isfinite(h_eqx.loss)) and len(h_eqx) == len(h_built)
    assert not np.array_equal(np.asarray(trained_conv.weight), np.asarray(conv.weight))


@pytest.mark.parametrize("estimator", [ForwardRTRL(), ETrace("d_rtrl")])
def test_resume_is_bit_identical(tmp_path, estimator):
    data = _shift_problem()
    path = str(tmp_path / "ckpt{step}.npz")

    def make(callbacks=()):
        return OnlineTrainer(optimizer=optax.adam(1e-2), rollout_length=12, num_rollouts=2,
                             update_every=4, estimator=estimator, reference_data=data,
                             batch_size=2, progress_bar=False, steps_per_call=4,
                             callbacks=callbacks)

    full, h_full = make([CheckpointCallback(path, every=4)])(LinearStencil(1, 1, 1, key=2), key=0)
    # update 4 is mid-way through the second rollout: the carry is mid-rollout too
    resumed, h_res = make()(LinearStencil(1, 1, 1, key=2), key=0,
                            resume_from=path.format(step=4))
    np.testing.assert_array_equal(h_res.loss, h_full.loss)
    jax.tree_util.tree_map(np.testing.assert_array_equal, get_params(resumed), get_params(full))


def test_same_seed_same_result_with_an_ic_sampler():
    def run(seed):
        trainer = OnlineTrainer(optimizer=optax.adam(1e-2), rollout_length=10, num_rollouts=2,
                                update_every=5, estimator=ETrace("d_rtrl"),
                                ic_sampler=lambda key: jax.random.normal(key, (2, 1, 16)),
                                ref_stepper=lambda u: jnp.roll(u, 1, axis=-1), progress_bar=False)
        return trainer(LinearStencil(1, 1, 1, key=1), key=seed)

    (a, ha), (b, hb), (_, hc) = run(4), run(4), run(5)
    np.testing.assert_array_equal(ha.loss, hb.loss)
    jax.tree_util.tree_map(np.testing.assert_array_equal, get_params(a), get_params(b))
    assert not np.array_equal(ha.loss, hc.loss)


@pytest.mark.parametrize("estimator", [TruncatedBPTT(5), ETrace("d_rtrl")])
def test_divergence_keeps_the_state_of_the_reported_loss(tmp_path, estimator):
    data = _shift_problem()

    def make(rate, **kw):
        return OnlineTrainer(optimizer=optax.sgd(rate), rollout_length=20, num_rollouts=20,
                             update_every=5, estimator=estimator, reference_data=data,
                             batch_size=2, progress_bar=False, **kw)

    trainer = make(1e6, checkpoint_path=str(tmp_path / "ckpt.npz"))
    with pytest.raises(TrainingDiverged) as info:
        trainer(LinearStencil(1, 1, 1, kernel_size=3, key=0), key=0)
    err = info.value
    params = get_params(err.emulator)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(params))
    assert err.step == len(err.history.loss) and err.failed_step > err.step
    assert err.last_finite_loss is not None and f"{err.last_finite_loss:.6g}" in str(err)
    saved = load_checkpoint(err.checkpoint)
    jax.tree_util.tree_map(np.testing.assert_array_equal, saved["params"], params)
    # the checkpoint holds the stream where the kept state was: resuming evaluates the
    # reported loss again first, and a small rate trains on
    _, history = make(1e-3)(LinearStencil(1, 1, 1, kernel_size=3, key=0), resume_from=err.checkpoint)
    assert history.loss[err.step] == pytest.approx(err.last_finite_loss, rel=1e-5)
    assert np.isfinite(history.loss).all() and len(history.loss) == 20 * 4


@pytest.mark.slow
def test_streaming_10000_steps(tmp_path):
    emu = LinearStencil(1, 1, 1, key=3)
    # a contracting start: a free run of 10,000 steps stays finite
    set_params(emu, {"conv": {"weight": jnp.full((3, 1, 1), 0.3)}})
    path = str(tmp_path / "ckpt.npz")
    trainer = OnlineTrainer(optimizer=optax.adam(1e-2), rollout_length=10_000, update_every=100,
                            estimator=ETrace("d_rtrl"), target="one_step",
                            ic_sampler=lambda key: jax.random.normal(key, (2, 1, 16)),
                            ref_stepper=lambda u: 0.5 * (u + jnp.roll(u, 1, axis=-1)),
                            progress_bar=False, checkpoint_path=path, checkpoint_every=50)
    trained, history = trainer(emu, key=0)
    assert history.loss.shape == (100,) and np.isfinite(history.loss).all()
    assert float(jnp.abs(get_params(trained)["conv"]["weight"] - 0.3).max()) > 1e-3
    assert load_checkpoint(path)["step"] == 100


def test_trainer_validates_arguments():
    kw = dict(optimizer=optax.adam(1e-2), ic_sampler=lambda k: jnp.zeros((2, 1, 16)),
              ref_stepper=lambda u: u)
    with pytest.raises(ValueError, match="rollout_length"):
        OnlineTrainer(rollout_length=0, **kw)
    with pytest.raises(ValueError, match="target"):
        OnlineTrainer(rollout_length=5, target="x", **kw)
    with pytest.raises(TypeError, match="persist_carry"):
        OnlineTrainer(rollout_length=5, persist_carry="yes", **kw)
    with pytest.raises(TypeError, match="estimator"):
        OnlineTrainer(rollout_length=5, estimator=object(), **kw)
    with pytest.raises(TypeError, match="optimizer"):
        OnlineTrainer(rollout_length=5, optimizer=object(),
                      ic_sampler=kw["ic_sampler"], ref_stepper=kw["ref_stepper"])
    data = waves(levels=11)
    with pytest.raises(ValueError, match="reference_data"):
        OnlineTrainer(optimizer=optax.adam(1e-2), reference_data=data, batch_size=2, rollout_length=20)
    with pytest.raises(ValueError, match="batch_size"):
        OnlineTrainer(optimizer=optax.adam(1e-2), reference_data=data, batch_size=9, rollout_length=5)
    with pytest.raises(ValueError, match="ic_sampler"):
        OnlineTrainer(rollout_length=5, **kw)(LinearStencil(2, 2, 1), key=0)


def test_online_package_is_only_the_braintrace_bridge():
    import online_emulate.online as bridge

    assert not hasattr(bridge, "OnlineTrainer")
    assert set(bridge.__all__) == {"RecurrentEmulator", "compile_learner",
                                   "check_no_excluded_parameters", "ExcludedParameterError"}


# ----------------------------------------------------------- braintrace bridge
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


def test_etrace_keeps_no_emulator_alive_and_one_learner_per_structure():
    estimator = ETrace("d_rtrl")
    data = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 1, 16))
    emu = LinearStencil(1, 1, 1, key=0)
    value_and_grad(Supervised(2), emu, data, estimator=estimator)
    # the learner cache is shared by equal estimators (earlier tests' included)
    learners = len(estimator._runners)
    alive = weakref.ref(emu)
    del emu
    gc.collect()
    assert alive() is None
    # copies of one structure (as the trainers make every call) share one learner
    for seed in (1, 2, 3):
        value_and_grad(Supervised(2), LinearStencil(1, 1, 1, key=seed), data, estimator=estimator)
    assert len(estimator._runners) == learners
    # nothing is cached on the (immutable) estimator itself
    assert set(vars(estimator)) == {"algorithm", "decay", "recurrence"}


def test_bridge_imports_neither_estimators_nor_trainer():
    # imports run one way: bridge (online) -> estimators -> trainer
    import ast
    import pathlib

    import online_emulate.online as bridge

    for path in pathlib.Path(bridge.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert not any(part in module for part in ("estimators", "trainer")), (path, module)
