"""save_emulator / load_emulator for every model kind the trainers accept (issue 26):
built-in emulators, equinox and pdequinox modules, (apply, params) pairs and your own
brainstate modules, loaded in a fresh process that runs nothing from the file."""

import json
import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from online_emulate._storage import load_checkpoint
from online_emulate.emulators import ConvNet, LinearStencil, load_emulator, save_emulator
from online_emulate.sample_data import advection_1d_periodic
from online_emulate.trainer import SupervisedTrainer

pdx = pytest.importorskip("pdequinox")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
U = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (2, 1, 30)))


def _conv(i, o, seed):
    return eqx.nn.Conv1d(i, o, 3, padding="SAME", padding_mode="CIRCULAR", key=jax.random.PRNGKey(seed))


def _sequential(seed=1):
    return eqx.nn.Sequential([_conv(1, 8, seed), eqx.nn.Lambda(jax.nn.relu), _conv(8, 1, seed + 1)])


def _pair_apply(params, u):  # the same function is written out in the fresh process
    return params["a"] * u + params["b"] * jnp.roll(u, -1, axis=-1)


# the fresh process: imports only, then loads; nothing of the saving process is reused
FRESH = """
import sys, json
import equinox as eqx, jax, jax.numpy as jnp, numpy as np
from online_emulate.emulators import load_emulator
from online_emulate.emulators import functional

def apply(params, u):
    return params["a"] * u + params["b"] * jnp.roll(u, -1, axis=-1)

folder = sys.argv[1]
u = np.load(folder + "/u.npy")
odd_like = eqx.nn.Sequential([
    eqx.nn.Conv1d(1, 1, 3, padding="SAME", padding_mode="CIRCULAR", key=jax.random.PRNGKey(0)),
    eqx.nn.Lambda(lambda v: 2 * v)])
models = {
    "builtin": load_emulator(folder + "/builtin.npz"),
    "sequential": load_emulator(folder + "/sequential.npz"),
    "pdequinox": load_emulator(folder + "/pdequinox.npz"),
    "trained": load_emulator(folder + "/trained.npz"),
    "odd": load_emulator(folder + "/odd.npz", like=odd_like),
    "pair": load_emulator(folder + "/pair.npz", like=apply),
}
out = {}
for name, model in models.items():
    fn, params = functional(model)
    out[name] = np.asarray(jax.vmap(lambda v: fn(params, v))(u))
out["types"] = np.array(json.dumps({k: type(m).__name__ for k, m in models.items()}))
np.savez(folder + "/out.npz", **out)
print("LOADED")
"""


def _outputs(model):
    from online_emulate.emulators import functional

    fn, params = functional(model)
    return np.asarray(jax.vmap(lambda v: fn(params, v))(jnp.asarray(U)))


@pytest.mark.slow
def test_every_model_kind_loads_in_a_fresh_process(tmp_path):
    data = advection_1d_periodic(cfl=-0.75, key=jax.random.PRNGKey(0))
    # the newcomer's call: train an equinox model, then save what the trainer returned
    trainer = SupervisedTrainer(data, num_rollout_steps=2, optimizer=optax.adam(1e-3),
                                num_training_steps=3, batch_size=4, progress_bar=False)
    trained, _ = trainer(_sequential(3), jax.random.PRNGKey(0))
    models = {
        "builtin": ConvNet(1, 1, 1, hidden_channels=4, depth=2, key=2),
        "sequential": _sequential(),
        "pdequinox": pdx.arch.ConvNet(1, 1, 1, hidden_channels=4, depth=2, key=jax.random.PRNGKey(4)),
        "trained": trained,
        "odd": eqx.nn.Sequential([_conv(1, 1, 7), eqx.nn.Lambda(lambda v: 2 * v)]),
        "pair": (_pair_apply, {"a": jnp.array(0.25), "b": jnp.array(0.75)}),
    }
    for name, model in models.items():
        save_emulator(tmp_path / f"{name}.npz", model)
    np.save(tmp_path / "u.npy", U)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert "LOADED" in run.stdout, run.stderr[-3000:]
    with np.load(tmp_path / "out.npz", allow_pickle=False) as out:
        types = json.loads(str(out["types"]))
        for name, model in models.items():
            np.testing.assert_array_equal(out[name], _outputs(model), err_msg=name)
    assert types == {"builtin": "ConvNet", "sequential": "Sequential", "pdequinox": "ConvNet",
                     "trained": "Sequential", "odd": "Sequential", "pair": "tuple"}


