import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from online_emulate import configuration as cfg
from online_emulate.callback import (
    CheckpointCallback,
    EarlyStopping,
    GradNormCallback,
    LossCallback,
    ValidationRolloutCallback,
    WeightNormCallback,
)
from online_emulate.data import WindowSampler
from online_emulate.emulators import ConvNet, LinearStencil, functional, get_params
from online_emulate.sample_data import advection_1d_periodic
from online_emulate.trainer import (
    DivertedChainBranchOneTrainer,
    DivertedChainTrainer,
    GeneralTrainer,
    MixChainPostPhysicsTrainer,
    MixChainPrePhysicsTrainer,
    ResiduumTrainer,
    SupervisedTrainer,
    TeacherForcingTrainer,
    TrainingDiverged,
    load_checkpoint,
)

CFL = -0.75


@pytest.fixture(scope="module")
def advection():
    return advection_1d_periodic(num_points=16, num_samples=6, cfl=CFL, temporal_horizon=12, key=jax.random.PRNGKey(0))


def shift_stepper(u):
    """Exact one-step reference for the CFL=-0.75 data is not a roll; use the FOU stencil."""
    return (1 + CFL) * u + (-CFL) * jnp.roll(u, -1, axis=-1)


def assert_trees_equal(a, b):
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


@pytest.mark.slow  # three 500-step training runs
def test_quickstart_trend_longer_rollout_closer_to_fou():
    data = advection_1d_periodic(cfl=CFL, key=jax.random.PRNGKey(0))
    emulator = LinearStencil(1, 1, 1, kernel_size=2, key=73)
    fou = jnp.array([1 + CFL, -CFL])
    errors = []
    for r in (1, 5, 20):
        trainer = SupervisedTrainer(
            data, optimizer=optax.adam(1e-2), num_training_steps=500, batch_size=32,
            num_rollout_steps=r, progress_bar=False,
        )
        trained, history = trainer(emulator, key=jax.random.PRNGKey(42))
        errors.append(float(jnp.linalg.norm(trained.stencil[0, 0] - fou)))
        assert history.loss.shape == (500,)
        assert history.loss[-1] < history.loss[0]
    assert errors[0] > errors[1] > errors[2], errors
    # the input emulator is untouched, so all three trainers started from one init
    assert not np.allclose(get_params(emulator)["conv"]["weight"], get_params(trained)["conv"]["weight"])


def test_sampler_each_epoch_is_a_permutation_and_batches_wrap():
    sampler = WindowSampler(num_trajectories=3, num_time_levels=6, window_length=3, batch_size=5)
    assert sampler.num_windows == 3 * 4
    key = jax.random.PRNGKey(1)
    stream = np.concatenate([np.asarray(sampler.window_ids(key, s)) for s in range(12)])
    # 12 steps * 5 = 60 positions = 5 epochs; each epoch is a permutation of all windows
    for e in range(5):
        assert sorted(stream[e * 12 : (e + 1) * 12]) == list(range(12))
        np.testing.assert_array_equal(stream[e * 12 : (e + 1) * 12], sampler.permutation(key, e))
    # a different key gives a different order; the same key the same
    assert not np.array_equal(sampler.permutation(jax.random.PRNGKey(2), 0), sampler.permutation(key, 0))
    np.testing.assert_array_equal(sampler.permutation(key, 3), sampler.permutation(key, 3))


def test_sampler_gathers_windows_by_index():
    data = jnp.arange(2 * 5 * 1 * 3, dtype=jnp.float32).reshape(2, 5, 1, 3)
    sampler = WindowSampler(2, 5, 2, 3)
    ids = jnp.array([0, 3, 5])  # 4 windows per trajectory
    out = sampler.gather(data, ids)
    np.testing.assert_array_equal(out[0], data[0, 0:2])
    np.testing.assert_array_equal(out[1], data[0, 3:5])
    np.testing.assert_array_equal(out[2], data[1, 1:3])
    no_stack = WindowSampler(2, 5, 2, 2, sub_stacking=False)
    np.testing.assert_array_equal(no_stack.gather(data, jnp.array([1])), data[1:2, 0:2])


