"""`RolloutCurriculum` against a hand-written loop: plain `jax.value_and_grad` of the
rollout loss on the windows of `WindowSampler`'s public schedule, one optax state
carried over the stages (or restarted at each)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from online_emulate._rollout import bind
from online_emulate.configuration import Supervised
from online_emulate.data import WindowSampler
from online_emulate.emulators import LinearStencil, functional
from online_emulate.estimators import TruncatedBPTT
from online_emulate.sample_data import advection_1d_periodic, advection_1d_stepper
from online_emulate.trainer import (OnlineTrainer, RolloutCurriculum, StreamTrainer,
                                    SupervisedTrainer)

DATA = advection_1d_periodic(cfl=-0.75, key=jax.random.PRNGKey(0))[:6, :12]  # (6, 12, 1, 30)
STEPS = {1: 7, 3: 5, 4: 6}
B = 4


def _by_hand(emulator, key, rollout_steps, optimizer, *, continue_optimizer):
    apply, params = functional(emulator)
    state = optimizer.init(params)
    losses = []
    for i, r in enumerate(rollout_steps):
        if not continue_optimizer:
            state = optimizer.init(params)
        stage_key = jax.random.fold_in(key, i)
        sampler = WindowSampler(DATA.shape[0], DATA.shape[1], r + 1, B)

        @jax.jit  # one compiled step per stage: the reference stays quick
        def update(params, state, windows, r=r):
            loss, grads = jax.value_and_grad(
                lambda p: Supervised(r)(bind(apply, p), windows))(params)
            updates, state = optimizer.update(grads, state, params)
            return optax.apply_updates(params, updates), state, loss

        for step in range(STEPS[r]):
            windows = sampler.gather(DATA, jnp.asarray(sampler.window_ids(stage_key, step)))
            params, state, loss = update(params, state, windows)
            losses.append(float(loss))
    return params, np.asarray(losses)


def _supervised(rollout_steps, optimizer):
    return SupervisedTrainer(DATA, num_rollout_steps=rollout_steps, optimizer=optimizer,
                             num_training_steps=STEPS[rollout_steps], batch_size=B,
                             progress_bar=False)


@pytest.mark.parametrize("continue_optimizer", [True, False])
def test_stages_equal_a_hand_written_loop(continue_optimizer):
    emulator = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    optimizer = optax.adam(3e-2)
    curriculum = RolloutCurriculum(rollout_steps=(1, 3, 4), make_trainer=_supervised,
                                   optimizer=optimizer, continue_optimizer=continue_optimizer)
    trained, history = curriculum(emulator, key=5)
    params, losses = _by_hand(emulator, jax.random.PRNGKey(5), (1, 3, 4), optimizer,
                              continue_optimizer=continue_optimizer)
    np.testing.assert_allclose(history.loss, losses, rtol=2e-5, atol=1e-7)
    got = functional(trained)[1]
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7),
                           got, params)
    assert history["rollout_steps"] == [(0, 1), (7, 3), (12, 4)]
    assert len(history) == sum(STEPS.values())


def test_continued_and_fresh_optimizer_differ():
    """The two modes are not the same computation (so the test above can fail)."""
    emulator = LinearStencil(1, 1, 1, kernel_size=3, key=0)
    runs = [RolloutCurriculum(rollout_steps=(1, 3), make_trainer=_supervised,
                              optimizer=optax.adam(3e-2), continue_optimizer=c)(emulator, key=5)
            for c in (True, False)]
    a, b = (functional(t)[1]["conv"]["weight"] for t, _ in runs)
    assert not np.allclose(a, b)


def _online(rollout_steps, optimizer):
    return OnlineTrainer(optimizer=optimizer, rollout_length=rollout_steps, num_rollouts=2,
                         update_every=rollout_steps, estimator=TruncatedBPTT(2),
                         ic_sampler=lambda key: jax.random.normal(key, (2, 1, 30)),
                         ref_stepper=advection_1d_stepper(30, cfl=-0.75), progress_bar=False)


def _stream(rollout_steps, optimizer):
    return StreamTrainer(Supervised(rollout_steps), ref_stepper=advection_1d_stepper(30, cfl=-0.75),
                         ic_sampler=lambda key, num: jax.random.normal(key, (num, 1, 30)),
                         optimizer=optimizer, num_training_steps=2, batch_size=2, buffer_size=4,
                         stream_length=6, progress_bar=False, clip_grad_norm=10.0)


@pytest.mark.parametrize("make_trainer", [_online, pytest.param(_stream, marks=pytest.mark.slow)],
                         ids=["online", "stream"])
def test_other_trainers_continue_a_schedule(make_trainer):
    """A schedule that stops learning after 2 updates (the first stage's): continued over
    the stages, the second stage leaves the parameters as the first left them; restarted,
    it trains on (the stream's trainer also wraps the optimizer in its clipping chain)."""
    schedule = lambda count: jnp.where(count < 2, 1e-2, 0.0)  # noqa: E731
    optimizer = optax.chain(optax.scale_by_adam(), optax.scale_by_schedule(schedule),
                            optax.scale(-1.0))
    emulator = LinearStencil(1, 1, 1, kernel_size=3, key=1)
    for continued in (True, False):
        built = []

        def factory(rollout_steps, optimizer):
            built.append(make_trainer(rollout_steps, optimizer))
            return built[-1]

        trained, history = RolloutCurriculum(rollout_steps=(2, 5), make_trainer=factory,
                                             optimizer=optimizer,
                                             continue_optimizer=continued)(emulator, key=3)
        assert len(history) == 4
        after_first = built[0].params["conv"]["weight"]  # the first stage's trainer keeps its state
        assert not np.array_equal(after_first, functional(emulator)[1]["conv"]["weight"])
        assert np.array_equal(functional(trained)[1]["conv"]["weight"], after_first) == continued


@pytest.mark.parametrize("kwargs, match", [
    ({"rollout_steps": ()}, "rollout_steps"),
    ({"rollout_steps": (1, 1)}, "strictly increasing"),
    ({"rollout_steps": (1, 0)}, "rollout_steps"),
    ({"make_trainer": 3}, "make_trainer"),
    ({"optimizer": "adam"}, "optimizer"),
])
def test_bad_arguments_are_named(kwargs, match):
    options = dict(rollout_steps=(1, 2), make_trainer=_supervised, optimizer=optax.adam(1e-2))
    with pytest.raises((TypeError, ValueError), match=match):
        RolloutCurriculum(**{**options, **kwargs})


def test_a_factory_that_returns_no_trainer_is_refused_before_training():
    calls = []

    def factory(rollout_steps, optimizer):
        calls.append(rollout_steps)
        return _supervised(rollout_steps, optimizer) if rollout_steps == 1 else object()

    curriculum = RolloutCurriculum(rollout_steps=(1, 3), make_trainer=factory,
                                   optimizer=optax.adam(1e-2))
    with pytest.raises(TypeError, match="make_trainer: expected an online_emulate trainer"):
        curriculum(LinearStencil(1, 1, 1, kernel_size=3, key=0), key=0)
    assert calls == [1, 3]
