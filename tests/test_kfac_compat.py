"""kfac-jax import, compatibility-shim detection, options and layouts."""

import builtins
import importlib
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

kfac_jax = pytest.importorskip("kfac_jax")

from online_emulate.emulators import ConvNet, LinearStencil, functional  # noqa: E402
from online_emulate.optim import KFAC, _compat  # noqa: E402
from online_emulate.optim._compat import (  # noqa: E402
    apply_kfac_shim,
    bind_params_convention,
    eval_eqn_works,
)
from online_emulate.optim._layout import lift_params, lifted_leaf_mask, lower_params  # noqa: E402


def _old_style_eval(eqn, in_values):
    """An evaluator written for the (subfuns, params) convention."""
    subfuns, params = eqn.primitive.get_bind_params(eqn.params)
    return [eqn.primitive.bind(*subfuns, *in_values, **params)]


def test_detection_matches_installed_jax():
    convention = bind_params_convention()
    assert convention in ("dict", "pair")
    # the old-convention evaluator works exactly when jax still returns a pair
    assert eval_eqn_works(_old_style_eval) == (convention == "pair")
    # our evaluator works under either convention
    assert eval_eqn_works(_compat._compatible_eval_jaxpr_eqn)
    assert not eval_eqn_works(lambda eqn, vals: [jnp.cos(vals[0])])


def test_shim_applied_only_when_needed():
    tgm = importlib.import_module("kfac_jax._src.tag_graph_matcher")
    apply_kfac_shim()
    assert not _compat.kfac_needs_shim(tgm)
    if bind_params_convention() == "dict":
        assert tgm.eval_jaxpr_eqn is _compat._compatible_eval_jaxpr_eqn
    # a module whose evaluator already works is left alone
    fake = type("M", (), {"eval_jaxpr_eqn": staticmethod(_compat._compatible_eval_jaxpr_eqn)})
    assert not _compat.kfac_needs_shim(fake)


def test_missing_kfac_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "kfac_jax" or name.startswith("kfac_jax."):
            raise ImportError("No module named 'kfac_jax'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(
        importlib, "import_module",
        lambda name, *a: fake_import(name) if name.startswith("kfac_jax") else real_import(name),
    )
    for mod in [m for m in sys.modules if m.startswith("kfac_jax")]:
        monkeypatch.delitem(sys.modules, mod)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[kfac\]"'):
        KFAC()


def test_options_validated_by_name():
    with pytest.raises(TypeError, match="not_an_option"):
        KFAC(not_an_option=1)
    with pytest.raises(ValueError, match="value_and_grad_func"):
        KFAC(value_and_grad_func=lambda p, b: (0.0, p))
    with pytest.raises(ValueError, match="curvature_scale"):
        KFAC(curvature_scale=-1.0)
    kfac = KFAC(inverse_update_period=3, use_adaptive_momentum=False, momentum_schedule=None)
    assert kfac.options["inverse_update_period"] == 3
    assert kfac.options["use_adaptive_learning_rate"] is True
    with pytest.raises(RuntimeError, match="build"):
        kfac.init({}, jax.random.PRNGKey(0), jnp.zeros((2, 2, 1, 8)))


@pytest.mark.parametrize(
    "emulator",
    [
        ConvNet(1, 2, 2, hidden_channels=4, depth=3, kernel_size=5, residual=True, key=3),
        LinearStencil(1, 1, 1, kernel_size=3, key=1),
        ConvNet(2, 1, 1, hidden_channels=3, depth=2, kernel_size=3, key=2),
    ],
)
def test_lax_evaluation_of_kfac_layout_matches_etp_module(emulator):
    """Curvature evaluates apply (plain lax) on the K-FAC layout; same outputs as ETP."""
    apply, params = functional(emulator)
    shape = (3, emulator.in_channels) + (16,) * emulator.num_spatial_dims
    u = jax.random.normal(jax.random.PRNGKey(0), shape)
    mask = lifted_leaf_mask(params, emulator.num_spatial_dims)
    lifted = lift_params(params, mask)
    if emulator.num_spatial_dims == 1:
        assert any(jax.tree_util.tree_leaves(mask))
        assert all(x.ndim in (1, 4) for x in jax.tree_util.tree_leaves(lifted))
    expected = emulator(u)  # braintrace ETP path
    np.testing.assert_allclose(apply(lifted, u), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply(params, u), expected, rtol=1e-5, atol=1e-5)
    back = lower_params(lifted, mask)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)


def _hand_rollout_loss(apply, params, data, steps):
    """Supervised(steps) with MSE written out: sum over steps of the batch mean of the
    mean squared error over channel and space."""
    total, u = 0.0, data[:, 0]
    for t in range(steps):
        u = jax.vmap(lambda x: apply(params, x))(u)
        total = total + jnp.mean((u - data[:, t + 1]) ** 2)
    return total


# 13-14 s: K-FAC's training run belongs to the full suite
@pytest.mark.slow
def test_kfac_minimises_the_bound_loss_with_its_gradient():
    """K-FAC's loss and gradient are the binding's: those of a hand-written rollout
    (plain jax.grad), through the 1-D kernels' lifted K-FAC layout; the deprecated
    build(apply, configuration) binds the same problem and warns."""
    from online_emulate.configuration import Supervised
    from online_emulate.estimators import BPTT, TruncatedBPTT

    emulator = ConvNet(1, 1, 1, hidden_channels=4, depth=2, kernel_size=3, key=0)
    apply, params = functional(emulator)
    data = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (4, 4, 1, 16))
    key = jax.random.PRNGKey(0)
    ref_loss, ref_grads = jax.value_and_grad(lambda p: _hand_rollout_loss(apply, p, data, 3))(params)
    bound = BPTT().bind(Supervised(3), emulator, state_shape=(1, 16))
    kfac = KFAC(inverse_update_period=1).build(bound)
    state = kfac.init(params, key, data)
    assert any(jax.tree_util.tree_leaves(kfac._mask))  # the lifted layout is exercised
    lifted = lift_params(params, kfac._mask)
    loss, grads = kfac.optimizer._value_and_grad_func(lifted, kfac._prepare(lifted, data))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(lower_params(grads, kfac._mask)),
                    jax.tree_util.tree_leaves(ref_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    _, _, step_loss = kfac.step(params, state, data, key)
    np.testing.assert_allclose(step_loss, ref_loss, rtol=1e-5)
    with pytest.warns(DeprecationWarning, match="build"):
        old = KFAC(inverse_update_period=1).build(apply, Supervised(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the same Kronecker blocks
        old_state = old.init(params, key, data)
    assert old.blocks == kfac.blocks
    _, _, old_loss = old.step(params, old_state, data, key)
    np.testing.assert_allclose(old_loss, ref_loss, rtol=1e-5)
    with pytest.raises(ValueError, match="bound: expected a binding of a BPTT"):
        KFAC().build(TruncatedBPTT(2).bind(Supervised(3), emulator, state_shape=(1, 16)))
