"""ETrace on any model: the parameter-consuming operations of equinox modules, pairs and
plain-jax brainstate modules lifted into braintrace ETP ops (`emulators/_lift.py`),
checked against networks written by hand with braintrace ops, and against the exact
facts the README publishes for the built-in emulators."""

import brainstate
import braintrace
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pdequinox as pdeqx
import pytest

from online_emulate.configuration import Supervised
from online_emulate.emulators import ConvNet, LinearStencil, _adapters, _lift, adapt, hidden_state
from online_emulate.estimators import BPTT, ETrace, TruncatedBPTT, value_and_grad
from online_emulate.sample_data import advection_1d_periodic
from online_emulate.trainer import OnlineTrainer

VARIANTS = [ETrace("d_rtrl"), ETrace("d_rtrl", recurrence="coupled"),
            ETrace("es_d_rtrl", decay=0.9)]


@pytest.fixture(scope="module")
def data():
    return jnp.asarray(advection_1d_periodic(num_points=16, num_samples=2, cfl=-0.75,
                                             temporal_horizon=21, key=jax.random.PRNGKey(0)))


def pdeqx_convnet(hidden=4, depth=1, key=0):
    return pdeqx.arch.ConvNet(1, 1, 1, hidden_channels=hidden, depth=depth,
                              activation=jax.nn.relu, boundary_mode="periodic",
                              key=jax.random.PRNGKey(key))


class HandConvNet(brainstate.nn.Module):
    """pdequinox's periodic ConvNet written by hand with braintrace's ETP convolution,
    channel-last (the layout a user's brainstate module steps), each inner layer's
    output declared a hidden state (what the README tells users to do)."""

    def __init__(self, net):
        super().__init__()
        self.kernels = [brainstate.ParamState(jnp.transpose(c.weight, (2, 1, 0)))
                        for c in net.layers]  # (out, in, k) -> (k, in, out)
        self.biases = [brainstate.ParamState(c.bias[:, 0]) for c in net.layers]

    def __call__(self, x):  # (B, N, C)
        h = x
        for i, (k, b) in enumerate(zip(self.kernels, self.biases)):
            padded = jnp.pad(h, ((0, 0), (1, 1), (0, 0)), mode="wrap")
            h = braintrace.conv(padded, k.value, b.value, strides=(1,), padding="VALID",
                                dimension_numbers=("NWC", "WIO", "NWC"))
            if i < len(self.kernels) - 1:
                h = jax.nn.relu(hidden_state(h))
        return h


def _hand_grads_as_pdeqx(g, net):
    """The hand network's gradient dict in the pdequinox layout."""
    layers = [(jnp.transpose(g["kernels"][i], (2, 1, 0)), g["biases"][i][:, None])
              for i in range(len(net.layers))]
    return [x for pair in layers for x in pair]


def _pdeqx_grads(g):
    return [x for c in g.layers for x in (c.weight, c.bias)]


def _assert_close(got, want, rtol=1e-5):
    for a, b in zip(got, want):
        scale = float(jnp.abs(b).max()) or 1.0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("estimator", VARIANTS, ids=repr)
@pytest.mark.parametrize("rollout", [1, 5, pytest.param(20, marks=pytest.mark.slow)])
def test_lifted_pdequinox_convnet_equals_the_hand_written_braintrace_network(data, estimator, rollout):
    net = pdeqx_convnet(depth=1)
    windows = data[:, :rollout + 1]
    loss, g = value_and_grad(Supervised(rollout), net, windows, estimator=estimator)
    ref_loss, ref_g = value_and_grad(Supervised(rollout), HandConvNet(net), windows,
                                     estimator=estimator)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    _assert_close(_pdeqx_grads(g), _hand_grads_as_pdeqx(ref_g, net))


@pytest.mark.parametrize("estimator", [ETrace("d_rtrl"), ETrace("es_d_rtrl", decay=0.9)],
                         ids=repr)
