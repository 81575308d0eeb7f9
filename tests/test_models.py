"""Bring your own model: equinox modules, (apply, params) pairs, user brainstate modules."""

import brainstate
import braintrace
import equinox as eqx
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from online_emulate import gradient_fidelity, value_and_grad
from online_emulate.configuration import Supervised
from online_emulate.emulators import adapt, hidden_state
from online_emulate.estimators import BPTT, ETrace, ForwardRTRL, TruncatedBPTT
from online_emulate.metrics import rollout
from online_emulate.online import ExcludedParameterError
from online_emulate.sample_data import advection_1d_periodic
from online_emulate.trainer import GeneralTrainer, SupervisedTrainer


@pytest.fixture(scope="module")
def data():
    return advection_1d_periodic(num_points=16, num_samples=6, cfl=-0.75, temporal_horizon=12, key=jax.random.PRNGKey(0))


def eqx_conv(key=1):
    return eqx.nn.Conv1d(1, 1, 3, padding="SAME", padding_mode="CIRCULAR", key=jax.random.PRNGKey(key))


def conv_pair(net):
    """The same convolution as an (apply, params) pair, written by hand."""
    def apply(p, u):  # one state (1, N)
        padded = jnp.concatenate([u[:, -1:], u, u[:, :1]], axis=-1)
        out = jax.lax.conv_general_dilated(padded[None], p["w"], (1,), "VALID")[0]
        return out + p["b"][:, None]
    return apply, {"w": net.weight, "b": net.bias[:, 0]}


def hand_rollout_loss(step, u0, targets):
    """Supervised MSE by a Python loop (no library code)."""
    u, loss = u0, 0.0
    for t in range(targets.shape[1]):
        u = jax.vmap(step)(u)
        loss = loss + jnp.mean(jnp.mean((u - targets[:, t]) ** 2, axis=(1, 2)))
    return loss


