"""A researcher's own model and data, end to end (issue 26): each test makes the call a
newcomer made and checks what they now get."""

import os
import stat

import jax
import numpy as np
import optax
import pytest

from online_emulate._storage import load_checkpoint, new_file_mode, save_checkpoint
from online_emulate.cli._run import write_json
from online_emulate.emulators import LinearStencil
from online_emulate.estimators import ForwardRTRL
from online_emulate.sample_data import advection_1d_periodic
from online_emulate.trainer import OnlineTrainer, SupervisedTrainer


@pytest.fixture(scope="module")
def data():
    return advection_1d_periodic(cfl=-0.75, key=jax.random.PRNGKey(0))[:8, :20]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert new_file_mode() == mode
        save_checkpoint(tmp_path / "c.npz", {"params": {"w": np.zeros(3)}, "step": 1})
        write_json(str(tmp_path / "config.json"), {"a": 1})
        with open(tmp_path / "plain.txt", "w") as f:  # what a PNG writer gets
            f.write("x")
    finally:
        os.umask(old)
    for name in ("c.npz", "config.json", "plain.txt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name


# ------------------------------------------------- checkpoint_path at the end of a run
def _eqx_net():
    import equinox as eqx

    conv = lambda i, o, k: eqx.nn.Conv1d(i, o, 3, padding="SAME", padding_mode="CIRCULAR",  # noqa: E731
                                         key=jax.random.PRNGKey(k))
    return eqx.nn.Sequential([conv(1, 4, 1), eqx.nn.Lambda(jax.nn.relu), conv(4, 1, 2)])


def _supervised(data, steps, **kw):
    return SupervisedTrainer(data, num_rollout_steps=2, optimizer=optax.adam(1e-2), num_training_steps=steps,
                             batch_size=4, progress_bar=False, steps_per_call=4, **kw)


def test_a_finished_run_writes_checkpoint_path_and_a_fresh_trainer_resumes_it(tmp_path, data):
    path = str(tmp_path / "x.npz")
    _supervised(data, 6, checkpoint_path=path)(_eqx_net(), jax.random.PRNGKey(0))
    assert os.path.exists(path)  # written at the end of a normal run
    # another trainer object (as in a new process): continue to 12 steps in total
    resumed, history = _supervised(data, 12)(_eqx_net(), resume_from=path)
    straight, straight_history = _supervised(data, 12)(_eqx_net(), jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(history.loss), np.asarray(straight_history.loss))
    jax.tree_util.tree_map(np.testing.assert_array_equal, jax.tree_util.tree_leaves(resumed),
                           jax.tree_util.tree_leaves(straight))


def test_resume_and_an_online_trainer_write_it_too(tmp_path, data):
    path = str(tmp_path / "s.npz")
    trainer = _supervised(data, 3, checkpoint_path=path)
    trainer(LinearStencil(1, 1, 1, key=0), 0)
    trainer.resume(2)
    assert load_checkpoint(path)["step"] == 5
    online = str(tmp_path / "o.npz")
    make = lambda n, **kw: OnlineTrainer(  # noqa: E731
        optimizer=optax.adam(1e-2), rollout_length=8, num_rollouts=n, update_every=4,
        estimator=ForwardRTRL(), reference_data=data, batch_size=2, progress_bar=False, **kw)
    make(1, checkpoint_path=online)(LinearStencil(1, 1, 1, key=0), key=0)
    _, history = make(2)(LinearStencil(1, 1, 1, key=0), resume_from=online)
    _, straight = make(2)(LinearStencil(1, 1, 1, key=0), key=0)
    np.testing.assert_array_equal(np.asarray(history.loss), np.asarray(straight.loss))
