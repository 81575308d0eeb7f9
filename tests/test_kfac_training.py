"""K-FAC on 1-D Burgers: trainer integration, rollout stability, preconditioner.

Sizes are tiny (N=32, 3x8-channel residual conv net, batch 8, a few dozen steps) and the
data, emulator and adam baselines are shared by module-scoped fixtures.
"""

import warnings

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

pytest.importorskip("kfac_jax")
pytest.importorskip("exponax")

from online_emulate.configuration import Supervised  # noqa: E402
from online_emulate.emulators import ConvNet, functional, get_params  # noqa: E402
from online_emulate.estimators import ForwardRTRL, TruncatedBPTT  # noqa: E402
from online_emulate.optim import KFAC, KFACPreconditioner, RolloutCurvature  # noqa: E402
from online_emulate.sample_data import get_problem  # noqa: E402
from online_emulate.trainer import SupervisedTrainer  # noqa: E402

# Optimizer studies (K-FAC against adam / sgd over dozens of steps): minutes on 2 cores.
pytestmark = pytest.mark.slow

STEPS = 40
BATCH = 8


@pytest.fixture(scope="module")
def burgers():
    problem = get_problem("burgers_1d", num_points=32)
    data = problem.make_data(14, 30, jax.random.PRNGKey(0))
    return data[:10], data[10:]


@pytest.fixture(scope="module")
def net():
    return ConvNet(1, 1, 1, hidden_channels=8, depth=3, kernel_size=5, residual=True, key=0)


def _rollout_error(emulator, test, steps):
    """Normalised RMSE of `steps`-step rollouts from every start of the test trajectories."""
    apply, params = functional(emulator)
    levels = test.shape[1] - steps
    u = test[:, :levels].reshape((-1,) + test.shape[2:])
    sq, ref = 0.0, 0.0
    for k in range(1, steps + 1):
        u = apply(params, u)
        target = test[:, k : k + levels].reshape(u.shape)
        sq += jnp.mean((u - target) ** 2)
        ref += jnp.mean(target**2)
    return float(jnp.sqrt(sq / ref))


def _train(data, net, optimizer, rollout, steps=STEPS, **options):
    trainer = SupervisedTrainer(
        data, optimizer=optimizer, num_training_steps=steps, batch_size=BATCH,
        num_rollout_steps=rollout, progress_bar=False, **options,
    )
    emulator, history = trainer(net, key=0)
    return emulator, np.asarray(history.loss), trainer


@pytest.fixture(scope="module")
def adam_error(burgers, net):
    """Best test error of adam (lr 3e-3, 1e-2) after STEPS steps, per rollout length."""
    train, test = burgers
    return {
        r: min(_rollout_error(_train(train, net, optax.adam(lr), r)[0], test, r) for lr in (3e-3, 1e-2))
        for r in (1, 5)
    }


def test_rollout_curvature_matches_supervised_loss(burgers, net):
    """Both registered losses have the value (so the scale) of the Supervised MSE loss."""
    train, _ = burgers
    apply, params = functional(net)
    window = train[:4, :6]
    for r, w in ((1, None), (5, jnp.array([1.0, 0.5, 2.0, 1.0, 0.25]))):
        config = Supervised(r, time_level_weights=w)
        curvature = RolloutCurvature(apply, config)
        loss = config.loss(lambda u: apply(params, u), window[:, : r + 1])
        model = curvature.model_loss(params, window[:, : r + 1])
        states = curvature.states(params, window[:, : r + 1])
        assert states.shape == (r, 4, 1, 32)
        np.testing.assert_allclose(model, loss, rtol=1e-5)
        if r == 1:  # one step from the data state: the same loss again
            est = curvature.estimator_loss(params, (window[:, :2], states))
            np.testing.assert_allclose(est, loss, rtol=1e-5)
        assert curvature.batch_size(window) == 4 * r


