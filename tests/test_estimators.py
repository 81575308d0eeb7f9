"""Gradient estimators against exact BPTT (tiny sizes, float32)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from online_emulate.configuration import (DivertedChain, DivertedChainBranchOne, Residuum,
                                          Supervised, TeacherForcing)
from online_emulate.emulators import ConvNet, LinearStencil
from online_emulate.estimators import (BPTT, ETrace, ForwardRTRL, TruncatedBPTT,
                                       gradient_fidelity, value_and_grad)
from online_emulate.estimators._fidelity import compiled_temp_bytes, flat_vector

B, N = 2, 16


def rel(a, b):
    a, b = flat_vector(a), flat_vector(b)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.fixture(scope="module")
def data():
    return jax.random.normal(jax.random.PRNGKey(0), (B, 6, 1, N))


def ref_stepper(u):
    return 0.5 * (u + jnp.roll(u, 1, axis=-1))


EMULATORS = {
    "stencil": lambda: LinearStencil(1, 1, 1, kernel_size=3),
    "convnet_residual": lambda: ConvNet(1, 1, 1, hidden_channels=3, depth=2, residual=True),
}


@pytest.mark.parametrize("name", sorted(EMULATORS))
@pytest.mark.parametrize("estimator", [BPTT(checkpoint="step"), BPTT(checkpoint="sqrt"), ForwardRTRL()],
                         ids=repr)
def test_exact_estimators_equal_bptt(name, estimator, data):
    emu = EMULATORS[name]()
    cfg = Supervised(5)
    l0, g0 = value_and_grad(cfg, emu, data)
    l1, g1 = value_and_grad(cfg, emu, data, estimator=estimator)
    assert jnp.allclose(l0, l1, rtol=1e-5)
    assert rel(g1, g0) < 1e-5


@pytest.mark.parametrize("cfg", [DivertedChainBranchOne(4, cut_div_chain=True), Residuum(4, cut_prev=True),
                                 TeacherForcing(5, 2)], ids=repr)
def test_forward_rtrl_exact_on_online_configurations(cfg, data):
    emu = LinearStencil(1, 1, 1)
    kw = dict(ref_stepper=ref_stepper, residuum_fn=lambda n, p: n - ref_stepper_batch(p))
    l0, g0 = value_and_grad(cfg, emu, data, **kw)
    l1, g1 = value_and_grad(cfg, emu, data, estimator=ForwardRTRL(), **kw)
    assert jnp.allclose(l0, l1, rtol=1e-5) and rel(g1, g0) < 1e-5


def ref_stepper_batch(u):
    return jax.vmap(ref_stepper)(u)


def test_truncated_bptt_full_window_is_exact_and_k1_is_onestep(data):
    emu = LinearStencil(1, 1, 1)
    cfg = Supervised(5)
    _, g0 = value_and_grad(cfg, emu, data)
    _, g5 = value_and_grad(cfg, emu, data, estimator=TruncatedBPTT(5))
    assert rel(g5, g0) < 1e-5
    _, g1 = value_and_grad(cfg, emu, data, estimator=TruncatedBPTT(1))
    assert rel(g1, g0) > 1e-3  # truncation changes the gradient for T > 1


@pytest.mark.parametrize("estimator", [ETrace("d_rtrl"), ETrace("es_d_rtrl", decay=0.9)], ids=repr)
def test_etrace_equals_bptt_at_one_step(estimator, data):
    emu = ConvNet(1, 1, 1, hidden_channels=3, depth=2)
    cfg = Supervised(1)
    l0, g0 = value_and_grad(cfg, emu, data[:, :2])
    l1, g1 = value_and_grad(cfg, emu, data[:, :2], estimator=estimator)
    assert jnp.allclose(l0, l1, rtol=1e-5) and rel(g1, g0) < 1e-5


def test_d_rtrl_equals_truncated_bptt_1_for_nonresidual_stencil(data):
    emu = LinearStencil(1, 1, 1)
    cfg = Supervised(5)
    _, gt = value_and_grad(cfg, emu, data, estimator=TruncatedBPTT(1))
    _, ge = value_and_grad(cfg, emu, data, estimator=ETrace("d_rtrl"))
    assert rel(ge, gt) < 1e-5


def test_two_layer_convnet_gets_gradient_in_every_layer(data):
    emu = ConvNet(1, 1, 1, hidden_channels=3, depth=2)
    _, g = value_and_grad(Supervised(3), emu, data, estimator=ETrace("d_rtrl"))
    for layer in g["layers"].values():
        for leaf in layer.values():
            assert float(jnp.abs(leaf).max()) > 0


def test_unsupported_pair_lists_supported_estimators(data):
    emu = LinearStencil(1, 1, 1)
    for est in [ETrace("d_rtrl"), ForwardRTRL(), TruncatedBPTT(2)]:
        with pytest.raises(ValueError, match=r"BPTT\(checkpoint='sqrt'\)"):
            value_and_grad(DivertedChain(3, 1), emu, data, estimator=est, ref_stepper=ref_stepper)
    # BPTT works on it
    value_and_grad(DivertedChain(3, 1), emu, data, estimator=BPTT(checkpoint="sqrt"),
                   ref_stepper=ref_stepper)


def test_forward_rtrl_budget_error_before_allocation():
    emu = ConvNet(1, 1, 1, hidden_channels=8, depth=2)
    data = jnp.zeros((4, 2, 1, 64))
    # 2*B*H*P + P*P numbers: B=4, H=64, P=57 -> (29184 + 3249) * 4 bytes
    with pytest.raises(ValueError, match=r"(?s)\(2\*B\*H\*P \+ P\*P\)\*itemsize = 129732 bytes.*memory_budget_bytes = 1000"):
        value_and_grad(Supervised(1), emu, data, estimator=ForwardRTRL(memory_budget_bytes=1000))


def test_bad_estimator_options():
    with pytest.raises(ValueError, match="checkpoint"):
        BPTT(checkpoint="half")
    with pytest.raises(ValueError, match="k"):
        TruncatedBPTT(0)
    with pytest.raises(ValueError, match="decay"):
        ETrace("es_d_rtrl")
    with pytest.raises(ValueError, match="algorithm"):
        ETrace("uoro")
    with pytest.raises(TypeError, match="estimator"):
        value_and_grad(Supervised(1), LinearStencil(1, 1, 1), jnp.zeros((1, 2, 1, 8)), estimator="bptt")


def test_gradient_fidelity_rows(data):
    emu = LinearStencil(1, 1, 1)
    rows = gradient_fidelity(emu, lambda T: Supervised(T), data,
                             estimators=[BPTT(checkpoint="sqrt"), ETrace("d_rtrl")],
                             rollout_lengths=[1, 5])
    assert len(rows) == 4
    for r in rows:
        assert set(r) >= {"estimator", "T", "cosine", "rel_error", "temp_bytes", "time_per_step"}
        assert r["time_per_step"] > 0
    # temp_bytes is XLA's temp memory of that estimator's compiled program on that window
    for r, est, T in zip(rows, [BPTT(checkpoint="sqrt"), ETrace("d_rtrl")] * 2, [1, 1, 5, 5]):
        assert r["T"] == T and r["estimator"] == repr(est)
        assert r["temp_bytes"] == compiled_temp_bytes(est, Supervised(T), emu, data[:, :T + 1]) > 0
    assert rows[0]["rel_error"] < 1e-5 and abs(rows[1]["cosine"] - 1) < 1e-5


# ------------------------------------------------------------- cuts and resets (issue 11)
def hand_loss(apply, params, data, *, steps, cut_every=None, reset_every=None, window=None):
    """Hand-written Supervised / TeacherForcing loss with every cut as a stop_gradient."""
    u, total = data[:, 0], 0.0
    for t in range(steps):
        if reset_every is not None and t > 0 and t % reset_every == 0:
            u = data[:, t]
        cut = (cut_every is not None and t > 0 and t % cut_every == 0) or \
              (window is not None and t % window == 0)
        if cut:
            u = jax.lax.stop_gradient(u)
        u = apply(params, u)
        total = total + jnp.mean(jnp.square(u - data[:, t + 1]))
    return total


def _hand_grad(emu, data, **kw):
    from online_emulate.emulators import functional

    apply, params = functional(emu)
    return jax.grad(lambda p: hand_loss(apply, p, data, **kw))(params)


@pytest.fixture(scope="module")
def data7():
    return 0.5 * jax.random.normal(jax.random.PRNGKey(3), (B, 7, 1, N))


def test_forward_rtrl_honours_cut_bptt_against_a_hand_written_gradient(data7):
    emu = ConvNet(1, 1, 1, hidden_channels=3, depth=2, residual=True, key=1)
    cfg = Supervised(6, cut_bptt=True, cut_bptt_every=2)
    _, g = value_and_grad(cfg, emu, data7, estimator=ForwardRTRL())
    assert rel(g, _hand_grad(emu, data7, steps=6, cut_every=2)) < 1e-5
    assert rel(g, _hand_grad(emu, data7, steps=6)) > 1e-2  # the cut matters here


def test_forward_rtrl_honours_teacher_forcing_with_cuts(data7):
    emu = ConvNet(1, 1, 1, hidden_channels=3, depth=2, residual=True, key=1)
    cfg = TeacherForcing(6, 3, cut_bptt=True, cut_bptt_every=2)
    _, g = value_and_grad(cfg, emu, data7, estimator=ForwardRTRL())
    assert rel(g, _hand_grad(emu, data7, steps=6, cut_every=2, reset_every=3)) < 1e-5


def test_truncated_bptt_windows_and_cuts_combine(data7):
    emu = ConvNet(1, 1, 1, hidden_channels=3, depth=2, residual=True, key=1)
    cfg = Supervised(6, cut_bptt=True, cut_bptt_every=2)
    _, g = value_and_grad(cfg, emu, data7, estimator=TruncatedBPTT(3))
    assert rel(g, _hand_grad(emu, data7, steps=6, cut_every=2, window=3)) < 1e-5


def _online_configurations():
    # the quick loop runs the cut every 2 steps on Supervised and TeacherForcing; every
    # other configuration and flag value is slow (each case compiles three estimators)
    for cut_bptt, every in [(True, 2), (False, 1), (True, 1), (True, 4)]:
        kw = dict(cut_bptt=cut_bptt, cut_bptt_every=every)
        for i, cfg in enumerate((Supervised(5, **kw), TeacherForcing(5, 2, **kw),
                                 TeacherForcing(5, 3, **kw),
                                 DivertedChainBranchOne(5, cut_div_chain=True, **kw),
                                 Residuum(5, cut_prev=True, **kw))):
            marks = () if every == 2 and i < 2 else (pytest.mark.slow,)
            yield pytest.param(cfg, marks=marks, id=repr(cfg))


@pytest.mark.parametrize("cfg", list(_online_configurations()))
def test_forward_rtrl_equals_bptt_for_every_online_configuration_and_flag(cfg, data7):
    emu = ConvNet(1, 1, 1, hidden_channels=3, depth=2, residual=True, key=2)
    kw = dict(ref_stepper=ref_stepper, residuum_fn=lambda n, p: n - ref_stepper_batch(p))
    l0, g0 = value_and_grad(cfg, emu, data7, **kw)
    l1, g1 = value_and_grad(cfg, emu, data7, estimator=ForwardRTRL(), **kw)
    assert jnp.allclose(l0, l1, rtol=1e-5) and rel(g1, g0) < 1e-5
    _, g2 = value_and_grad(cfg, emu, data7, estimator=TruncatedBPTT(5), **kw)
    assert rel(g2, g0) < 1e-5


def test_truncated_bptt_runs_only_the_rollout_steps():
    # u -> 10 u: the term after step R would overflow; with ceil(R/k)*k steps the
    # zero-weighted extra step made the loss 0 * inf = nan
    emu = LinearStencil(1, 1, 1, kernel_size=1, use_bias=False)
    from online_emulate.emulators import set_params

    set_params(emu, {"conv": {"weight": jnp.full((1, 1, 1), 10.0)}})
    data = jnp.zeros((1, 6, 1, 4)).at[:, 0].set(3.0e13)
    loss, g = value_and_grad(Supervised(5), emu, data, estimator=TruncatedBPTT(2))
    assert np.isfinite(float(loss)) and np.isfinite(flat_vector(g)).all()


def test_forward_rtrl_memory_check_counts_the_identity():
    # B*H*P = 1*4*P is small; the P x P identity dominates
    emu = ConvNet(1, 1, 1, hidden_channels=16, depth=2, kernel_size=3)
    data = jnp.zeros((1, 2, 1, 4))
    with pytest.raises(ValueError, match="memory_budget_bytes = 10000"):
        value_and_grad(Supervised(1), emu, data, estimator=ForwardRTRL(memory_budget_bytes=10_000))


# ----------------------------------------------------- true-diagonal D_RTRL (item 8)
def true_diagonal_d_rtrl(emu, data, steps):
    """Hand-written D_RTRL with D_t = diag(du_{t+1}/du_t): per state element i,
    eps_i <- D_ii eps_i + du_{t+1,i}/dtheta;  g += dL_t/du_{t+1} . eps."""
    from jax.flatten_util import ravel_pytree

    from online_emulate.emulators import functional

    apply, params = functional(emu)
    flat, unravel = ravel_pytree(params)
    f = lambda th, u: apply(unravel(th), u)  # noqa: E731
    u = data[:, 0]
    eps = jnp.zeros(u.shape + (flat.size,))
    g = jnp.zeros_like(flat)
    for t in range(steps):
        dtheta = jax.jacfwd(f, argnums=0)(flat, u)                  # (B, C, N, P)
        du = jax.vmap(lambda v: jax.jacfwd(lambda w: apply(params, w))(v))(u)  # (B, C, N, C, N)
        size = u[0].size
        diag = jnp.diagonal(du.reshape(u.shape[0], size, size), axis1=1, axis2=2).reshape(u.shape)
        eps = diag[..., None] * eps + dtheta
        u = apply(params, u)
        dl = jax.grad(lambda v: jnp.mean(jnp.square(v - data[:, t + 1])))(u)
        g = g + jnp.tensordot(dl, eps, axes=(tuple(range(u.ndim)), tuple(range(u.ndim))))
    return unravel(g)


@pytest.mark.parametrize("kernel_size", [pytest.param(1, marks=pytest.mark.slow), 3])
def test_coupled_d_rtrl_is_the_true_diagonal_d_rtrl(kernel_size, data7):
    emu = LinearStencil(1, 1, 1, kernel_size=kernel_size, key=5)
    _, g = value_and_grad(Supervised(6), emu, data7, estimator=ETrace("d_rtrl", recurrence="coupled"))
    assert rel(g, true_diagonal_d_rtrl(emu, data7, 6)) < 1e-5
    _, g_diag = value_and_grad(Supervised(6), emu, data7, estimator=ETrace("d_rtrl"))
    assert rel(g_diag, g) > 1e-2  # braintrace's default scope is something else


def test_coupled_d_rtrl_on_a_diagonal_jacobian_is_exact_with_cuts(data7):
    # kernel 1: the Jacobian is diagonal, so true-diagonal D_RTRL is exact RTRL, and
    # the traces must restart at the configuration's cuts
    emu = LinearStencil(1, 1, 1, kernel_size=1, key=5)
    cfg = Supervised(6, cut_bptt=True, cut_bptt_every=2)
    _, g = value_and_grad(cfg, emu, data7, estimator=ETrace("d_rtrl", recurrence="coupled"))
    _, g0 = value_and_grad(cfg, emu, data7)
    assert rel(g, g0) < 1e-5
    assert rel(g, _hand_grad(emu, data7, steps=6)) > 1e-3


def test_etrace_recurrence_is_validated():
    with pytest.raises(ValueError, match="recurrence"):
        ETrace("d_rtrl", recurrence="full")


def test_etrace_takes_an_unhashable_reference_stepper():
    # exponax steppers are equinox modules holding arrays: not hashable, so the ETrace
    # window cache must not hash them (the CLI's bench failed on exactly this)
    eqx = pytest.importorskip("equinox")

    class ScaledShift(eqx.Module):
        scale: jax.Array

        def __call__(self, u):
            return self.scale * jnp.roll(u, 1, axis=-1)

    unhashable = ScaledShift(jnp.asarray(0.9))
    with pytest.raises(TypeError):
        hash(unhashable)
    emu = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    data = jax.random.normal(jax.random.PRNGKey(0), (2, 1, 1, 16))
    cfg = DivertedChainBranchOne(3, cut_div_chain=True)
    est = ETrace("d_rtrl")
    loss, grads = value_and_grad(cfg, emu, data, estimator=est, ref_stepper=unhashable)
    ref_loss, ref_grads = value_and_grad(cfg, emu, data, estimator=est,
                                         ref_stepper=lambda u: 0.9 * jnp.roll(u, 1, axis=-1))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), grads,
                           ref_grads)
