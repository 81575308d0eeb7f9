"""A researcher's own model and data, end to end (issue 26): each test makes the call a
newcomer made and checks what they now get."""

import json
import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from online_emulate import value_and_grad
from online_emulate._storage import load_checkpoint, new_file_mode, save_checkpoint
from online_emulate.cli import main
from online_emulate.cli._run import write_json
from online_emulate.configuration import Supervised
from online_emulate.emulators import LinearStencil, load_emulator
from online_emulate.estimators import ForwardRTRL
from online_emulate.sample_data import advection_1d_periodic
from online_emulate.trainer import DivertedChainBranchOneTrainer, OnlineTrainer, SupervisedTrainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    first, _ = _supervised(data, 6, checkpoint_path=path)(_eqx_net(), jax.random.PRNGKey(0))
    assert os.path.exists(path)  # written at the end of a normal run
    # the checkpoint of an equinox model loads for inference into a model of its architecture
    import equinox as eqx

    assert eqx.tree_equal(load_emulator(path, like=_eqx_net()), first)
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


# ------------------------------------------------------------- layout and dtype errors
def _eqx_trainer(data, **kw):
    return _supervised(data, 2, **kw)


def test_time_last_data_is_named_before_compiling(data):
    time_last = jnp.moveaxis(data, 1, -1)  # (samples, C, N, time)
    with pytest.raises(ValueError, match=r"^data: expected trajectories of at least 3 time levels .*"
                                         r"the time axis may be last.*jnp\.moveaxis\(data, -1, 1\)"):
        _eqx_trainer(time_last)
    with pytest.raises(ValueError, match=r"^data: .*the time axis may be last"):
        value_and_grad(Supervised(2), _eqx_net(), time_last)
    # a plain short trajectory gets the plain advice
    with pytest.raises(ValueError, match="use longer trajectories or fewer rollout steps"):
        _eqx_trainer(data[:, :2])


def test_a_missing_channel_axis_is_named_for_an_equinox_model(data):
    with pytest.raises(ValueError, match=r"^data: expected trajectories \(samples, time, C, \*N\), got shape "
                                         r"\(8, 20, 30\): the channel axis is missing .*data\[:, :, None\]"):
        _eqx_trainer(data[:, :, 0])(_eqx_net(), 0)


def _online(**kw):
    return OnlineTrainer(optimizer=optax.adam(1e-2), rollout_length=8, num_rollouts=1, update_every=4,
                         estimator=ForwardRTRL(), progress_bar=False, **kw)


@pytest.mark.parametrize("model", [_eqx_net(), LinearStencil(1, 1, 1, key=0)], ids=["equinox", "builtin"])
def test_an_unbatched_ic_sampler_is_named(model):
    unbatched = lambda key: jax.random.normal(key, (1, 30))  # noqa: E731  one state (C, N)
    trainer = _online(ic_sampler=unbatched, ref_stepper=lambda u: jnp.roll(u, 1, -1))
    with pytest.raises(ValueError, match=r"^ic_sampler: expected a batch of initial conditions \(B, C, \*N\), "
                                         r"i\.e\. \(B, 1, 30\) .*got shape \(1, 30\): an axis is missing"):
        trainer(model, key=0)


def test_a_numpy_reference_stepper_gets_the_contract():
    def numpy_step(u):  # the newcomer's NumPy solver step
        return np.roll(np.asarray(u), 1, axis=-1)

    batch = lambda key: jax.random.normal(key, (4, 1, 30))  # noqa: E731
    with pytest.raises(TypeError, match=r"^ref_stepper: expected a JAX function of one state \(1, 30\) \(C, \*N\), "
                                        r"which the library traces \(jit\) and vmaps.*numpy_step.*TracerArrayConversionError"):
        _online(ic_sampler=batch, ref_stepper=numpy_step)(_eqx_net(), key=0)
    data = advection_1d_periodic(cfl=-0.75, key=jax.random.PRNGKey(0))[:8, :4]
    trainer = DivertedChainBranchOneTrainer(data, num_rollout_steps=2, optimizer=optax.adam(1e-2),
                                            num_training_steps=2, batch_size=4, progress_bar=False,
                                            ref_stepper=numpy_step)
    with pytest.raises(TypeError, match="^ref_stepper: expected a JAX function of one state"):
        trainer(_eqx_net(), 0)