@pytest.mark.parametrize("rollout", [1, pytest.param(5, marks=pytest.mark.slow),
                                     pytest.param(20, marks=pytest.mark.slow)])
def test_the_lifted_kernel_order_does_not_change_loss_or_gradient(data, estimator, rollout,
                                                                  monkeypatch):
    """A lifted convolution reads its kernel in the model's order, in (in, *space, out)
    order, as a width-1 convolution over its input's patches, or as those patches times
    the kernel matrix through this library's ETP primitive with its own trace layout
    (`_lift.KERNEL_ORDER`, chosen per algorithm for speed): the same numbers."""
    net = pdeqx_convnet(depth=2, key=1)
    windows = data[:, :rollout + 1]
    results = []
    for order in _lift.KERNEL_ORDERS:
        monkeypatch.setattr(_lift, "KERNEL_ORDER", dict.fromkeys(("d_rtrl", "es_d_rtrl"), order))
        results.append(value_and_grad(Supervised(rollout), net, windows, estimator=estimator))
    (ref_loss, ref_g), *others = results
    for loss, g in others:
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        _assert_close(_pdeqx_grads(g), _pdeqx_grads(ref_g))


# the longest window: the full suite (the rollouts 1 above run in the quick loop)
@pytest.mark.slow
def test_lifted_deeper_pdequinox_convnet_at_rollout_20(data):
    """Two inner layers (an inner layer feeding an inner layer), the longest window."""
    net = pdeqx_convnet(depth=2, key=3)
    estimator = ETrace("es_d_rtrl", decay=0.8)
    loss, g = value_and_grad(Supervised(20), net, data, estimator=estimator)
    ref_loss, ref_g = value_and_grad(Supervised(20), HandConvNet(net), data, estimator=estimator)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    _assert_close(_pdeqx_grads(g), _hand_grads_as_pdeqx(ref_g, net))


def test_lifted_plain_conv_in_diagonal_scope_equals_truncated_bptt_1(data):
    """u -> conv(u) + b: braintrace's diagonal scope drops the convolution from the
    transition, so D_RTRL is TruncatedBPTT(1) exactly (README), for a lifted model too."""
    conv = eqx.nn.Conv1d(1, 1, 3, padding="SAME", padding_mode="CIRCULAR",
                         key=jax.random.PRNGKey(1))
    windows = data[:, :7]
    loss, g = value_and_grad(Supervised(6), conv, windows, estimator=ETrace("d_rtrl"))
    ref_loss, ref_g = value_and_grad(Supervised(6), conv, windows, estimator=TruncatedBPTT(1))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    _assert_close([g.weight, g.bias], [ref_g.weight, ref_g.bias])


def test_lifted_kernel_1_stencil_in_coupled_scope_equals_bptt(data):
    """u -> w * u + b (a kernel-1 convolution, diagonal Jacobian): the coupled scope keeps
    that diagonal, so D_RTRL is exact RTRL and equals BPTT (README), for a pair too."""
    def apply(p, u):  # one state (1, N)
        y = jax.lax.conv_general_dilated(u[None], p["w"], (1,), "VALID")[0]
        return y + p["b"][:, None]

    model = (apply, {"w": jnp.full((1, 1, 1), 0.9), "b": jnp.full((1,), 0.05)})
    windows = data[:, :9]
    loss, g = value_and_grad(Supervised(8), model, windows,
                             estimator=ETrace("d_rtrl", recurrence="coupled"))
    ref_loss, ref_g = value_and_grad(Supervised(8), model, windows, estimator=BPTT())
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    _assert_close([g["w"], g["b"]], [ref_g["w"], ref_g["b"]])


class PlainConv(brainstate.nn.Module):
    """A user's brainstate module written with plain jax ops (no braintrace)."""

    def __init__(self):
        super().__init__()
        self.kernel = brainstate.ParamState(jnp.array([[[0.2]], [[0.5]], [[0.3]]]))  # (k, in, out)
        self.gain = brainstate.ParamState(jnp.ones((1,)))

    def __call__(self, x):  # (B, N, C)
        padded = jnp.pad(x, ((0, 0), (1, 1), (0, 0)), mode="wrap")
        y = jax.lax.conv_general_dilated(padded, self.kernel.value, (1,), "VALID",
                                         dimension_numbers=("NWC", "WIO", "NWC"))
        return self.gain.value * y


