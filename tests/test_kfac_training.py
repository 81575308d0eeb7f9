"""K-FAC trains a residual conv net on 1-D Burgers better than adam per step."""

import types
import warnings

import jax
import jax.numpy as jnp
import optax
import pytest

pytest.importorskip("kfac_jax")
ex = pytest.importorskip("exponax")

from online_emulate.emulators import ConvNet, functional  # noqa: E402
from online_emulate.optim import KFAC, KFACPreconditioner, fit_kfac, sample_windows  # noqa: E402

N = 64


class _Supervised:
    """Minimal stand-in for a supervised rollout configuration (sum over steps)."""

    def __init__(self, num_rollout_steps):
        self.num_rollout_steps = num_rollout_steps

    @property
    def num_time_levels(self):
        return self.num_rollout_steps + 1

    def online_spec(self):
        return types.SimpleNamespace(weights=jnp.ones(self.num_rollout_steps))

    def loss(self, stepper, data, *, ref_stepper=None, residuum_fn=None, scan=jax.lax.scan):
        def body(u, _):
            u = jax.vmap(stepper)(u)
            return u, u

        _, us = scan(body, data[:, 0], None, length=self.num_rollout_steps)
        return jnp.sum(jnp.mean((jnp.moveaxis(us, 0, 1) - data[:, 1:]) ** 2, axis=(0, 2, 3)))


@pytest.fixture(scope="module")
def burgers():
    stepper = ex.stepper.Burgers(1, 1.0, N, 0.01, diffusivity=0.01)
    ic = ex.ic.RandomTruncatedFourierSeries(1, cutoff=5, max_one=True)
    roll = ex.rollout(stepper, 30, include_init=True)
    keys = jax.random.split(jax.random.PRNGKey(0), 20)
    data = jax.vmap(lambda k: roll(ic(N, key=k)))(keys)
    return data[:14], data[14:]


def _net():
    return ConvNet(1, 1, 1, hidden_channels=8, depth=3, kernel_size=5, residual=True, key=0)


def _one_step_error(apply, params, test):
    u = test[:, :-1].reshape(-1, 1, N)
    target = test[:, 1:].reshape(-1, 1, N)
    return float(jnp.sqrt(jnp.mean((apply(params, u) - target) ** 2) / jnp.mean((target - u) ** 2)))


def _adam(apply, params, config, train, lr, steps):
    tx = optax.adam(lr)

    @jax.jit
    def update(p, s, k):
        b = sample_windows(train, k, batch_size=8, num_time_levels=config.num_time_levels)
        grads = jax.grad(lambda q: config.loss(lambda u: apply(q, u), b))(p)
        u, s = tx.update(grads, s, p)
        return optax.apply_updates(p, u), s

    state, key = tx.init(params), jax.random.PRNGKey(1)
    for _ in range(steps):
        key, k = jax.random.split(key)
        params, state = update(params, state, k)
    return params


def test_kfac_beats_adam_on_burgers(burgers):
    train, test = burgers
    apply, params = functional(_net())
    config = _Supervised(1)
    steps = 60
    kfac = KFAC(inverse_update_period=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no layer may fall back
        trained, losses = fit_kfac(
            apply, params, config, train, num_steps=steps, batch_size=8,
            key=jax.random.PRNGKey(1), kfac=kfac,
        )
    assert [name for name, _ in kfac.blocks] == ["Conv2DTwoKroneckerFactored"] * 3
    assert kfac.fallback_params == []
    assert losses[-1] < 0.05 * losses[0]
    kfac_err = _one_step_error(apply, trained, test)
    adam_err = min(
        _one_step_error(apply, _adam(apply, params, config, train, lr, steps), test)
        for lr in (1e-2,)
    )
    assert kfac_err < 0.6 * adam_err, (kfac_err, adam_err)


@pytest.mark.xfail(reason="KNOWN: K-FAC diverges on the 5-step rollout loss (one-step curvature underestimates it); unresolved", strict=False)
def test_kfac_rollout_gradient_and_fallback_warning(burgers):
    """5-step rollout gradient; a parameter outside any layer is named in a warning."""
    train, _ = burgers
    net_apply, net_params = functional(_net())

    def apply(params, u):
        return net_apply(params["net"], u) * params["gain"]

    params = {"net": net_params, "gain": jnp.ones(())}
    config = _Supervised(5)
    # the one-step curvature underestimates a 5-step rollout's: start better damped
    kfac = KFAC(inverse_update_period=1, initial_damping=1.0)
    with pytest.warns(RuntimeWarning, match="gain"):
        trained, losses = fit_kfac(
            apply, params, config, train, num_steps=8, batch_size=4,
            key=jax.random.PRNGKey(2), kfac=kfac,
        )
    assert kfac.fallback_params and all("gain" in p for p in kfac.fallback_params)
    assert jnp.isfinite(jnp.asarray(losses)).all() and losses[-1] < losses[0]
    assert jax.tree_util.tree_structure(trained) == jax.tree_util.tree_structure(params)
    assert set(kfac.last_stats) >= {"learning_rate", "momentum", "damping"}


@pytest.mark.xfail(reason="KNOWN: OptaxPreconditioner.maybe_update pmeans over kfac_axis outside pmap; unresolved", strict=False)
def test_preconditioner_reduces_loss(burgers):
    train, _ = burgers
    apply, params = functional(_net())
    config = _Supervised(1)
    example = sample_windows(train, jax.random.PRNGKey(0), batch_size=8, num_time_levels=2)
    pre = KFACPreconditioner(apply, example, damping=1e-3, inverse_update_period=1)
    tx = optax.chain(pre, optax.sgd(0.2))
    state = tx.init(params)
    assert [name for name, _ in pre.blocks] == ["Conv2DTwoKroneckerFactored"] * 3

    @jax.jit
    def update(p, s, k):
        b = sample_windows(train, k, batch_size=8, num_time_levels=2)
        loss, grads = jax.value_and_grad(lambda q: config.loss(lambda u: apply(q, u), b))(p)
        updates, s = tx.update(grads, s, p, batch=b)
        return optax.apply_updates(p, updates), s, loss

    key, losses = jax.random.PRNGKey(3), []
    for _ in range(30):
        key, k = jax.random.split(key)
        params, state, loss = update(params, state, k)
        losses.append(float(loss))
    assert all(map(jnp.isfinite, losses))
    assert sum(losses[-5:]) < 0.2 * sum(losses[:5]), losses