# --------------------------------------------------------------- value_and_grad
@pytest.mark.parametrize("estimator", [BPTT(), BPTT(checkpoint="step"), ForwardRTRL()], ids=repr)
def test_equinox_and_pair_gradients_equal_plain_jax(data, estimator):
    net = eqx_conv()
    windows = data[:4, :4]
    ref_loss, ref_g = eqx.filter_value_and_grad(lambda m: hand_rollout_loss(m, windows[:, 0], windows[:, 1:]))(net)
    loss, g = value_and_grad(Supervised(3), net, windows, estimator=estimator)
    assert isinstance(g, eqx.nn.Conv1d)  # gradients shaped like the model's parameters
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(g.weight, ref_g.weight, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g.bias, ref_g.bias, rtol=1e-4, atol=1e-6)
    apply, params = conv_pair(net)
    loss_p, g_p = value_and_grad(Supervised(3), (apply, params), windows, estimator=estimator)
    np.testing.assert_allclose(loss_p, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(g_p["w"], ref_g.weight, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g_p["b"], ref_g.bias[:, 0], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------- trainers
def test_equinox_model_trains_and_comes_back_as_equinox(data):
    net = eqx_conv()
    before = np.asarray(net.weight).copy()
    trainer = SupervisedTrainer(data, optimizer=optax.adam(1e-2), num_training_steps=30, batch_size=8, num_rollout_steps=2, progress_bar=False)
    trained, history = trainer(net, 0)
    assert type(trained) is eqx.nn.Conv1d and trained.padding_mode == "CIRCULAR"
    np.testing.assert_array_equal(net.weight, before)  # the input is not modified
    assert history[-1] < history[0]
    # the (apply, params) pair of the same convolution follows the same path exactly
    apply, params = conv_pair(net)
    (apply_out, trained_params), history_p = trainer((apply, params), 0)
    assert apply_out is apply
    np.testing.assert_allclose(trained_params["w"], trained.weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(history_p, history, rtol=1e-5)


def test_equinox_model_with_forward_rtrl_and_truncated_bptt(data):
    for estimator in (ForwardRTRL(), TruncatedBPTT(2)):
        trainer = SupervisedTrainer(data, optimizer=optax.adam(1e-2), num_training_steps=20, batch_size=8, num_rollout_steps=4, estimator=estimator, progress_bar=False)
        trained, history = trainer(eqx_conv(), 0)
        assert isinstance(trained, eqx.nn.Conv1d) and history[-1] < history[0]


def test_seed_parallel_with_equinox(data):
    trainer = SupervisedTrainer(data, optimizer=optax.adam(1e-2), num_training_steps=10, batch_size=8, progress_bar=False)
    trained, losses = trainer.train_seeds([eqx_conv(1), eqx_conv(2)], keys=[0, 1])
    ref, hist = trainer(eqx_conv(2), 1)
    np.testing.assert_allclose(trained[1].weight, ref.weight, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(losses[1], hist, rtol=1e-5)


# ------------------------------------------------------------------- metrics
def test_rollout_accepts_every_model_kind(data):
    net = eqx_conv()
    u0 = data[:3, 0]
    expected = [u0]
    for _ in range(4):
        expected.append(jax.vmap(net)(expected[-1]))
    expected = jnp.stack(expected[1:], axis=1)
    np.testing.assert_allclose(rollout(net, u0, 4), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rollout(conv_pair(net), u0, 4), expected, rtol=1e-5, atol=1e-6)


def test_gradient_fidelity_with_an_equinox_model(data):
    rows = gradient_fidelity(eqx_conv(), Supervised(3), data[:4], [ForwardRTRL(), TruncatedBPTT(1)])
    assert rows[0]["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert rows[1]["cosine"] < 0.9999


# --------------------------------------------------------------------- ETrace
class UserConv(brainstate.nn.Module):
    """A user's two-layer braintrace network (steps channel-last batches (B, N, C))."""

    def __init__(self, width=4):
        super().__init__()
        self.inner = braintrace.nn.Conv1d((16, 1), width, 3, padding="SAME")
        self.outer = braintrace.nn.Conv1d((16, width), 1, 3, padding="SAME")

    def __call__(self, x):
        h = hidden_state(self.inner(x), "inner")
        return self.outer(jnp.tanh(h))


def test_user_brainstate_module_under_etrace_equals_truncated_bptt_one():
    # a non-residual network whose inner output is a declared hidden state: braintrace's
    # D_RTRL is exactly truncated BPTT with truncation 1 (plain jax.grad per step)
    model = UserConv()
    windows = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 1, 16))
    loss, g = value_and_grad(Supervised(3), model, windows, estimator=ETrace("d_rtrl"))
    ref_loss, ref_g = value_and_grad(Supervised(3), model, windows, estimator=TruncatedBPTT(1))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref_g)):
        assert float(jnp.abs(b).max()) > 0
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_user_brainstate_module_trains_with_bptt_and_etrace(data):
    for estimator in (BPTT(), ETrace("d_rtrl")):
        trainer = SupervisedTrainer(data, optimizer=optax.adam(1e-2), num_training_steps=15, batch_size=4, num_rollout_steps=2, estimator=estimator, progress_bar=False)
        model = UserConv()
        trained, history = trainer(model, 0)
        assert isinstance(trained, UserConv) and trained is not model
        assert np.all(np.isfinite(history)) and history[-1] < history[0]


def test_undeclared_inner_layer_is_an_error_not_a_zero_gradient():
    class Undeclared(UserConv):
        def __call__(self, x):
            return self.outer(jnp.tanh(self.inner(x)))

    windows = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 1, 16))
    with pytest.raises(ExcludedParameterError, match=r"(?s)Undeclared.*inner.*hidden_state.*ForwardRTRL"):
        value_and_grad(Supervised(2), Undeclared(), windows, estimator=ETrace("d_rtrl"))