def test_a_plain_jax_brainstate_module_is_lifted(data):
    windows = data[:, :5]
    module = PlainConv()
    loss, g = value_and_grad(Supervised(4), module, windows, estimator=ETrace("d_rtrl"))
    ref_loss, ref_g = value_and_grad(Supervised(4), module, windows, estimator=TruncatedBPTT(1))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    # the gain scales the convolution's output: a lifted scale feeding no other lifted
    # op, and the kernel feeds the scale (declared a hidden state): one-step traces
    _assert_close([g["kernel"], g["gain"]], [ref_g["kernel"], ref_g["gain"]])


@pytest.mark.parametrize("make", [
    lambda k: pdeqx.arch.ClassicResNet(1, 1, 1, hidden_channels=4, num_blocks=1,
                                       boundary_mode="periodic", key=k),
    pytest.param(lambda k: pdeqx.arch.ClassicUNet(1, 1, 1, hidden_channels=4, num_levels=1,
                                                  boundary_mode="periodic", key=k),
                 marks=pytest.mark.slow),  # ~30 s on 2 cores
    pytest.param(lambda k: pdeqx.arch.ModernResNet(1, 1, 1, hidden_channels=4, num_blocks=1,
                                                   boundary_mode="periodic", key=k),
                 marks=pytest.mark.slow),  # ~9 s on 2 cores
], ids=["ClassicResNet", "ClassicUNet(group norm)", "ModernResNet"])
def test_pdequinox_resnet_and_unet_in_diagonal_scope_equal_truncated_bptt_1(data, make):
    """No global skip: every path from the field to the next field crosses a lifted op,
    so diagonal-scope D_RTRL is TruncatedBPTT(1) exactly (strided and transposed
    convolutions, group norm's scale and bias included)."""
    net = make(jax.random.PRNGKey(2))
    windows = data[:, :4]
    loss, g = value_and_grad(Supervised(3), net, windows, estimator=ETrace("d_rtrl"))
    ref_loss, ref_g = value_and_grad(Supervised(3), net, windows, estimator=TruncatedBPTT(1))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    _assert_close(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref_g), rtol=1e-4)


def test_lifted_ops_and_hidden_states_of_the_pdequinox_convnet():
    net = pdeqx_convnet(depth=1)
    module = adapt(net, state_ndim=2).recurrent_module((2, 1, 16))
    kinds = [(kind, declared) for kind, _, declared in module.lifted_ops]
    # the lifting and projection convolutions (depth 1), each with its bias folded in;
    # the first one's output reaches the second
    assert kinds == [("conv", True), ("conv", False)]


@pytest.mark.parametrize("model, layout", [(lambda: pdeqx_convnet(depth=1), "first"),
                                           (PlainConv, "last")], ids=["pdequinox", "NWC"])
def test_d_rtrl_lifts_stride_1_convolutions_to_the_patch_primitive(model, layout):
    """The speed of D_RTRL rests on its convolutions being this library's ETP primitive
    (`_patch_op`), in the model's channel-first or channel-last layout, with its trace
    kept as two factors (a plain conv net's hidden-to-hidden Jacobian is zero in the
    diagonal scope); the tests above prove its numbers."""
    module = adapt(model(), state_ndim=2).recurrent_module((2, 1, 16))
    ops = module._s.reference.ops.values()
    assert [op.options.get("matrix") for op in ops if op.kind == "conv"] == \
        [layout] * sum(op.kind == "conv" for op in ops)
    traced = jax.make_jaxpr(module._forward)(jnp.zeros((2, 1, 16) if layout == "first"
                                                       else (2, 16, 1)))
    names = {e.primitive.name for e in traced.jaxpr.eqns}
    suffix = ("" if layout == "first" else "_channel_last") + "_factored"
    assert "online_emulate_patch_matmul" + suffix in names and "etp_conv" not in names


