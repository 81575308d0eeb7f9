"""Safe checkpoints, stored emulators and divergence recovery."""

import os
import pickle
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from online_emulate import value_and_grad
from online_emulate.configuration import Supervised
from online_emulate.emulators import (
    ConvNet,
    LinearStencil,
    get_params,
    load_emulator,
    load_weights,
    save_emulator,
    save_weights,
    set_params,
)
from online_emulate.sample_data import advection_1d_periodic
from online_emulate.trainer import (
    SupervisedTrainer,
    TrainingDiverged,
    load_checkpoint,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def data():
    return advection_1d_periodic(cfl=-0.75, key=jax.random.PRNGKey(0))[:8, :12]


def _trainer(data, optimizer, steps=30, num_rollout_steps=3, **kw):
    return SupervisedTrainer(data, optimizer=optimizer, num_training_steps=steps, batch_size=4,
                             num_rollout_steps=num_rollout_steps, progress_bar=False, **kw)


# ---------------------------------------------------------------- the format
def test_checkpoint_round_trip_keeps_structure_and_values(tmp_path):
    params = get_params(ConvNet(1, 2, 2, hidden_channels=3, key=1))
    opt_state = optax.adam(1e-3).init(params)
    payload = {"params": params, "opt_state": opt_state, "step": 7, "key": jax.random.PRNGKey(3),
               "loss": np.array([1.0, np.inf], np.float32), "records": {"a": [[1, float("nan")]]}}
    path = save_checkpoint(tmp_path / "c.npz", payload)
    blob = load_checkpoint(path)
    assert blob["step"] == 7 and np.isnan(blob["records"]["a"][0][1])
    assert jax.tree_util.tree_structure(blob["opt_state"]) == jax.tree_util.tree_structure(opt_state)
    jax.tree_util.tree_map(np.testing.assert_array_equal, blob["params"], params)
    np.testing.assert_array_equal(blob["key"], jax.random.PRNGKey(3))
    np.testing.assert_array_equal(blob["loss"], payload["loss"])
    # the file is an ordinary npz: no object arrays anywhere
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


def test_loading_a_pickle_refuses_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "checkpoint.npz"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="checkpoint.npz"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="checkpoint.npz"):
        load_emulator(path)
    assert not marker.exists()