def test_equinox_models_rebuild_from_their_description(tmp_path):
    for model in (_sequential(), pdx.arch.ConvNet(2, 2, 1, hidden_channels=3, depth=1, activation=jax.nn.tanh,
                                                  key=jax.random.PRNGKey(0)),
                  eqx.nn.Conv(2, 1, 2, (3, 2), stride=2, key=jax.random.PRNGKey(1)),
                  eqx.nn.Linear(4, "scalar", key=jax.random.PRNGKey(2))):
        save_emulator(tmp_path / "m.npz", model)
        assert load_checkpoint(tmp_path / "m.npz")["model"]["skeleton"] is not None
        loaded = load_emulator(tmp_path / "m.npz")
        assert type(loaded) is type(model) and eqx.tree_equal(loaded, model)


def test_a_layer_without_a_description_needs_like(tmp_path):
    odd = eqx.nn.Sequential([_conv(1, 1, 7), eqx.nn.Lambda(lambda v: 2 * v)])
    save_emulator(tmp_path / "odd.npz", odd)
    with pytest.raises(ValueError, match=r"^like: expected a model of the stored architecture .*Sequential"):
        load_emulator(tmp_path / "odd.npz")
    like = eqx.nn.Sequential([_conv(1, 1, 0), eqx.nn.Lambda(lambda v: 2 * v)])
    before = np.asarray(like.layers[0].weight)
    loaded = load_emulator(tmp_path / "odd.npz", like=like)
    np.testing.assert_array_equal(loaded.layers[0].weight, odd.layers[0].weight)
    np.testing.assert_array_equal(like.layers[0].weight, before)  # like is not modified
    wider = eqx.nn.Sequential([_conv(1, 2, 0), eqx.nn.Lambda(lambda v: 2 * v)])
    with pytest.raises(ValueError, match=r"^path: expected array 0 as \(\(2, 1, 3\).*odd\.npz"):
        load_emulator(tmp_path / "odd.npz", like=wider)


def test_pairs_store_their_params_and_load_with_apply(tmp_path):
    params = {"a": jnp.array(0.25), "b": jnp.array([0.75])}
    save_emulator(tmp_path / "pair.npz", (_pair_apply, params))
    with pytest.raises(ValueError, match="^like: expected the function apply.*_pair_apply"):
        load_emulator(tmp_path / "pair.npz")
    fn, loaded = load_emulator(tmp_path / "pair.npz", like=_pair_apply)
    assert fn is _pair_apply
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)
    with pytest.raises(ValueError, match="^path: expected a parameter tree"):
        load_emulator(tmp_path / "pair.npz", like=(_pair_apply, {"a": jnp.array(0.0)}))


def test_a_crafted_description_builds_nothing_unknown(tmp_path):
    save_emulator(tmp_path / "m.npz", _sequential())
    blob = load_checkpoint(tmp_path / "m.npz")
    spec = blob["model"]
    spec["skeleton"]["layers"][1] = {"type": "os.system", "fn": "relu"}
    from online_emulate._storage import save_checkpoint

    save_checkpoint(tmp_path / "bad.npz", {"params": blob["params"]}, model=spec)
    with pytest.raises(ValueError, match=r"^path: expected a valid emulator description.*os\.system"):
        load_emulator(tmp_path / "bad.npz")
    spec["skeleton"]["layers"][1] = {"type": "equinox.nn.Lambda", "fn": "exec"}
    save_checkpoint(tmp_path / "bad.npz", {"params": blob["params"]}, model=spec)
    with pytest.raises(ValueError, match=r"^path: expected a valid emulator description.*'exec'"):
        load_emulator(tmp_path / "bad.npz")


def test_a_builtin_still_loads_without_like_and_into_like(tmp_path):
    stencil = LinearStencil(1, 1, 1, kernel_size=2, use_bias=False, key=73)
    save_emulator(tmp_path / "s.npz", stencil)
    loaded = load_emulator(tmp_path / "s.npz")
    into = load_emulator(tmp_path / "s.npz", like=LinearStencil(1, 1, 1, kernel_size=2, use_bias=False, key=0))
    for model in (loaded, into):
        np.testing.assert_array_equal(model.stencil, stencil.stencil)


def test_save_weights_points_an_equinox_model_to_save_emulator(tmp_path):
    from online_emulate.emulators import save_weights

    with pytest.raises(TypeError, match="^emulator_or_params: expected a brainstate module .*save_emulator stores every model kind"):
        save_weights(tmp_path / "w.npz", _sequential())