def _stream_trainer(data, num_rollouts, **options):
    return OnlineTrainer(optimizer=optax.adam(1e-3), rollout_length=8, num_rollouts=num_rollouts,
                         update_every=4, estimator=ETrace("d_rtrl", recurrence="coupled"),
                         reference_data=data,
                         batch_size=2, progress_bar=False, **options)


def test_online_trainer_streams_a_pdequinox_model_and_resumes(data):
    net = pdeqx_convnet(depth=1, key=4)
    trainer = _stream_trainer(data, 1)
    trained, first = trainer(net, key=0)
    assert isinstance(trained, pdeqx.arch.ConvNet)
    resumed, history = trainer.resume()
    # the history goes on from the first call's; one longer stream from the same start
    # is the same run
    long_trained, whole = _stream_trainer(data, 2)(net, key=0)
    assert len(first.loss) == 2 and len(history.loss) == 4
    np.testing.assert_allclose(history.loss, whole.loss, rtol=1e-6)
    _assert_close(jax.tree_util.tree_leaves(eqx.filter(resumed, eqx.is_inexact_array)),
                  jax.tree_util.tree_leaves(eqx.filter(long_trained, eqx.is_inexact_array)))
    # the traces persist across the updates within a rollout (coupled scope: they carry
    # the convolutions' centre taps from step to step): without them the second update
    # of each rollout takes another gradient
    reset_trained, _ = _stream_trainer(data, 2, persist_carry=False)(net, key=0)
    leaves = [jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_inexact_array))
              for m in (reset_trained, long_trained)]
    assert max(float(jnp.abs(a - b).max()) for a, b in zip(*leaves)) > 1e-6


def test_a_dense_layer_on_a_state_without_space_is_lifted_to_a_matmul():
    """An equinox Linear stepping a state (C,): the vmapped `weight @ x` and the bias
    become one braintrace.matmul with its bias, and diagonal-scope D_RTRL is
    TruncatedBPTT(1) exactly."""
    net = eqx.nn.Linear(4, 4, key=jax.random.PRNGKey(0))
    windows = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4))
    module = adapt(net, state_ndim=1).recurrent_module((2, 4))
    assert [kind for kind, _, _ in module.lifted_ops] == ["matmul"]
    loss, g = value_and_grad(Supervised(3), net, windows, estimator=ETrace("d_rtrl"))
    ref_loss, ref_g = value_and_grad(Supervised(3), net, windows, estimator=TruncatedBPTT(1))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    _assert_close([g.weight, g.bias], [ref_g.weight, ref_g.bias])


def test_a_dense_layer_on_the_flattened_state_is_refused_naming_it(data):
    """braintrace relates an op to the hidden state it writes position by position; an
    equinox Linear on the flattened field writes it through a reshape."""
    net = eqx.nn.Sequential([eqx.nn.Lambda(jnp.ravel), eqx.nn.Linear(16, 16, key=jax.random.PRNGKey(0)),
                             eqx.nn.Lambda(lambda v: v[None])])
    with pytest.raises(TypeError, match=r"(?s)Sequential.*layers\[1\]\.weight.*`dot_general`.*reshape.*BPTT"):
        value_and_grad(Supervised(2), net, data[:, :3], estimator=ETrace("d_rtrl"))


def test_a_parameter_inside_a_scan_is_refused_naming_it_and_the_op(data):
    def apply(p, u):  # two scaled sub-steps in a lax.scan: no ETP op sees the weight
        return jax.lax.scan(lambda c, _: (p["a"] * c, None), u, None, length=2)[0]

    with pytest.raises(TypeError, match=r"(?s)pair.*\['a'\].*`scan`.*ForwardRTRL"):
        value_and_grad(Supervised(2), (apply, {"a": jnp.array(0.5)}), data[:, :3],
                       estimator=ETrace("d_rtrl"))


