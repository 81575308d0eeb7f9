"""OnlineTrainer's re-anchoring and generalized teacher forcing against plain jax.grad
over a hand-written forced rollout, within one update and across updates (carry kept
or restarted)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from online_emulate.estimators import ETrace, ForwardRTRL, TruncatedBPTT
from online_emulate.trainer import OnlineTrainer

B, N, LR = 3, 8, 0.1


def apply(params, u):
    return params["a"] * u + params["b"] * jnp.roll(u, -1, axis=-1)


PARAMS = {"a": jnp.float32(0.7), "b": jnp.float32(0.2)}


def ref(u):
    return 0.8 * u + 0.2 * jnp.roll(u, 1, axis=-1) - 0.05 * u**3


def ic_sampler(key):
    return jax.random.normal(key, (B, 1, N))


def hand_losses(thetas, u0, *, alpha, every):
    """Per-step losses of the forced rollout, step t taken with parameters thetas[t]."""
    u, r, losses = u0, u0, []
    for t, theta in enumerate(thetas):
        r = ref(r)
        v = apply(theta, u)
        losses.append(jnp.mean((v - r) ** 2))
        u = v
        if alpha is not None:
            u = (1 - alpha) * v + alpha * r
        if every is not None and (t + 1) % every == 0:
            u = r
    return losses


def sgd(theta, g):
    return jax.tree_util.tree_map(lambda p, d: p - LR * d, theta, g)


def run(estimator, *, T, U, alpha, every, persist=None):
    trainer = OnlineTrainer(optimizer=optax.sgd(LR), rollout_length=T, update_every=U,
                            estimator=estimator, ic_sampler=ic_sampler, ref_stepper=ref,
                            persist_carry=persist, teacher_forcing=alpha,
                            reanchor_every=every, progress_bar=False)
    (_, params), hist = trainer((apply, PARAMS), key=0)
    return params, np.asarray(hist)


U0 = ic_sampler(jax.random.fold_in(jax.random.PRNGKey(0), 0))
# the quick loop keeps plain re-anchoring and forcing with re-anchoring
CASES = [(None, 2), pytest.param(0.3, None, marks=pytest.mark.slow), (0.5, 4),
         pytest.param(1.0, None, marks=pytest.mark.slow)]


@pytest.mark.parametrize("estimator", [ForwardRTRL(), TruncatedBPTT(6)], ids=["rtrl", "tbptt6"])
@pytest.mark.parametrize("alpha,every", CASES)
def test_one_update_equals_grad_of_the_forced_rollout(estimator, alpha, every):
    T = 6

    def total(theta):
        return sum(hand_losses([theta] * T, U0, alpha=alpha, every=every))

    loss, g = jax.value_and_grad(total)(PARAMS)
    params, hist = run(estimator, T=T, U=T, alpha=alpha, every=every)
    np.testing.assert_allclose(hist, [loss], rtol=1e-5)
    want = sgd(PARAMS, g)
    for k in want:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("alpha,every", [(None, 4), (0.5, None), (0.25, 5)])
def test_carry_across_updates(alpha, every):
    """Two updates of three steps: with ForwardRTRL's carry kept, the second gradient
    also reaches the first three steps (at the parameters they were taken with), scaled
    by the forcing and cut by an anchor; TruncatedBPTT(3) restarts at every update."""
    T, U = 6, 3

    def first(theta):
        return sum(hand_losses([theta] * U + [theta] * U, U0, alpha=alpha, every=every)[:U])

    def second(theta_a, theta_b):
        return sum(hand_losses([theta_a] * U + [theta_b] * U, U0, alpha=alpha,
                               every=every)[U:])

    theta1 = sgd(PARAMS, jax.grad(first)(PARAMS))
    ga, gb = jax.grad(second, argnums=(0, 1))(PARAMS, theta1)
    kept = sgd(theta1, jax.tree_util.tree_map(jnp.add, ga, gb))
    restarted = sgd(theta1, gb)
    losses = [first(PARAMS), second(PARAMS, theta1)]
    for estimator, persist, want in ((ForwardRTRL(), True, kept),
                                     (TruncatedBPTT(3), False, restarted)):
        params, hist = run(estimator, T=T, U=U, alpha=alpha, every=every, persist=persist)
        np.testing.assert_allclose(hist, losses, rtol=1e-5)
        for k in want:
            np.testing.assert_allclose(params[k], want[k], rtol=1e-5, atol=1e-7)
    if every is not None and every <= U:
        return
    # without an anchor between the updates the kept carry changes the gradient
    assert not np.allclose(kept["a"], restarted["a"])


def test_coupling_validation():
    kw = dict(optimizer=optax.sgd(LR), rollout_length=4, ic_sampler=ic_sampler,
              ref_stepper=ref, progress_bar=False)
    with pytest.raises(ValueError, match="^teacher_forcing:"):
        OnlineTrainer(teacher_forcing=1.5, estimator=ForwardRTRL(), **kw)
    with pytest.raises(ValueError, match="^teacher_forcing:"):
        OnlineTrainer(teacher_forcing=0.5, estimator=ETrace("d_rtrl"), **kw)
    with pytest.raises(ValueError, match="^reanchor_every:"):
        OnlineTrainer(reanchor_every=0, estimator=ForwardRTRL(), **kw)
    with pytest.raises(ValueError, match="^reanchor_every:"):
        OnlineTrainer(reanchor_every=2, estimator=ForwardRTRL(), target="one_step", **kw)