def test_plain_jnp_weight_is_an_error_naming_the_parameter():
    class Scaled(UserConv):
        def __init__(self):
            super().__init__()
            self.gain = brainstate.ParamState(jnp.ones(()))

        def __call__(self, x):
            return self.gain.value * super().__call__(x)

    windows = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 1, 16))
    with pytest.raises(ValueError, match=r"(?s)Scaled.*gain.*BPTT"):
        value_and_grad(Supervised(2), Scaled(), windows, estimator=ETrace("d_rtrl"))


class PowerConv(eqx.Module):
    """A convolution followed by a learned power: `pow` has no braintrace ETP op."""
    conv: eqx.nn.Conv1d
    exponent: jax.Array

    def __call__(self, u):
        return jnp.abs(self.conv(u)) ** self.exponent


@pytest.mark.parametrize("kind", ["equinox", "pair"])
def test_etrace_on_an_op_it_cannot_lift_names_model_parameter_op_and_alternatives(data, kind):
    net = PowerConv(eqx_conv(), jnp.ones(()))
    if kind == "equinox":
        model, pattern = net, r"(?s)PowerConv.*exponent.*`pow`.*ForwardRTRL"
    else:
        apply, params = conv_pair(net.conv)
        model = (lambda p, u: jnp.abs(apply(p, u)) ** p["e"], {**params, "e": jnp.ones(())})
        pattern = r"(?s)pair.*\['e'\].*`pow`.*ForwardRTRL"
    with pytest.raises(TypeError, match=pattern):
        value_and_grad(Supervised(2), model, data[:2, :3], estimator=ETrace("d_rtrl"))
    trainer = SupervisedTrainer(data, optimizer=optax.adam(1e-2), num_training_steps=2, batch_size=4, estimator=ETrace("d_rtrl"), progress_bar=False)
    with pytest.raises(TypeError, match=pattern):
        trainer(model, 0)


# -------------------------------------------------------------------- errors
def test_unknown_model_kind_is_a_type_error(data):
    trainer = GeneralTrainer(Supervised(1), data, optimizer=optax.adam(1e-2), num_training_steps=1, batch_size=2, progress_bar=False)
    for bad in ("model", (1, 2), jnp.ones(3)):
        with pytest.raises(TypeError, match="emulator"):
            trainer(bad, 0)
    with pytest.raises(ValueError, match="emulator"):  # wrong shape, before compiling
        trainer(eqx.nn.Conv1d(2, 1, 3, padding="SAME", key=jax.random.PRNGKey(0)), 0)
    assert adapt(eqx_conv()).kind == "equinox"


def test_callbacks_and_checkpoint_resume_with_an_equinox_model(data, tmp_path):
    from online_emulate.callback import CheckpointCallback, GradNormCallback, ValidationRolloutCallback

    def make(callbacks=()):
        return SupervisedTrainer(data, optimizer=optax.adam(1e-2), num_training_steps=20, batch_size=4, callbacks=callbacks, progress_bar=False, steps_per_call=6)

    path = str(tmp_path / "c_{step}.pkl")
    callbacks = [GradNormCallback(every=5), ValidationRolloutCallback(data[:2], every=5), CheckpointCallback(path, every=10)]
    trained, history = make(callbacks)(eqx_conv(), 0)
    assert [s for s, _ in history.records["grad_norm"]] == [0, 5, 10, 15, 20]
    assert all(np.isfinite(v) for _, v in history.records["val_nrmse"])
    resumed, resumed_history = make()(eqx_conv(), 0, resume_from=str(tmp_path / "c_10.pkl"))
    np.testing.assert_array_equal(resumed.weight, trained.weight)
    np.testing.assert_array_equal(resumed_history, history)


def _dot_lhs_shapes(jaxpr):
    """lhs shapes of every dot_general in a (closed) jaxpr, sub-jaxprs included."""
    shapes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            shapes.append(tuple(eqn.invars[0].aval.shape))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            shapes.extend(_dot_lhs_shapes(sub))
    return shapes