@pytest.mark.parametrize("estimator", VARIANTS, ids=repr)
@pytest.mark.parametrize("make", [
    lambda: ConvNet(1, 1, 1, hidden_channels=4, depth=3, key=3),
    lambda: ConvNet(1, 1, 1, hidden_channels=3, depth=2, kernel_size=2, residual=True,
                    use_bias=False, key=4),
    lambda: LinearStencil(1, 1, 1, kernel_size=3, key=5),
], ids=["convnet", "residual_even_kernel", "stencil"])
@pytest.mark.parametrize("rollout", [1, pytest.param(5, marks=pytest.mark.slow)])
def test_a_built_in_emulator_lifted_equals_its_own_braintrace_convolutions(
        data, estimator, make, rollout, monkeypatch):
    """The built-in emulators are lifted like any model (their own `braintrace.conv`
    traces were several times slower); the reference is the same emulator compiled as
    written, through `braintrace.conv`."""
    model = make()
    windows = data[:, : rollout + 1]
    lifted = value_and_grad(Supervised(rollout), model, windows, estimator=estimator)
    assert isinstance(adapt(model, state_ndim=2).recurrent_module((2, 1, 16)),
                      _lift.LiftedModule)
    monkeypatch.setattr(_adapters.BrainstateAdapter, "_lifts_own_model", lambda self: False)
    assert adapt(model, state_ndim=2).recurrent_module((2, 1, 16)) is model
    as_written = value_and_grad(Supervised(rollout), model, windows, estimator=estimator)
    # both learners ran: one compiled on the lifted module, one on the emulator itself
    compiled = {type(r.emulator) for r in estimator._runners.values()}
    assert {type(model), _lift.LiftedModule} <= compiled
    np.testing.assert_allclose(float(lifted[0]), float(as_written[0]), rtol=1e-6)
    _assert_close(jax.tree_util.tree_leaves(lifted[1]), jax.tree_util.tree_leaves(as_written[1]))
    assert jax.tree_util.tree_structure(lifted[1]) == jax.tree_util.tree_structure(as_written[1])


def test_the_built_in_convnet_d_rtrl_runs_on_the_patch_primitive():
    module = adapt(ConvNet(1, 1, 1, hidden_channels=4, depth=3), state_ndim=2) \
        .recurrent_module((2, 1, 16))
    assert [declared for _, _, declared in module.lifted_ops] == [True, True, False]
    # lifted channel-first for D_RTRL, channel-last (its own layout) for ES_D_RTRL, the
    # faster of the two for each (`_adapters.BUILTIN_LIFT_LAYOUT`)
    assert module.field_channel_last is False
    es = adapt(ConvNet(1, 1, 1, hidden_channels=4, depth=3), state_ndim=2) \
        .recurrent_module((2, 1, 16), algorithm="es_d_rtrl")
    assert es.field_channel_last is True
    traced = jax.make_jaxpr(module._forward)(jnp.zeros((2, 1, 16)))
    names = {e.primitive.name for e in traced.jaxpr.eqns}
    assert "online_emulate_patch_matmul_factored" in names and "etp_conv" not in names


def test_the_patch_op_decay_is_exactly_zero_where_the_jacobian_is():
    """eps_t = D_t eps_{t-1}: where D_t is zero the old trace does not matter, not even an
    inf or NaN in it (what lets XLA skip reading it); elsewhere the plain product."""
    from online_emulate.emulators._patch_op import _decay

    trace = jnp.array([[jnp.inf, jnp.nan, 2.0, -3.0]])
    d = jnp.array([[0.0, 0.0, 0.5, jnp.nan]])
    got = np.asarray(_decay(trace, d))
    np.testing.assert_array_equal(got[0, :3], [0.0, 0.0, 1.0])
    assert np.isnan(got[0, 3])