def test_history_is_pre_update_loss_of_the_scheduled_batch(advection):
    emulator = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    config = cfg.Supervised(num_rollout_steps=2)
    trainer = GeneralTrainer(config, advection, optimizer=optax.sgd(0.1), num_training_steps=2, batch_size=4, progress_bar=False)
    _, history = trainer(emulator, key=7)
    apply, params = functional(emulator)
    # independent schedule: epoch 0 order, first 4 windows of 3 levels at every offset
    per = advection.shape[1] - 3 + 1
    key = jax.random.PRNGKey(7)
    order = np.random.default_rng([*np.asarray(key).tolist(), 0]).permutation(6 * per)
    ids = order[:4]
    windows = jnp.stack([advection[i // per, i % per : i % per + 3] for i in ids])
    expected = config(lambda u: apply(params, u), windows)
    np.testing.assert_allclose(history.loss[0], expected, rtol=1e-6)
    # second loss is evaluated after one sgd update with the first batch's gradient
    grads = jax.grad(lambda p: config(lambda u: apply(p, u), windows))(params)
    params1 = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    ids = order[4:8]
    windows = jnp.stack([advection[i // per, i % per : i % per + 3] for i in ids])
    np.testing.assert_allclose(history.loss[1], config(lambda u: apply(params1, u), windows), rtol=1e-5)


def test_resume_continues_like_one_long_run(advection):
    emulator = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    make = lambda n: SupervisedTrainer(advection, optimizer=optax.adam(1e-2), num_training_steps=n, batch_size=8, num_rollout_steps=3, progress_bar=False, steps_per_call=7)
    long_trainer = make(40)
    full, full_hist = long_trainer(emulator, key=3)
    split_trainer = make(20)
    half, half_hist = split_trainer(emulator, key=3)
    resumed, hist = split_trainer.resume()
    assert_trees_equal(get_params(full), get_params(resumed))
    np.testing.assert_array_equal(full_hist.loss, hist.loss)
    assert len(half_hist) == 20 and hist is not half_hist  # the first history is kept
    # a new call starts fresh from the emulator passed in
    again, _ = split_trainer(emulator, key=3)
    assert_trees_equal(get_params(again), get_params(half))


def test_checkpoint_resume_is_bit_identical(advection, tmp_path):
    emulator = ConvNet(1, 1, 1, hidden_channels=4, depth=2, key=1)
    config = cfg.Supervised(num_rollout_steps=2)

    def make(callbacks=()):
        return GeneralTrainer(config, advection, optimizer=optax.adam(3e-3), num_training_steps=30, batch_size=8, progress_bar=False, callbacks=callbacks, steps_per_call=8)

    uninterrupted, hist = make()(emulator, key=11)
    path = str(tmp_path / "ckpt_{step}.npz")
    interrupted = make([CheckpointCallback(path, every=12)])
    interrupted(emulator, key=11)
    blob = load_checkpoint(tmp_path / "ckpt_12.npz")
    assert blob["step"] == 12
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".ckpt-")]  # no temp files left
    fresh = make()
    resumed, rhist = fresh(emulator, key=0, resume_from=str(tmp_path / "ckpt_12.npz"))
    assert_trees_equal(get_params(uninterrupted), get_params(resumed))
    np.testing.assert_array_equal(hist.loss, rhist.loss)


def test_determinism_same_seed_same_result(advection):
    emulator = ConvNet(1, 1, 1, hidden_channels=4, key=2)
    runs = [
        SupervisedTrainer(advection, optimizer=optax.adam(1e-3), num_training_steps=15, batch_size=8, num_rollout_steps=2, progress_bar=False)(emulator, key=5)
        for _ in range(2)
    ]
    assert_trees_equal(get_params(runs[0][0]), get_params(runs[1][0]))
    np.testing.assert_array_equal(runs[0][1].loss, runs[1][1].loss)


def test_seed_parallel_equals_separate_runs(advection):
    emulators = [LinearStencil(1, 1, 1, kernel_size=3, key=k) for k in (0, 1, 2)]
    trainer = SupervisedTrainer(advection, optimizer=optax.adam(1e-2), num_training_steps=25, batch_size=8, num_rollout_steps=2, progress_bar=False, steps_per_call=10)
    trained, losses = trainer.train_seeds(emulators, keys=[10, 11, 12])
    assert losses.shape == (3, 25)
    for em, seed, got, got_loss in zip(emulators, (10, 11, 12), trained, losses):
        trainer.reset()
        ref, hist = trainer(em, key=seed)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), get_params(ref), get_params(got))
        np.testing.assert_allclose(hist.loss, got_loss, rtol=1e-5)


def test_callbacks_record_at_their_period(advection):
    emulator = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    callbacks = [
        LossCallback(cfg.Supervised(num_rollout_steps=5), every=5),
        GradNormCallback(every=10),
        WeightNormCallback(every=10),
        ValidationRolloutCallback(advection[:2], every=10, num_steps=8),
    ]
    trainer = SupervisedTrainer(advection, optimizer=optax.adam(1e-2), num_training_steps=20, batch_size=8, progress_bar=False, callbacks=callbacks)
    trained, history = trainer(emulator, key=0)
    assert [s for s, _ in history["loss_Supervised"]] == [0, 5, 10, 15, 20]
    assert [s for s, _ in history["grad_norm"]] == [0, 10, 20]
    w = float(jnp.linalg.norm(get_params(trained)["conv"]["weight"]))
    np.testing.assert_allclose(history["weight_norm"][-1][1], w, rtol=1e-6)
    vals = [v for _, v in history["val_nrmse"]]
    assert vals[-1] < vals[0]


def test_early_stopping_stops_a_flat_run(advection):
    emulator = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    trainer = SupervisedTrainer(advection, optimizer=optax.sgd(0.0), num_training_steps=100, batch_size=8, progress_bar=False, callbacks=[EarlyStopping(every=5, patience=2)])
    _, history = trainer(emulator, key=0)
    assert history.stopped_early is not None and "early stopping" in history.stopped_early
    assert len(history.loss) == 15  # best at 5, no improvement at 10 and 15


def test_divergence_stops_keeps_last_good_params_and_checkpoints(advection, tmp_path):
    emulator = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    trainer = SupervisedTrainer(advection, optimizer=optax.sgd(1e4), num_training_steps=200, batch_size=8, num_rollout_steps=3, progress_bar=False, checkpoint_path=str(tmp_path / "last.npz"))
    with pytest.raises(TrainingDiverged, match="step") as info:
        trainer(emulator, key=0)
    err = info.value
    params = get_params(err.emulator)
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(params))
    assert len(err.history.loss) == err.step and np.isfinite(err.history.loss).all()
    # the reported loss is the kept parameters' own, on the windows of the kept step
    windows = trainer.sampler.gather(advection, jnp.asarray(trainer.sampler.window_ids(trainer.key, err.step)))
    u, kept_loss = windows[:, 0], 0.0
    for t in range(1, 4):
        u = err.emulator(u)
        kept_loss += float(jnp.mean((u - windows[:, t]) ** 2))
    assert err.last_finite_loss == pytest.approx(kept_loss, rel=1e-5)
    blob = load_checkpoint(err.checkpoint)
    assert blob["step"] == err.step
    assert_trees_equal(blob["params"], params)


def test_gradient_clipping_keeps_a_big_step_finite(advection):
    emulator = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    trainer = SupervisedTrainer(advection, optimizer=optax.sgd(1e4), num_training_steps=20, batch_size=8, progress_bar=False, clip_grad_norm=1e-5)
    _, history = trainer(emulator, key=0)
    assert np.isfinite(history.loss).all()


@pytest.mark.parametrize(
    "trainer_cls, options",
    [
        (SupervisedTrainer, dict(num_rollout_steps=3, cut_bptt=True)),
        (DivertedChainTrainer, dict(num_rollout_steps=3, num_branch_steps=2, ref_stepper=shift_stepper)),
        (DivertedChainBranchOneTrainer, dict(num_rollout_steps=3, cut_div_chain=True, ref_stepper=shift_stepper)),
        (MixChainPostPhysicsTrainer, dict(num_rollout_steps=2, num_post_physics_steps=1, ref_stepper=shift_stepper)),
        (MixChainPrePhysicsTrainer, dict(num_rollout_steps=2, num_pre_physics_steps=1, ref_stepper=shift_stepper)),
        (ResiduumTrainer, dict(num_rollout_steps=2, residuum_fn=lambda n, p: n - jax.vmap(shift_stepper)(p))),
        (TeacherForcingTrainer, dict(num_rollout_steps=4, reset_every=2)),
    ],
)
def test_every_configuration_trainer_learns(advection, trainer_cls, options):
    emulator = LinearStencil(1, 1, 1, kernel_size=2, key=73)
    trainer = trainer_cls(advection, optimizer=optax.adam(3e-2), num_training_steps=150, batch_size=8, progress_bar=False, **options)
    trained, history = trainer(emulator, key=0)
    assert np.mean(history.loss[-10:]) < 0.2 * np.mean(history.loss[:10])


def test_composite_through_general_trainer(advection):
    composite = cfg.Composite(
        [cfg.Supervised(num_rollout_steps=1), cfg.DivertedChainBranchOne(num_rollout_steps=2)], [1.0, 0.5]
    )
    trainer = GeneralTrainer(composite, advection, optimizer=optax.adam(1e-2), num_training_steps=20, batch_size=8, ref_stepper=shift_stepper, progress_bar=False)
    _, history = trainer(LinearStencil(1, 1, 1, kernel_size=2), key=0)
    assert history.loss[-1] < history.loss[0]


def test_pytree_data(advection):
    def stepper_params():
        return LinearStencil(1, 1, 1, kernel_size=3, key=0)

    class Both:
        """A configuration over dict data: supervised loss on the 'u' leaf only."""

        num_time_levels = 2
        needs_ref_stepper = False
        needs_residuum_fn = False

        def loss(self, stepper, data, *, ref_stepper=None, residuum_fn=None, scan=jax.lax.scan):
            return jnp.mean((jax.vmap(stepper)(data["u"][:, 0]) - data["u"][:, 1]) ** 2) + 0 * jnp.sum(data["v"])

        __call__ = loss

    data = {"u": advection, "v": advection * 2}
    trainer = GeneralTrainer(Both(), data, optimizer=optax.adam(1e-2), num_training_steps=5, batch_size=4, progress_bar=False)
    trained, history = trainer(stepper_params(), key=0)
    # the 'v' leaf adds nothing: the run equals Supervised(1) on the 'u' array alone
    # (same windows: the schedule depends only on the batch and time sizes)
    plain = GeneralTrainer(cfg.Supervised(1), advection, optimizer=optax.adam(1e-2), num_training_steps=5, batch_size=4, progress_bar=False)
    ref_trained, ref_history = plain(stepper_params(), key=0)
    np.testing.assert_allclose(history.loss, ref_history.loss, rtol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), get_params(trained), get_params(ref_trained))