def test_trainer_kfac_beats_adam_one_step(burgers, net, adam_error):
    train, test = burgers
    kfac = KFAC(inverse_update_period=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no layer may fall back
        emulator, losses, _ = _train(train, net, kfac, 1)
    assert [name for name, _ in kfac.blocks] == ["Conv2DTwoKroneckerFactored"] * 3
    assert kfac.fallback_params == []
    assert np.isfinite(losses).all() and losses[-5:].mean() < 0.05 * losses[0]
    err = _rollout_error(emulator, test, 1)
    assert err < 0.75 * adam_error[1], (err, adam_error[1])


def test_trainer_kfac_five_step_rollout_stable_and_beats_adam(burgers, net, adam_error):
    """Was the 5-step divergence (loss 0.1 -> 7e13): now stable and ahead of adam."""
    train, test = burgers
    kfac = KFAC(inverse_update_period=1)
    emulator, losses, _ = _train(train, net, kfac, 5)
    assert np.isfinite(losses).all() and losses.max() <= losses[0] * 1.001
    assert losses[-5:].mean() < 0.05 * losses[0], losses
    stats = kfac.last_stats
    assert 0.25 < float(stats["rho"]) < 2.0  # the quadratic model predicts the rollout loss
    err = _rollout_error(emulator, test, 5)
    assert err < 0.5 * adam_error[5], (err, adam_error[5])


def test_trainer_kfac_rejects_non_bptt_estimator(burgers, net):
    train, _ = burgers
    # refused at construction, before anything is compiled
    with pytest.raises(ValueError, match=r"estimator: expected BPTT \(K-FAC takes its gradient from the full rollout\)"):
        SupervisedTrainer(
            train, optimizer=KFAC(), num_training_steps=2, batch_size=BATCH,
            num_rollout_steps=2, estimator=TruncatedBPTT(2), progress_bar=False,
        )


class _GainedNet(ConvNet):
    """A ConvNet times a learnable scalar: the scalar belongs to no layer K-FAC knows."""

    def __init__(self):
        super().__init__(1, 1, 1, hidden_channels=8, depth=3, kernel_size=5, residual=True, key=0)
        self.gain = brainstate.ParamState(jnp.ones(()))

    def _forward(self, x):
        return self.gain.value * super()._forward(x)


def test_kfac_names_fallback_parameter_and_trains_a_rollout(burgers):
    """A parameter outside any layer is named in a warning; a rollout loss still trains."""
    train, _ = burgers
    kfac = KFAC(inverse_update_period=1)
    with pytest.warns(RuntimeWarning, match="gain"):
        trained, losses, _ = _train(train, _GainedNet(), kfac, 3, steps=6)
    assert kfac.fallback_params and all("gain" in p for p in kfac.fallback_params)
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert set(get_params(trained)) == {"layers", "gain"}
    assert set(kfac.last_stats) >= {"learning_rate", "momentum", "damping"}


@pytest.fixture(scope="module")
def sgd_run(burgers, net):
    train, _ = burgers
    return _train(train, net, optax.sgd(0.2), 1, estimator=TruncatedBPTT(1))[1]


@pytest.mark.parametrize("estimator", [TruncatedBPTT(1), ForwardRTRL()], ids=["tbptt1", "rtrl"])
def test_preconditioned_sgd_in_trainer_beats_sgd(burgers, net, sgd_run, estimator):
    """KFACPreconditioner inside the trainer's jitted loop, fed batch= via extra args."""
    train, _ = burgers
    apply, _ = functional(net)
    pre = KFACPreconditioner(apply, train[:BATCH, :2], damping=1e-3, inverse_update_period=1)
    tx = optax.chain(pre, optax.sgd(0.2))
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    _, losses, _ = _train(train, net, tx, 1, estimator=estimator)
    assert [name for name, _ in pre.blocks] == ["Conv2DTwoKroneckerFactored"] * 3
    assert np.isfinite(losses).all() and losses[-5:].mean() < 0.05 * losses[0]
    assert losses[-5:].mean() < 0.3 * sgd_run[-5:].mean(), (losses[-5:], sgd_run[-5:])


def test_kfac_trains_an_equinox_conv2d_model_its_kernels_on_diagonal_blocks():
    """kfac-jax 0.0.8 crashed (IndexError) on an (out, in, H, W) kernel; now such a kernel
    is read in (H, W, in, out) order, gets a diagonal block, and is named."""
    eqx = pytest.importorskip("equinox")
    data = 0.3 * jax.random.normal(jax.random.PRNGKey(0), (6, 5, 1, 8, 8))
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    net = eqx.nn.Sequential([eqx.nn.Conv2d(1, 4, 3, padding="SAME", key=k[0]), eqx.nn.Lambda(jnp.tanh),
                             eqx.nn.Conv2d(4, 1, 3, padding="SAME", key=k[1])])
    kfac = KFAC(inverse_update_period=1)
    with pytest.warns(RuntimeWarning, match=r"layers/0/\.weight"):
        trained, losses, _ = _train(data, net, kfac, 2, steps=6)
    assert sorted(kfac.fallback_params) == sorted(
        f".layers/{i}/.{leaf} ({block})" for i in (0, 2)
        for leaf, block in (("weight", "NaiveDiagonal"), ("bias", "ScaleAndShiftDiagonal")))
    assert isinstance(trained, eqx.nn.Sequential)
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_kfac_gives_kronecker_blocks_to_a_users_hwio_convolutions():
    """An (apply, params) pair whose 2-D kernels are (H, W, in, out): Kronecker blocks."""
    data = 0.3 * jax.random.normal(jax.random.PRNGKey(0), (6, 5, 1, 8, 8))
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    params = {"w1": 0.3 * jax.random.normal(k[0], (3, 3, 1, 4)), "w2": 0.3 * jax.random.normal(k[1], (3, 3, 4, 1))}

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def apply(p, u):  # one state (C, H, W)
        x = jnp.moveaxis(u, 0, -1)[None]
        return jnp.moveaxis(conv(jnp.tanh(conv(x, p["w1"])), p["w2"])[0], -1, 0)

    kfac = KFAC(inverse_update_period=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no parameter may fall back
        (_, trained), losses, _ = _train(data, (apply, params), kfac, 2, steps=6)
    assert [name for name, _ in kfac.blocks] == ["Conv2DTwoKroneckerFactored"] * 2
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert set(trained) == {"w1", "w2"}