def test_the_factored_trace_is_lifted_only_where_the_recurrent_jacobian_is_zero():
    """D_RTRL keeps a convolution's trace as its two factors only where no new hidden
    state depends on the old field except through a lifted product: a plain conv net,
    not one that adds its input to its output (the residual form's D_t is the
    identity, and its trace must carry over)."""
    def factored(model):
        module = adapt(model, state_ndim=2).recurrent_module((2, 1, 16))
        return [op.options.get("factored", False) for op in module._s.reference.ops.values()
                if op.kind == "conv"]

    assert factored(ConvNet(1, 1, 1, hidden_channels=3, depth=2, key=0)) == [True] * 2
    assert factored(ConvNet(1, 1, 1, hidden_channels=3, depth=2, residual=True,
                            key=0)) == [False] * 2
    # ES_D_RTRL and the coupled scope lift the plain product trace
    for algorithm in ("es_d_rtrl", "d_rtrl/coupled"):
        module = adapt(ConvNet(1, 1, 1, hidden_channels=3, depth=2, key=0), state_ndim=2) \
            .recurrent_module((2, 1, 16), algorithm=algorithm)
        assert not any(op.options.get("factored") for op in module._s.reference.ops.values())


def test_the_compiled_graph_check_finds_a_transition_that_reads_the_old_state():
    """The second check of the factored trace (`online._compile`): a transition whose
    output is computed from its input reads the old hidden state; one whose output is
    an input of the step (a product's output, a constvar) does not."""
    from online_emulate.online._compile import _reads_old_hidden

    h = jnp.ones(3)
    assert _reads_old_hidden(jax.make_jaxpr(lambda v: 2.0 * v)(h).jaxpr)
    closed = jax.make_jaxpr(lambda v: jnp.zeros(3))(h)
    assert not _reads_old_hidden(closed.jaxpr)


def test_the_factored_trace_turns_nan_where_the_recurrent_jacobian_is_not_zero():
    """The factored trace's recurrent rule never reads the old trace; a nonzero D_t
    (which the two checks rule out) would make the trace NaN, not silently wrong."""
    from online_emulate.emulators._patch_op import _factored_rules

    init, instant, recurrent, solve = _factored_rules(False)
    old = {"weight": jnp.full((2, 5, 4), 7.0), "bias": jnp.full((2, 1, 4, 1), 7.0)}
    zero = recurrent(jnp.zeros((2, 1, 4, 1, 1)), old, 1)
    assert all(float(jnp.abs(v).max()) == 0.0 for v in zero.values())
    bad = recurrent(jnp.zeros((2, 1, 4, 1, 1)).at[0, 0, 1].set(0.5), old, 1)
    assert all(bool(jnp.isnan(v).all()) for v in bad.values())

@pytest.mark.parametrize("channel_last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("num_state", [1, 2])
def test_the_factored_trace_solve_is_the_contraction_of_its_factors(channel_last, num_state):
    """grad[o, i] = sum_{b, s, a} x[b, i, s] df[b, o, s, a] g[b, o, s, a], per sample or
    summed over the batch, in either layout (2-D space, several states per group)."""
    from online_emulate.emulators._patch_op import _factored_rules

    init, instant, recurrent, solve = _factored_rules(channel_last)
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k[0], (2, 4, 3, 5))  # (B, in, *space)
    df = jax.random.normal(k[1], (2, 3, 3, 5, num_state))  # (B, out, *space, n)
    dg = jax.random.normal(k[2], (2, 3, 3, 5, num_state))
    want = np.einsum("bixy,boxya->boi", x, df * dg)
    want_bias = np.einsum("boxya->bo", df * dg)
    if channel_last:
        x, df, dg = jnp.moveaxis(x, 1, -1), jnp.moveaxis(df, 1, -2), jnp.moveaxis(dg, 1, -2)
    for fold in (False, True):
        got = solve(dg, instant(x, df, True), fold_batch=fold)
        np.testing.assert_allclose(got["weight"], want.sum(0) if fold else want, rtol=1e-5)
        np.testing.assert_allclose(got["bias"], want_bias.sum(0) if fold else want_bias,
                                   rtol=1e-5)
    assert set(solve(dg, instant(x, df, False))) == {"weight"}