# ----------------------------------------------------------------- validation
def test_validation_errors_name_the_argument(advection):
    em = LinearStencil(1, 1, 1)
    opt = optax.adam(1e-3)
    with pytest.raises(ValueError, match="batch_size"):
        SupervisedTrainer(advection, optimizer=opt, num_training_steps=1, batch_size=10_000)
    with pytest.raises(ValueError, match="data"):
        SupervisedTrainer(advection, optimizer=opt, num_training_steps=1, batch_size=2, num_rollout_steps=50)
    with pytest.raises(ValueError, match="ref_stepper"):
        DivertedChainTrainer(advection, optimizer=opt, num_training_steps=1, batch_size=2)
    with pytest.raises(ValueError, match="residuum_fn"):
        ResiduumTrainer(advection, optimizer=opt, num_training_steps=1, batch_size=2)
    with pytest.raises(TypeError, match="optimizer"):
        SupervisedTrainer(advection, optimizer="adam", num_training_steps=1, batch_size=2)
    with pytest.raises(ValueError, match="num_training_steps"):
        SupervisedTrainer(advection, optimizer=opt, num_training_steps=0, batch_size=2)
    with pytest.raises(TypeError, match="callbacks"):
        SupervisedTrainer(advection, optimizer=opt, num_training_steps=1, batch_size=2, callbacks=[print])
    bad = advection.at[2, 5, 0, 3].set(jnp.nan)
    with pytest.raises(ValueError, match="sample 2, time level 5"):
        SupervisedTrainer(bad, optimizer=opt, num_training_steps=1, batch_size=2)
    trainer = SupervisedTrainer(advection, optimizer=opt, num_training_steps=1, batch_size=2)
    with pytest.raises(ValueError, match="channel"):
        trainer(LinearStencil(1, 2, 2), key=0)
    with pytest.raises(ValueError, match="2-D emulator"):
        trainer(LinearStencil(2, 1, 1), key=0)
    with pytest.raises(TypeError, match="key"):
        trainer(em, key="zero")
    from online_emulate.estimators import ETrace, ForwardRTRL

    with pytest.raises(ValueError, match="estimator"):
        DivertedChainTrainer(advection, optimizer=opt, num_training_steps=1, batch_size=2, num_rollout_steps=2, num_branch_steps=2, ref_stepper=shift_stepper, estimator=ETrace("d_rtrl"))
    with pytest.raises(ValueError, match="estimator"):
        DivertedChainBranchOneTrainer(advection, optimizer=opt, num_training_steps=1, batch_size=2, ref_stepper=shift_stepper, estimator=ForwardRTRL())
    with pytest.raises(TypeError, match="estimator"):
        SupervisedTrainer(advection, optimizer=opt, num_training_steps=1, batch_size=2, estimator="bptt")
    wrong = DivertedChainBranchOneTrainer(advection, optimizer=opt, num_training_steps=1, batch_size=2, ref_stepper=lambda u: u[:, :-1])
    with pytest.raises(ValueError, match="ref_stepper"):
        wrong(em, key=0)