def test_adapters_say_when_apply_steps_batches():
    from online_emulate.configuration import BatchStepper
    from online_emulate.emulators import ConvNet, as_stepper, functional

    net = ConvNet(1, 1, 1, hidden_channels=4, depth=2)
    assert functional(net)[0].steps_batches
    assert isinstance(as_stepper(net), BatchStepper)
    conv = eqx.nn.Conv1d(1, 1, 3, padding="SAME", padding_mode="CIRCULAR", key=jax.random.PRNGKey(0))
    assert not adapt(conv).apply.steps_batches  # state rank unknown: vmapped one state
    assert adapt(conv, state_ndim=2).apply.steps_batches


def test_as_stepper_names_the_callers_argument_in_its_rank_error():
    from online_emulate.emulators import ConvNet, as_stepper

    net = ConvNet(1, 1, 1, hidden_channels=4, depth=2)  # a 1-D stepper: 3-axis batches
    with pytest.raises(ValueError, match=r"^states: expected a batch of states"):
        as_stepper(net, states=(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"^initial_states: expected .*3 axes for this 1-D"):
        as_stepper(net, states=(2, 1, 8, 8), states_name="initial_states")
    assert as_stepper(net, states=(2, 1, 8), states_name="initial_states") is not None


def test_bptt_runs_the_builtin_convolutions_on_the_whole_batch():
    """Every matrix product of a built-in ConvNet's BPTT gradient has B * N rows (the
    batch stepped whole), none the per-sample rows of a vmapped one-state step; the
    value and gradient equal those through the vmapped one-state path."""
    from online_emulate.emulators import ConvNet, functional

    B, N = 4, 16
    apply, params = functional(ConvNet(1, 1, 1, hidden_channels=6, depth=3))
    data = jax.random.normal(jax.random.PRNGKey(1), (B, 4, 1, N))
    config = Supervised(3)
    jaxpr = jax.make_jaxpr(lambda p: BPTT().value_and_grad(config, apply, p, data))(params)
    lhs = _dot_lhs_shapes(jaxpr.jaxpr)
    assert lhs and all(s[0] == B * N or s[-1] == B * N for s in lhs), lhs

    def vmapped(p):
        return config(lambda u: apply(p, u), data)  # a plain one-state stepper is vmapped

    v, g = BPTT().value_and_grad(config, apply, params, data)
    v_ref, g_ref = jax.value_and_grad(vmapped)(params)
    np.testing.assert_allclose(v, v_ref, rtol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g, g_ref)


class ArrayInitConv(brainstate.nn.Module):
    """A user's network whose layers keep an array initializer as a static attribute
    (`b_init=jnp.zeros(...)`), which makes brainstate's graph definition unhashable."""

    def __init__(self):
        super().__init__()
        self.conv = braintrace.nn.Conv1d((16, 1), 1, 3, padding="SAME", b_init=jnp.zeros(1))

    def __call__(self, x):
        return self.conv(x)


def test_user_module_with_an_array_static_attribute_trains_and_matches_jax_grad(data):
    model = ArrayInitConv()
    adapter = adapt(model, state_ndim=2)
    # the gradient through the library equals plain jax.grad of a hand-written rollout
    window = jnp.asarray(data[:4, :3])
    loss, grads = value_and_grad(Supervised(2), model, window)

    ref_loss, ref_grads = jax.value_and_grad(lambda p: hand_rollout_loss(
        lambda u: adapter.apply(p, u), window[:, 0], window[:, 1:]))(adapter.params)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                           grads, ref_grads)
    # a trainer called twice on it (the benchmark's pattern) trains both times
    trainer = SupervisedTrainer(data, optimizer=optax.adam(3e-2), num_training_steps=80,
                                batch_size=4, num_rollout_steps=2, progress_bar=False)
    for _ in range(2):
        trainer.reset()
        trained, history = trainer(model, key=0)
        loss = np.asarray(history)
        assert isinstance(trained, ArrayInitConv)
        assert np.all(np.isfinite(loss)) and loss[-10:].mean() < 0.5 * loss[:10].mean()
