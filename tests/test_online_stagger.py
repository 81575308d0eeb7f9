"""OnlineTrainer's staggered starts against a hand-written per-member loop: each member's
trajectory index and time level at every step, the losses and sgd updates of a few
updates, and a resume that continues a staggered run."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from online_emulate.callback import CheckpointCallback
from online_emulate.emulators import LinearStencil, get_params
from online_emulate.estimators import ETrace, ForwardRTRL, TruncatedBPTT
from online_emulate.trainer import OnlineTrainer
from online_emulate.trainer._stagger import allowed_phases, resolve_phases

B, N, LR = 3, 8, 0.1
PARAMS = {"a": jnp.float32(0.7), "b": jnp.float32(0.2)}


def apply(params, u):
    return params["a"] * u + params["b"] * jnp.roll(u, -1, axis=-1)


def ref(u):
    return 0.8 * u + 0.2 * jnp.roll(u, 1, axis=-1) - 0.05 * u**3


def ic_sampler(key):
    return jax.random.normal(key, (B, 1, N))


def ics(j):
    """Initial conditions of rollout j, as the trainer draws them with key=0."""
    return ic_sampler(jax.random.fold_in(jax.random.PRNGKey(0), j))


def hand_run(phases, *, T, U, K, num_rollouts, alpha=None):
    """sgd on the staggered stream, written per member: member b enters trajectory 0 at
    step phases[b] (the solver run that many steps), every trajectory has T steps and the
    next one starts from member b of the next rollout's initial conditions; the state is
    re-anchored every K steps of the trainer's rollout clock and at every rollout start;
    one update every U steps, its gradient through its own steps only (TruncatedBPTT(U)
    restarts at each update); with `alpha`, every step continues from the teacher-forced
    mix. Returns the parameters and the loss of every update."""
    members = []
    for b, o in enumerate(phases):
        r = ics(0)[b]
        for _ in range(o):
            r = ref(r)
        members.append({"b": b, "traj": 0, "t": o, "u": r, "r": r})
    theta, losses = PARAMS, []
    # an update's steps never cross a rollout: its last update has the T % U left
    starts = [(ro * T + s, ro * T + min(s + U, T)) for ro in range(num_rollouts)
              for s in range(0, T, U)]
    for g0, g1 in starts:

        def update_loss(theta, members):
            total, new = 0.0, []
            for m in members:
                new.append(dict(m))
            for g in range(g0, g1):
                step = []
                for m in new:
                    r = ref(m["r"])
                    v = apply(theta, m["u"][None])[0]
                    step.append((v - r) ** 2)
                    m["u"], m["r"], m["t"] = v, r, m["t"] + 1
                    if alpha is not None:
                        m["u"] = (1 - alpha) * v + alpha * r
                    if m["t"] == T:  # the trajectory ends: the next one starts
                        m["traj"] += 1
                        m["t"] = 0
                        m["r"] = m["u"] = ics(m["traj"])[m["b"]]
                    if (g % T + 1) % K == 0 or g % T == T - 1:
                        m["u"] = m["r"]
                total = total + jnp.mean(jnp.stack(step))
            return total, new

        (loss, members), grad = jax.value_and_grad(update_loss, has_aux=True)(theta, members)
        members = [{k: jax.lax.stop_gradient(v) if k in ("u", "r") else v
                    for k, v in m.items()} for m in members]
        losses.append(loss)
        theta = jax.tree_util.tree_map(lambda p, d: p - LR * d, theta, grad)
    return theta, np.asarray(losses)


def trainer(stagger, *, T, U, K, num_rollouts, estimator=None, **kw):
    return OnlineTrainer(optimizer=optax.sgd(LR), rollout_length=T, update_every=U,
                         num_rollouts=num_rollouts, reanchor_every=K, stagger=stagger,
                         estimator=estimator or TruncatedBPTT(U), progress_bar=False, **kw)


@pytest.mark.parametrize("T,U,K,stagger,alpha", [
    pytest.param(6, 3, 2, True, None, marks=pytest.mark.slow), (6, 1, 1, [0, 3, 5], None),
    (5, 2, 2, True, None), (6, 3, 2, True, 0.4)])
def test_staggered_sgd_equals_the_hand_written_member_loop(T, U, K, stagger, alpha):
    phases = resolve_phases(True if stagger is True else tuple(stagger), B, T, K)
    assert len(set(phases.tolist())) == B  # three members, three phases
    want, want_losses = hand_run(phases.tolist(), T=T, U=U, K=K, num_rollouts=2, alpha=alpha)
    (_, params), hist = trainer(stagger, T=T, U=U, K=K, num_rollouts=2, teacher_forcing=alpha,
                                ic_sampler=ic_sampler, ref_stepper=ref)((apply, PARAMS), key=0)
    np.testing.assert_allclose(np.asarray(hist), want_losses, rtol=2e-5)
    for k in want:
        np.testing.assert_allclose(params[k], want[k], rtol=2e-5, atol=1e-7)
    # the members' phases change the run: unstaggered it is another one
    (_, plain), _ = trainer(False, T=T, U=U, K=K, num_rollouts=2, teacher_forcing=alpha,
                            ic_sampler=ic_sampler, ref_stepper=ref)((apply, PARAMS), key=0)
    assert not np.allclose(plain["a"], params["a"])


def test_each_member_sees_its_own_trajectory_and_time_level():
    """Stored levels encode (row, level) as 1000 * row + level; a zero emulator and a zero
    learning rate make a one-member run's per-step loss the squared target, so the
    history spells out the row and level member 0 is trained against at every step."""
    S, T, L = 4, 6, 9
    data = (1000.0 * np.arange(S)[:, None] + np.arange(L)[None, :])
    data = np.broadcast_to(data[:, :, None, None], (S, L, 1, 4)).astype(np.float32)
    zero = {"a": jnp.float32(0.0), "b": jnp.float32(0.0)}
    for phase in (0, 2, 4):
        t = OnlineTrainer(optimizer=optax.sgd(0.0), rollout_length=T, update_every=1,
                          num_rollouts=3, estimator=TruncatedBPTT(1), reanchor_every=2,
                          stagger=[phase], reference_data=data, batch_size=1,
                          progress_bar=False, steps_per_call=4)
        _, hist = t((apply, zero), key=0)
        seen = np.sqrt(np.asarray(hist)).round().astype(int)
        steps = np.arange(3 * T) + phase  # the member's clock, shifted by its phase
        rows, levels = (steps // T) % S, steps % T + 1
        np.testing.assert_array_equal(seen, 1000 * rows + levels)


def test_stored_stream_equals_the_solver_stream():
    """The same trajectories stored or streamed from the solver give the same run."""
    T, K = 6, 2
    traj = []
    for j in range(3):
        u, levels = ics(j), [ics(j)]
        for _ in range(T):
            u = jax.vmap(ref)(u)
            levels.append(u)
        traj.append(jnp.stack(levels, axis=1))
    data = np.asarray(jnp.concatenate(traj))  # rollout j's member b is row j * B + b
    stored = trainer(True, T=T, U=3, K=K, num_rollouts=2, reference_data=data, batch_size=B,
                     estimator=ForwardRTRL())
    streamed = trainer(True, T=T, U=3, K=K, num_rollouts=2, ic_sampler=ic_sampler,
                       ref_stepper=ref, estimator=ForwardRTRL())
    (_, a), ha = stored((apply, PARAMS), key=0)
    (_, b), hb = streamed((apply, PARAMS), key=0)
    np.testing.assert_allclose(np.asarray(ha), np.asarray(hb), rtol=1e-5)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("estimator", [TruncatedBPTT(2), ETrace("d_rtrl")])
def test_resume_continues_a_staggered_run(tmp_path, estimator):
    path = str(tmp_path / "ckpt{step}.npz")
    sampler = lambda key: jax.random.normal(key, (3, 1, 16))  # noqa: E731
    shift = lambda u: jnp.roll(u, 1, axis=-1)  # noqa: E731

    def make(callbacks=()):
        return OnlineTrainer(optimizer=optax.adam(1e-2), rollout_length=8, num_rollouts=2,
                             update_every=2, estimator=estimator, reanchor_every=2,
                             stagger=True, ic_sampler=sampler, ref_stepper=shift,
                             progress_bar=False, steps_per_call=2, callbacks=callbacks)

    full, h_full = make([CheckpointCallback(path, every=3)])(LinearStencil(1, 1, 1, key=2),
                                                             key=0)
    # update 6 is mid-way through the second rollout, each staggered member on its
    # second trajectory
    resumed, h_res = make()(LinearStencil(1, 1, 1, key=2), key=0,
                            resume_from=path.format(step=6))
    np.testing.assert_array_equal(h_res.loss, h_full.loss)
    jax.tree_util.tree_map(np.testing.assert_array_equal, get_params(resumed), get_params(full))
    # the phases are part of the stream: another setting cannot continue it
    with pytest.raises(ValueError, match=r"^resume_from: expected a checkpoint of a run with "
                                         r"this trainer's staggered phases \[\]"):
        OnlineTrainer(optimizer=optax.adam(1e-2), rollout_length=8, num_rollouts=2,
                      update_every=2, estimator=estimator, reanchor_every=2,
                      ic_sampler=sampler, ref_stepper=shift, progress_bar=False)(
            LinearStencil(1, 1, 1, key=2), key=0, resume_from=path.format(step=6))


def test_spread_phases():
    assert allowed_phases(6, 2) == [0, 2, 4]
    assert allowed_phases(5, 2) == [0, 1, 3]  # trajectories end where the clock re-anchors
    np.testing.assert_array_equal(resolve_phases(True, 3, 6, 1), [0, 2, 4])
    np.testing.assert_array_equal(resolve_phases(True, 4, 6, 3), [0, 0, 3, 3])
    assert resolve_phases(False, 3, 6, 1) is None


def test_stagger_validation():
    kw = dict(optimizer=optax.sgd(LR), rollout_length=6, ic_sampler=ic_sampler,
              ref_stepper=ref, progress_bar=False)
    with pytest.raises(TypeError, match="^stagger: expected True, False or a sequence"):
        OnlineTrainer(stagger="yes", reanchor_every=1, **kw)
    with pytest.raises(TypeError, match="^stagger:"):
        OnlineTrainer(stagger=[0, 1.5], reanchor_every=1, **kw)
    with pytest.raises(ValueError, match="^stagger: expected reanchor_every"):
        OnlineTrainer(stagger=True, **kw)
    with pytest.raises(ValueError, match="^stagger: expected reanchor_every < rollout_length"):
        OnlineTrainer(stagger=True, reanchor_every=6, **kw)
    with pytest.raises(ValueError, match=r"^stagger: expected phases in \[0, 2, 4\]"):
        OnlineTrainer(stagger=[0, 3, 4], reanchor_every=2, **kw)
    with pytest.raises(ValueError, match="^stagger:"):
        OnlineTrainer(stagger=[0, 6, 4], reanchor_every=2, **kw)
    with pytest.raises(ValueError, match="^stagger: expected one phase per batch member"):
        OnlineTrainer(stagger=[], reanchor_every=2, **kw)
    # the batch size comes from the sampler: checked at the call, before compiling
    with pytest.raises(ValueError, match=r"^stagger: expected one phase per batch member \(3\)"):
        OnlineTrainer(stagger=[0, 2], reanchor_every=2, **kw)((apply, PARAMS), key=0)
    data = np.zeros((4, 7, 1, N), np.float32)
    with pytest.raises(ValueError, match=r"^stagger: expected one phase per batch member \(2\)"):
        OnlineTrainer(optimizer=optax.sgd(LR), rollout_length=6, reference_data=data,
                      batch_size=2, stagger=[0, 2, 4], reanchor_every=2)