def test_foreign_truncated_and_mismatched_files_are_refused(tmp_path, data):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match=r"expected a readable online_emulate checkpoint file, got .*text\.npz"):
        load_checkpoint(tmp_path / "text.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match=r"plain\.npz.*without online_emulate metadata"):
        load_checkpoint(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_checkpoint(tmp_path / "missing.npz")

    trainer = _trainer(data, optax.adam(1e-3), steps=3, checkpoint_path=str(tmp_path / "ok.npz"))
    trainer(LinearStencil(1, 1, 1, key=0), key=0)
    trainer.save_checkpoint()
    raw = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "torn.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"torn\.npz.*truncated"):
        load_checkpoint(tmp_path / "torn.npz")
    # another architecture, another optimizer: named, before any training
    other = _trainer(data, optax.adam(1e-3), steps=5)
    with pytest.raises(ValueError, match=r"ok\.npz"):
        other(ConvNet(1, 1, 1, hidden_channels=2, key=0), key=0, resume_from=str(tmp_path / "ok.npz"))
    sgd = _trainer(data, optax.sgd(1e-3, momentum=0.9), steps=5)
    with pytest.raises(ValueError, match=r"structure.*ok\.npz"):
        sgd(LinearStencil(1, 1, 1, key=0), key=0, resume_from=str(tmp_path / "ok.npz"))
    # an emulator file is not a trainer checkpoint
    save_emulator(tmp_path / "em.npz", LinearStencil(1, 1, 1, key=0))
    with pytest.raises(ValueError, match=r"expected a trainer checkpoint, got .*em\.npz"):
        other(LinearStencil(1, 1, 1, key=0), key=0, resume_from=str(tmp_path / "em.npz"))


@pytest.mark.parametrize("emulator", [
    LinearStencil(2, 1, 2, kernel_size=(2, 3), use_bias=True, key=4),
    ConvNet(1, 2, 2, hidden_channels=5, depth=3, kernel_size=5, residual=True, activation=jnp.tanh, key=5),
])
def test_save_and_load_emulator_reproduce_outputs(tmp_path, emulator):
    path = save_emulator(tmp_path / "em.npz", emulator)
    loaded = load_emulator(path)
    assert type(loaded) is type(emulator)
    u = jax.random.normal(jax.random.PRNGKey(0), (3, emulator.in_channels) + (8,) * emulator.num_spatial_dims)
    np.testing.assert_array_equal(emulator(u), loaded(u))


def test_user_models_store_weights_with_documented_restore(tmp_path):
    class Mine(LinearStencil):
        pass

    model = Mine(1, 1, 1, key=2)
    # your own brainstate module is stored too; loading needs a module to put it in
    save_emulator(tmp_path / "x.npz", model)
    with pytest.raises(ValueError, match="^like: expected a brainstate module .*Mine"):
        load_emulator(tmp_path / "x.npz")
    loaded = load_emulator(tmp_path / "x.npz", like=Mine(1, 1, 1, key=9))
    assert type(loaded) is Mine
    jax.tree_util.tree_map(np.testing.assert_array_equal, get_params(loaded), get_params(model))
    save_weights(tmp_path / "w.npz", model)
    with pytest.raises(ValueError, match="set_params"):
        load_emulator(tmp_path / "w.npz")
    fresh = Mine(1, 1, 1, key=9)
    set_params(fresh, load_weights(tmp_path / "w.npz"))
    jax.tree_util.tree_map(np.testing.assert_array_equal, get_params(fresh), get_params(model))


# ------------------------------------------------------------------ recovery
def _finite_tree(tree):
    leaves = getattr(tree, "leaves", None) or jax.tree_util.tree_leaves(tree)  # StoredTree too
    return all(np.isfinite(np.asarray(x)).all() for x in leaves
               if np.issubdtype(np.asarray(x).dtype, np.inexact))


def _spike_then_recover(data, make, small, big, tmp_path, steps):
    """Train 5 steps at a small rate, continue at a rate that diverges, then resume the
    divergence checkpoint at the small rate: the result must equal an uninterrupted run
    at the small rate (the kept state is step 5's, with its optimizer state)."""
    warm, path = str(tmp_path / "warm.npz"), str(tmp_path / "diverged.npz")
    first = make(small, 5)
    first(LinearStencil(1, 1, 1, key=0), key=0)
    first.save_checkpoint(warm)
    with pytest.raises(TrainingDiverged) as info:
        make(big, steps, checkpoint_path=path)(LinearStencil(1, 1, 1, key=0), key=0, resume_from=warm)
    err = info.value
    assert err.step == 5 and _finite_tree(get_params(err.emulator))
    blob = load_checkpoint(path)
    assert blob["step"] == 5 and _finite_tree(blob["opt_state"])
    resumed, history = make(small, steps)(LinearStencil(1, 1, 1, key=0), key=0, resume_from=path)
    straight, straight_history = make(small, steps)(LinearStencil(1, 1, 1, key=0), key=0)
    assert len(history.loss) == steps and np.isfinite(history.loss).all()
    return resumed, history, straight, straight_history, err


def test_divergence_keeps_a_finite_state_and_resumes_with_a_smaller_rate(tmp_path, data):
    # R=10 rollouts of a linear stencil: the big step's update is finite, the NEXT loss
    # overflows, so the kept state is the one before that update (the old trainer kept
    # the overflowing one, and its optimizer state with it)
    def make(rate, steps, **kw):
        return _trainer(data, optax.sgd(rate, momentum=0.9), steps=steps, num_rollout_steps=10, **kw)

    resumed, history, straight, straight_history, err = _spike_then_recover(
        data, make, 1e-3, 1e3, tmp_path, steps=30)
    loss, grads = value_and_grad(Supervised(10), err.emulator, data[:, :11])
    assert np.isfinite(loss) and _finite_tree(grads)
    jax.tree_util.tree_map(np.testing.assert_array_equal, get_params(resumed), get_params(straight))
    np.testing.assert_array_equal(history.loss, straight_history.loss)


def test_updated_parameters_are_checked_too(data):
    # loss and gradient are finite, the update overflows float32
    trainer = _trainer(data, optax.sgd(1e38), steps=5)
    with pytest.raises(TrainingDiverged) as info:
        trainer(LinearStencil(1, 1, 1, key=0), key=0)
    assert info.value.step == 0 and _finite_tree(get_params(info.value.emulator))


@pytest.mark.slow
def test_kfac_divergence_checkpoint_resumes(tmp_path, data):
    pytest.importorskip("kfac_jax")
    from online_emulate.optim import KFAC

    def make(lr, steps, **kw):
        kfac = KFAC(use_adaptive_learning_rate=False, use_adaptive_momentum=False,
                    use_adaptive_damping=False, learning_rate_schedule=lambda s: lr,
                    momentum_schedule=lambda s: 0.0, damping_schedule=lambda s: 1e-3)
        return _trainer(data, kfac, steps=steps, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed, history, straight, straight_history, _ = _spike_then_recover(
            data, make, 1e-2, 1e6, tmp_path, steps=12)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        get_params(resumed), get_params(straight))
    np.testing.assert_allclose(history.loss, straight_history.loss, rtol=1e-5)


# ------------------------------------------------------------- input checks
@pytest.mark.parametrize("bad, error, needle", [
    (np.ones((2, 4, 8), np.float32), ValueError, "channel axis is missing"),
    ({"u": np.ones((2, 4, 1, 8), np.float32)}, TypeError, "one array"),
    (np.full((2, 4, 1, 8), np.inf, np.float32), ValueError, "allow_nonfinite"),
    (np.ones((2, 4, 1, 8), np.float16), ValueError, "dtype float32"),
    (np.ones((2, 4, 1, 8), np.complex64), TypeError, "real floating-point"),
    (np.ones((2, 2, 1, 8), np.float32), ValueError, "at least 3 time levels"),
    ("data", TypeError, "expected an array"),
])
def test_value_and_grad_names_bad_data_before_compiling(bad, error, needle):
    with pytest.raises(error, match=needle) as info:
        value_and_grad(Supervised(2), LinearStencil(1, 1, 1), bad)
    assert str(info.value).startswith("data")


def test_integer_data_is_cast_and_nan_can_be_allowed(data):
    emulator = LinearStencil(1, 1, 1, key=0)
    ints = np.round(10 * np.asarray(data[:, :3])).astype(np.int32)
    loss_int, _ = value_and_grad(Supervised(2), emulator, ints)
    loss_float, _ = value_and_grad(Supervised(2), emulator, ints.astype(np.float32))
    assert loss_int == loss_float
    _, history = _trainer(ints, optax.adam(1e-3), steps=2, num_rollout_steps=2)(emulator, key=0)
    assert np.isfinite(history.loss).all()
    nan = np.asarray(data[:, :3]).copy()
    nan[0, 0, 0, 0] = np.nan
    loss, _ = value_and_grad(Supervised(2), emulator, nan, allow_nonfinite=True)
    assert np.isnan(loss)


def test_trainer_names_pytree_and_dtype_problems(data):
    with pytest.raises(TypeError, match="^data: expected one array .*, which an emulator steps"):
        _trainer({"u": data}, optax.adam(1e-3), steps=1)(LinearStencil(1, 1, 1), key=0)
    with pytest.raises(ValueError, match="^data: expected dtype float32"):
        _trainer(np.asarray(data, np.float16), optax.adam(1e-3), steps=1)(LinearStencil(1, 1, 1), key=0)


X64_CHECK = """
import jax
{before}
import online_emulate
{after}
import jax.numpy as jnp
from online_emulate.emulators import LinearStencil
from online_emulate.configuration import Supervised
assert jax.config.jax_enable_x64
e = LinearStencil(1, 1, 1, dtype=jnp.float64)
loss, grads = online_emulate.value_and_grad(Supervised(1), e, jnp.ones((1, 2, 1, 4), jnp.float64))
assert loss.dtype == jnp.float64 and grads["conv"]["weight"].dtype == jnp.float64
print("X64_OK")
"""


@pytest.mark.parametrize("order", ["before", "after"])
def test_import_keeps_the_users_float64(order):
    import subprocess
    import sys

    enable = 'jax.config.update("jax_enable_x64", True)'
    code = X64_CHECK.format(before=enable if order == "before" else "", after=enable if order == "after" else "")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "X64_OK" in out.stdout, out.stderr[-2000:]


def _rollout_loss(emulator, windows):
    """Supervised(R)'s loss, written out: the emulator's own rollout from level 0, the
    MSE against each later level, summed over the steps."""
    u, total = windows[:, 0], 0.0
    for t in range(1, windows.shape[1]):
        u = emulator(u)
        total += jnp.mean((u - windows[:, t]) ** 2)
    return float(total)


def _windows(trainer, key, step):
    return trainer.sampler.gather(trainer.data, jnp.asarray(trainer.sampler.window_ids(key, step)))


@pytest.mark.parametrize("steps_per_call", [200, 1])
def test_kept_state_has_the_reported_loss_and_a_smaller_rate_trains_on(tmp_path, data,
                                                                       steps_per_call):
    # issue 25: sgd(1e3) makes a finite but enormous update at step 0 (step 1's loss is
    # ~1e15), the next update overflows. The old trainer kept the enormous state and
    # reported step 0's loss; the kept state must be the one that loss was evaluated at.
    # One step per chunk: the kept state lies in an earlier chunk than the failure.
    path = str(tmp_path / "diverged.npz")

    def make(optimizer, steps, **kw):
        return SupervisedTrainer(data, optimizer=optimizer, num_training_steps=steps, batch_size=8,
                                 num_rollout_steps=2, progress_bar=False, **kw)

    trainer = make(optax.sgd(1e3), 50, checkpoint_path=path, steps_per_call=steps_per_call)
    with pytest.raises(TrainingDiverged) as info:
        trainer(LinearStencil(1, 1, 1, kernel_size=3, key=0), key=0)
    err = info.value
    assert err.failed_step > err.step and len(err.history.loss) == err.step
    kept = _rollout_loss(err.emulator, _windows(trainer, trainer.key, err.step))
    assert err.last_finite_loss == pytest.approx(kept, rel=1e-5)
    assert f"{err.last_finite_loss:.6g}" in str(err) and f"step {err.step}" in str(err)
    # the state one update later (what the old trainer kept) is far off that loss
    after = make(optax.sgd(1e3), err.step + 1)
    after_model, _ = after(LinearStencil(1, 1, 1, kernel_size=3, key=0), key=0)
    assert _rollout_loss(after_model, _windows(trainer, trainer.key, err.step + 1)) > 1e3 * kept
    resumed, history = make(optax.sgd(1e-3), 30)(LinearStencil(1, 1, 1, kernel_size=3, key=0),
                                                  resume_from=path)
    assert len(history.loss) == 30 and np.isfinite(history.loss).all()
    # the resumed run evaluates the kept state's loss again at its first step
    assert history.loss[err.step] == pytest.approx(err.last_finite_loss, rel=1e-6)
    moved = jax.tree_util.tree_map(lambda a, b: np.abs(a - b).max(), get_params(resumed),
                                   get_params(err.emulator))
    assert max(jax.tree_util.tree_leaves(moved)) > 0


def test_a_loss_far_above_the_recent_ones_is_not_kept(data):
    # with a factor of 1 only a loss at most the best before it is sane: the kept state
    # is the one with the best loss of the run, a later worse (but finite) one is not
    trainer = _trainer(data, optax.sgd(1e3), steps=50, num_rollout_steps=2, divergence_factor=1.0)
    with pytest.raises(TrainingDiverged) as info:
        trainer(LinearStencil(1, 1, 1, kernel_size=3, key=0), key=0)
    err = info.value
    assert err.history.loss.size == 0 or err.last_finite_loss <= err.history.loss.min()
    with pytest.raises(ValueError, match="divergence_factor: expected a number >= 1"):
        _trainer(data, optax.sgd(1e-3), divergence_factor=0.5)