@pytest.mark.parametrize("estimator_name", ["TruncatedBPTT", "ForwardRTRL",
                                            pytest.param("ETrace", marks=pytest.mark.slow)])
def test_online_estimators_train_through_the_general_trainer(advection, estimator_name):
    from online_emulate import estimators

    estimator = {"TruncatedBPTT": estimators.TruncatedBPTT(2), "ForwardRTRL": estimators.ForwardRTRL(), "ETrace": estimators.ETrace("d_rtrl")}[estimator_name]
    emulator = ConvNet(1, 1, 1, hidden_channels=4, key=73)
    trainer = SupervisedTrainer(advection, optimizer=optax.adam(1e-2), num_training_steps=60, batch_size=8, num_rollout_steps=4, estimator=estimator, progress_bar=False)
    trained, history = trainer(emulator, key=0)
    assert np.mean(history.loss[-10:]) < 0.5 * np.mean(history.loss[:10])
    # the very same step, recomputed with the public value_and_grad, gives the recorded loss
    apply, params = functional(emulator)
    ids = trainer.sampler.window_ids(jax.random.PRNGKey(0), 0)
    loss0, _ = estimators.value_and_grad(trainer.configuration, emulator, trainer.sampler.gather(advection, jnp.asarray(ids)), estimator=estimator)
    np.testing.assert_allclose(history.loss[0], loss0, rtol=1e-5)


