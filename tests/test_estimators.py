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
    with pytest.raises(ValueError, match=r"(?s)B\*H\*P\*itemsize = 58368 bytes.*memory_budget_bytes = 1000"):
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