X64_EQUINOX = """
import jax
jax.config.update("jax_enable_x64", True)
import equinox as eqx, jax.numpy as jnp, numpy as np, optax
from online_emulate.trainer import SupervisedTrainer
net = eqx.nn.Conv1d(1, 1, 3, padding="SAME", padding_mode="CIRCULAR", dtype=jnp.float32, key=jax.random.PRNGKey(1))
data = np.ones((4, 4, 1, 8), np.float64)
trainer = SupervisedTrainer(data, num_rollout_steps=2, optimizer=optax.adam(1e-3), num_training_steps=1, batch_size=2)
try:
    trainer(net, 0)
except ValueError as err:
    print("REFUSED", err)
"""


@pytest.mark.slow
def test_float64_data_and_a_float32_equinox_model_are_refused_under_x64():
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", X64_EQUINOX], capture_output=True, text=True, env=env, timeout=300)
    assert "REFUSED data: expected dtype float32 to match the emulator's parameters, got float64" in out.stdout, \
        out.stderr[-2000:]


def test_another_float_dtype_is_refused_for_every_model_kind(data):
    half = np.asarray(data, np.float16)
    pair = (lambda p, u: p["a"] * u, {"a": jnp.array(0.5)})
    for model in (_eqx_net(), pair):
        with pytest.raises(ValueError, match="^data: expected dtype float32 to match the emulator's parameters, got float16"):
            _eqx_trainer(half)(model, 0)
    # float64 without jax_enable_x64 is float32 to jax: accepted, as the README says
    _, history = _eqx_trainer(np.asarray(data, np.float64))(_eqx_net(), 0)
    assert np.isfinite(history.loss).all()


# ------------------------------------------------------------------ the command line
SMALL = [
    "--problem", "advection_1d", "--num-points", "16", "--samples", "4", "--horizon", "12",
    "--test-samples", "2", "--test-horizon", "20", "--emulator", "linear", "--rollout-steps", "2",
    "--steps", "10", "--batch-size", "4", "--no-progress", "--learning-rate", "1e-2",
]


def _files(folder):
    return {n: (folder / n).read_bytes() for n in sorted(os.listdir(folder)) if (folder / n).is_file()}


def _error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_train_refuses_an_earlier_run_and_names_resume_and_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        assert main(["train", *SMALL, "--output", str(out)]) == 0
    finally:
        os.umask(old)
    for name in ("config.json", "metrics.json", "checkpoint.npz", "emulator.npz", "loss.png"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o644, name
    before = _files(out)
    capsys.readouterr()
    assert main(["train", *SMALL, "--output", str(out)]) == 2
    err = _error_line(capsys)
    assert "--output: expected an empty folder" in err and "--resume" in err and "--overwrite" in err
    assert _files(out) == before
    # the options that differ from the run's config.json are named, not a hidden file
    changed = [*SMALL, "--learning-rate", "0.05", "--emulator", "convnet"]
    assert main(["train", *changed, "--output", str(out), "--resume"]) == 2
    err = _error_line(capsys)
    assert err.startswith("online-emulate train: error: --resume: expected the options")
    assert "--learning-rate 0.05 (the run: 0.01)" in err and "--emulator 'convnet' (the run: 'linear')" in err
    assert ".resume-" not in err and _files(out) == before
    assert main(["train", *SMALL, "--output", str(out), "--resume", "--overwrite"]) == 2
    assert "--overwrite: expected either --resume" in _error_line(capsys)
    assert main(["train", *changed, "--output", str(out), "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["learning_rate"] == 0.05


def test_an_estimator_that_does_not_fit_names_the_flags_that_do(tmp_path, capsys):
    argv = ["train", *SMALL, "--output", str(tmp_path / "x")]
    assert main([*argv, "--configuration", "diverted-chain", "--estimator", "d_rtrl"]) == 2
    err = _error_line(capsys)
    assert err.startswith("online-emulate train: error: --estimator: expected one of bptt, bptt-step, "
                          "bptt-sqrt, bptt-binomial with --configuration diverted-chain")
    for fit in ("supervised", "diverted-chain-branch-one --cut-div-chain", "residuum --cut-prev", "teacher-forcing"):
        assert fit in err
    assert "ETrace(" not in err and "BPTT(" not in err and len(err) < 500
    assert main([*argv, "--optimizer", "kfac", "--estimator", "tbptt"]) == 2
    assert "--optimizer: expected adam or sgd with --estimator tbptt" in _error_line(capsys)
    assert not os.listdir(tmp_path / "x")  # refused before anything was written