def test_progress_bar_shows_epoch_and_loss(advection, capsys):
    trainer = SupervisedTrainer(advection, optimizer=optax.adam(1e-2), num_training_steps=30, batch_size=8, progress_bar=True, steps_per_call=10)
    trainer(LinearStencil(1, 1, 1, kernel_size=2), key=0)
    err = capsys.readouterr().err
    assert "30/30" in err and "epoch=" in err and "loss=" in err and "step/s" in err


def test_seed_parallel_divergence_keeps_what_single_runs_keep(advection):
    # seed 0 diverges at sgd(1e3); whatever seed 1 does, seed 0's kept model, step, loss
    # and history are those a single run of it keeps
    from online_emulate.emulators import set_params
    from online_emulate.trainer import SeedsDiverged
    wild = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    calm = LinearStencil(1, 1, 1, kernel_size=3, key=1)
    set_params(calm, jax.tree_util.tree_map(jnp.zeros_like, get_params(calm)))
    # one step per chunk: a kept state is rebuilt from an earlier chunk than the failure
    trainer = SupervisedTrainer(advection, optimizer=optax.sgd(1e3), num_training_steps=30, batch_size=8, num_rollout_steps=2, progress_bar=False, steps_per_call=1)
    with pytest.raises(SeedsDiverged) as info:
        trainer.train_seeds([wild, calm], keys=[0, 0])
    err = info.value
    assert isinstance(err, ValueError) and 0 in err.last_finite_losses
    trainer.reset()
    with pytest.raises(TrainingDiverged) as single:
        trainer(wild, key=0)
    assert err.steps[0] == single.value.step
    assert err.last_finite_losses[0] == pytest.approx(single.value.last_finite_loss, rel=1e-5)
    assert_trees_equal(get_params(err.emulators[0]), get_params(single.value.emulator))
    np.testing.assert_allclose(err.histories[0], single.value.history.loss, rtol=1e-5)
