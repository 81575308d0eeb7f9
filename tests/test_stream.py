"""StreamTrainer, its buffer and its solver streams, against hand-written references:
a Python ring buffer and algorithm R, a hand loop of restarting streams, the whole
pipeline (streams, buffer, draws, plain jax.grad, SGD) written out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from online_emulate import configuration as cfg
from online_emulate import sample_data as sd
from online_emulate.callback import GradNormCallback, LossCallback, WeightNormCallback
from online_emulate.emulators import ConvNet
from online_emulate.estimators import ETrace, TruncatedBPTT
from online_emulate.trainer import StreamTrainer, TrainingDiverged
from online_emulate.trainer._solver_streams import SolverStreams
from online_emulate.trainer._stream import solver_in_the_loop_windows
from online_emulate.trainer._stream_buffer import (
    BufferState,
    draw,
    draw_ids,
    init_buffer,
    offer,
)

CFL = -0.75
N = 16


@pytest.fixture(scope="module")
def problem():
    return sd.get_problem("advection_1d", num_points=N, cfl=CFL, highest_init_mode=3)


def ics(problem):
    return lambda key, num: problem.sample_initial_conditions(num, key)


def stencil_model():
    """A hand-written (apply, params) pair: u_new[j] = a u[j] + b u[j+1]."""
    def apply(params, u):
        return params["a"] * u + params["b"] * jnp.roll(u, -1, axis=-1)
    return apply, {"a": jnp.float32(0.3), "b": jnp.float32(0.2)}


# ------------------------------------------------------------------------ buffer


def test_fifo_offers_equal_a_ring_buffer():
    rng = np.random.default_rng(0)
    M, shape = 5, (2, 3)
    state = init_buffer(M, shape, jnp.float32)
    ring, n = np.zeros((M, *shape), np.float32), 0
    write = jax.jit(lambda s, w, v: offer(s, w, v, jax.random.PRNGKey(0)))
    for _ in range(9):
        windows = rng.normal(size=(3, *shape)).astype(np.float32)
        valid = rng.random(3) < 0.7
        state = write(state, windows, valid)
        for w, ok in zip(windows, valid):
            if ok:
                ring[n % M], n = w, n + 1
        np.testing.assert_array_equal(np.asarray(state.windows), ring)
        assert int(state.count) == n


def test_reservoir_equals_algorithm_r_with_the_same_draws():
    M, K = 4, 3
    key = jax.random.PRNGKey(5)
    state = init_buffer(M, (1,), jnp.float32)
    slots, n = np.zeros((M,), np.float32), 0
    for r in range(6):
        windows = np.arange(r * K, r * K + K, dtype=np.float32)[:, None]
        state = offer(state, windows, jnp.ones((K,), bool), key, policy="reservoir")
        for w in windows:
            if n < M:
                slots[n] = w[0]
            else:
                j = int(jax.random.randint(jax.random.fold_in(key, n), (), 0, n + 1))
                if j < M:
                    slots[j] = w[0]
            n += 1
        np.testing.assert_array_equal(np.asarray(state.windows)[:, 0], slots)


def test_reservoir_keeps_every_window_with_equal_probability():
    """After n offered windows each is in the buffer with probability M / n (algorithm R's
    invariant), over 4,000 keys; a FIFO keeps exactly the last M."""
    M, n, trials = 4, 20, 4000
    windows = jnp.arange(n, dtype=jnp.float32)[:, None]

    def kept(key, policy):
        state = offer(init_buffer(M, (1,), jnp.float32), windows, jnp.ones((n,), bool), key,
                      policy=policy)
        return jnp.zeros((n,)).at[state.windows[:, 0].astype(jnp.int32)].add(1.0)

    keys = jax.random.split(jax.random.PRNGKey(1), trials)
    freq = np.asarray(jax.jit(jax.vmap(lambda k: kept(k, "reservoir")))(keys)).mean(0)
    p = M / n
    sigma = np.sqrt(p * (1 - p) / trials)
    assert np.all(np.abs(freq - p) < 4.5 * sigma), freq
    # chi-square over the items: the counts are one multinomial-like draw per trial
    assert np.isclose(freq.sum(), M)
    fifo = np.asarray(kept(keys[0], "fifo"))
    np.testing.assert_array_equal(fifo, (np.arange(n) >= n - M).astype(float))


def test_draws_are_uniform_over_filled_slots():
    M = 8
    state = BufferState(jnp.zeros((M, 1)), jnp.int32(5))  # 5 of 8 slots filled
    ids = np.asarray(jax.jit(lambda k: draw_ids(state, k, 20000))(jax.random.PRNGKey(2)))
    assert ids.min() == 0 and ids.max() == 4
    counts = np.bincount(ids, minlength=5)
    expected = len(ids) / 5
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 18.5  # chi-square with 4 degrees of freedom, p = 0.001


# ----------------------------------------------------------------------- streams


def hand_streams(ref, ic, key, S, T, L, ticks):
    """Restarting streams written as a Python loop over streams and ticks; returns the
    completed windows offered after each tick (the init counts as tick 0)."""
    u0 = np.asarray(ic(jax.random.fold_in(key, 0), S))
    trajs = [[u0[j]] for j in range(S)]
    left = [T - (j * T) // S for j in range(S)]
    out = []
    for tick in range(ticks + 1):
        if tick > 0:
            restart = [left[j] <= 0 for j in range(S)]
            fresh = np.asarray(ic(jax.random.fold_in(key, tick), S)) if any(restart) else None
            for j in range(S):
                if restart[j]:
                    trajs[j], left[j] = [fresh[j]], T
                else:
                    trajs[j].append(np.asarray(ref(trajs[j][-1])))
                    left[j] -= 1
        out.append([np.stack(t[-L:]) if len(t) >= L else None for t in trajs])
    return out


def test_streams_restart_like_a_hand_loop():
    ref = lambda u: 0.5 * u + 1.0  # noqa: E731
    ic = lambda key, n: jax.random.normal(key, (n, 1, 3))  # noqa: E731
    S, T, L, ticks = 3, 4, 2, 14
    key = jax.random.PRNGKey(3)
    streams = SolverStreams(ref, ic, num_streams=S, stream_length=T, window_length=L)
    want = hand_streams(ref, ic, key, S, T, L, ticks)
    state = streams.init(key)
    advance = jax.jit(streams.advance)
    restarts = 0
    for tick in range(ticks + 1):
        if tick > 0:
            before = np.asarray(state.left)
            state = advance(state, key)
            restarts += int((before <= 0).sum())
        complete = np.asarray(streams.complete(state))
        for j in range(S):
            assert complete[j] == (want[tick][j] is not None)
            if complete[j]:
                np.testing.assert_allclose(np.asarray(state.window[j]), want[tick][j], rtol=1e-6)
    assert restarts >= S  # every stream restarted at least once (staggered)


def test_solver_in_the_loop_windows_start_where_the_emulator_goes():
    f = lambda u: 0.9 * u + 0.1  # noqa: E731
    P = lambda u: u**2  # noqa: E731
    starts = jnp.array([[[0.5, 1.0]], [[2.0, -1.0]]])
    got = solver_in_the_loop_windows(f, P, starts, horizon=3, window_length=3)
    v = f(f(f(starts)))
    np.testing.assert_allclose(got, jnp.stack([v, P(v), P(P(v))], axis=1), rtol=1e-6)


# ------------------------------------------------------------------------ trainer


def hand_run(problem, configuration_loss, L, key, *, S, T, M, B, steps, lr, spp=1, sil=0,
             sil_horizon=1):
    """The whole StreamTrainer pipeline by hand: streams, FIFO, draws, solver-in-the-loop
    windows, jax.grad, SGD."""
    ref = jax.jit(problem.ref_stepper)
    ic = ics(problem)
    stream_key = jax.random.fold_in(key, 1)
    apply, params = stencil_model()
    ring, n = [None] * M, 0
    ticks_out = hand_streams(ref, ic, stream_key, S, T, L, ticks=M + steps * spp + 2 * T)
    tick = 0
    for windows in ticks_out:  # prefill: until the buffer is full
        for w in windows:
            if w is not None:
                ring[n % M], n = w, n + 1
        if n >= M:
            break
        tick += 1
    grad = jax.jit(jax.value_and_grad(lambda p, batch: configuration_loss(apply, p, batch)))
    losses = []
    for s in range(steps):
        for _ in range(spp):
            tick += 1
            for w in ticks_out[tick]:
                if w is not None:
                    ring[n % M], n = w, n + 1
        ids = jax.random.randint(jax.random.fold_in(jax.random.fold_in(key, 3), s), (B,), 0, M)
        batch = jnp.asarray(np.stack([ring[i] for i in np.asarray(ids)]))
        for start in np.asarray(batch[:sil, 0]):  # emulator steps, then the solver
            v = start
            for _ in range(sil_horizon):
                v = np.asarray(apply(params, v))
            levels = [v]
            for _ in range(L - 1):
                levels.append(np.asarray(ref(levels[-1])))
            ring[n % M], n = np.stack(levels), n + 1
        loss, g = grad(params, batch)
        losses.append(float(loss))
        params = jax.tree_util.tree_map(lambda p, d: p - lr * d, params, g)
    return params, np.asarray(losses)


def supervised_loss(apply, params, batch):
    pred, total = batch[:, 0], 0.0
    for t in range(1, batch.shape[1]):
        pred = apply(params, pred)
        total = total + jnp.mean((pred - batch[:, t]) ** 2)
    return total


def stream_trainer(problem, configuration, **kw):
    options = dict(ref_stepper=problem.ref_stepper, ic_sampler=ics(problem),
                   optimizer=optax.sgd(0.1), num_training_steps=6, batch_size=4, buffer_size=7,
                   num_streams=3, stream_length=5, progress_bar=False)
    options.update(kw)
    return StreamTrainer(configuration, **options)


@pytest.mark.parametrize("estimator, sil", [(None, 0), (TruncatedBPTT(1), 0), (None, 2)],
                         ids=["bptt", "tbptt1", "bptt-solver-in-the-loop"])
def test_training_equals_the_hand_written_pipeline(problem, estimator, sil):
    key = jax.random.PRNGKey(7)
    trainer = stream_trainer(problem, cfg.Supervised(2), estimator=estimator,
                             solver_steps_per_step=2, steps_per_call=4, solver_in_the_loop=sil,
                             solver_in_the_loop_horizon=2)
    (_, got), hist = trainer(stencil_model(), key=key)
    if estimator is None:
        loss = supervised_loss
    else:  # truncation 1: no gradient through the previous prediction
        def loss(apply, params, batch):
            pred, total = batch[:, 0], 0.0
            for t in range(1, 3):
                pred = apply(params, jax.lax.stop_gradient(pred))
                total = total + jnp.mean((pred - batch[:, t]) ** 2)
            return total
    want, losses = hand_run(problem, loss, 3, key, S=3, T=5, M=7, B=4, steps=6, lr=0.1, spp=2,
                            sil=sil, sil_horizon=2)
    np.testing.assert_allclose(np.asarray(hist), losses, rtol=2e-5)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-5)


# 7 s: a training run, the full suite
@pytest.mark.slow
def test_training_reduces_the_loss_towards_the_upwind_stencil(problem):
    trainer = stream_trainer(problem, cfg.Supervised(1), optimizer=optax.adam(2e-2),
                             num_training_steps=300, batch_size=8, buffer_size=32,
                             num_streams=4, stream_length=20, data_parallel=True,
                             callbacks=[GradNormCallback(every=150),
                                        LossCallback(cfg.Supervised(1), every=150)])
    (_, params), hist = trainer(stencil_model(), key=0)
    loss = np.asarray(hist)
    # the callbacks see the buffer as their data
    assert [s for s, _ in hist["grad_norm"]] == [0, 150, 300]
    losses = [v for _, v in hist["loss_Supervised"]]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.1 * losses[0]
    assert loss[-20:].mean() < 0.05 * loss[:5].mean()
    # the exact advection by 0.75 cells is close to first-order upwind (trainax's FOU)
    np.testing.assert_allclose([params["a"], params["b"]], [1 + CFL, -CFL], atol=0.08)


def test_resume_equals_an_uninterrupted_run(problem, tmp_path):
    configuration = cfg.DivertedChainBranchOne(2, cut_div_chain=True)
    kw = dict(num_training_steps=8, steps_per_call=3, sampling="reservoir",
              solver_in_the_loop=2, optimizer=optax.adam(1e-2),
              callbacks=[WeightNormCallback(every=4)])
    full_trainer = stream_trainer(problem, configuration, **kw)
    (_, full), full_hist = full_trainer(stencil_model(), key=3)
    half = stream_trainer(problem, configuration, **{**kw, "num_training_steps": 4})
    half(stencil_model(), key=3)
    path = half.save_checkpoint(str(tmp_path / "stream.npz"))
    (_, again), again_hist = half.resume(4)
    fresh = stream_trainer(problem, configuration, **kw)
    (_, resumed), resumed_hist = fresh(stencil_model(), resume_from=path)
    for got, hist in ((again, again_hist), (resumed, resumed_hist)):
        jax.tree_util.tree_map(np.testing.assert_array_equal, got, full)
        np.testing.assert_array_equal(np.asarray(hist), np.asarray(full_hist))
    np.testing.assert_array_equal(np.asarray(fresh.buffer.windows),
                                  np.asarray(full_trainer.buffer.windows))
    assert resumed_hist["weight_norm"] == full_hist["weight_norm"]
    # prefill fills 7 slots; then 3 streams and 2 solver-in-the-loop windows per step
    # (every stream's window is complete except right after a restart)
    assert int(full_trainer.buffer.count) > 7 + 8 * 2


@pytest.mark.parametrize("steps_per_call", [pytest.param(200, marks=pytest.mark.slow), 1])
def test_divergence_keeps_the_state_of_the_reported_loss(problem, tmp_path, steps_per_call):
    # issue 25 item 5 for streaming: the kept parameters, streams and buffer are those the
    # reported loss was evaluated at (one step per chunk: the kept state lies in an earlier
    # chunk than the failure), and a resume with a small rate trains on from them
    path = str(tmp_path / "stream.npz")
    trainer = stream_trainer(problem, cfg.Supervised(1), optimizer=optax.sgd(1e4),
                             num_training_steps=50, checkpoint_path=path,
                             steps_per_call=steps_per_call)
    with pytest.raises(TrainingDiverged) as info:
        trainer(stencil_model(), key=0)
    err = info.value
    assert len(err.history.loss) == err.step and err.failed_step > err.step
    assert f"{err.last_finite_loss:.6g}" in str(err)
    apply, params = err.emulator
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(params))
    # the loss written out: the windows the next step draws from the kept streams and
    # buffer, one step of the kept parameters against the solver's next level
    _, buffer = trainer._feed(trainer.stream_state, trainer.buffer, trainer.key)
    windows = draw(buffer, jax.random.fold_in(jax.random.fold_in(trainer.key, 3), err.step),
                   trainer.batch_size)
    by_hand = float(jnp.mean((jax.vmap(lambda u: apply(params, u))(windows[:, 0])
                              - windows[:, 1]) ** 2))
    assert err.last_finite_loss == pytest.approx(by_hand, rel=1e-5)
    resumed = stream_trainer(problem, cfg.Supervised(1), optimizer=optax.sgd(1e-2),
                             num_training_steps=20)
    _, history = resumed(stencil_model(), resume_from=path)
    assert history.loss[err.step] == pytest.approx(err.last_finite_loss, rel=1e-6)
    assert len(history.loss) == 20 and np.isfinite(history.loss).all()


def test_validation(problem):
    with pytest.raises(ValueError, match="^sampling:"):
        stream_trainer(problem, cfg.Supervised(1), sampling="lifo")
    with pytest.raises(ValueError, match="^stream_length:"):
        stream_trainer(problem, cfg.Supervised(4), stream_length=2)
    with pytest.raises(ValueError, match="^solver_in_the_loop:"):
        stream_trainer(problem, cfg.Supervised(1), solver_in_the_loop=5)
    with pytest.raises(TypeError, match="^ic_sampler:"):
        stream_trainer(problem, cfg.Supervised(1), ic_sampler=None)
    with pytest.raises(TypeError, match="^optimizer:"):
        stream_trainer(problem, cfg.Supervised(1), optimizer="adam")
    bad = stream_trainer(problem, cfg.Supervised(1),
                         ic_sampler=lambda key, num: jnp.zeros((2, 1, N)))
    with pytest.raises(ValueError, match="^ic_sampler:"):
        bad(stencil_model(), key=0)
    with pytest.raises(TypeError, match="^key:"):
        stream_trainer(problem, cfg.Supervised(1))(stencil_model())


@pytest.mark.slow  # braintrace compiles its learner (about 25 s)
def test_etrace_trains_from_the_stream(problem):
    trainer = stream_trainer(problem, cfg.Supervised(2), estimator=ETrace("d_rtrl"),
                             optimizer=optax.adam(1e-2), num_training_steps=60,
                             batch_size=8, buffer_size=32, solver_in_the_loop=2)
    _, hist = trainer(ConvNet(1, 1, 1, hidden_channels=4, depth=1, key=0), key=0)
    loss = np.asarray(hist)
    assert np.all(np.isfinite(loss)) and loss[-10:].mean() < 0.5 * loss[:5].mean()
