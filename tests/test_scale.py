"""Multi-device data parallelism and float64, each in a fresh process (both need JAX
configured before it starts)."""

import os
import subprocess
import sys
import textwrap

import pytest

# Each test starts a fresh Python process that imports JAX and compiles a training run.
pytestmark = pytest.mark.slow


MULTI_DEVICE = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    assert jax.device_count() == 4, jax.devices()
    from online_emulate import configuration as cfg
    from online_emulate.emulators import ConvNet, functional, get_params
    from online_emulate.estimators import BPTT
    from online_emulate.sample_data import advection_1d_periodic
    from online_emulate.trainer import GeneralTrainer
    from online_emulate.trainer._program import batch_sharding, make_loss_and_grad
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    data = advection_1d_periodic(num_points=16, num_samples=4, temporal_horizon=10, key=jax.random.PRNGKey(0))
    emulator = ConvNet(1, 1, 1, hidden_channels=4, key=0)
    config = cfg.Supervised(num_rollout_steps=3)

    # gradients of one global batch: sharded over 4 devices vs one device
    apply, params = functional(emulator)
    batch = data[:8 // 2, :4].reshape(4, 4, 1, 16)
    batch = jnp.concatenate([batch, batch[::-1] * 0.5])
    sharded = jax.device_put(batch, NamedSharding(Mesh(np.asarray(jax.devices()), ("batch",)), PartitionSpec("batch")))
    assert len(sharded.sharding.device_set) == 4
    vg = jax.jit(lambda p, b: BPTT().value_and_grad(config, apply, p, b))
    l1, g1 = vg(params, batch)
    l4, g4 = vg(params, sharded)
    np.testing.assert_allclose(l1, l4, rtol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g1, g4)

    # whole training runs: data_parallel=True equals single-device training
    runs = {}
    for dp in (False, True):
        trainer = GeneralTrainer(config, data, optimizer=optax.adam(1e-2), num_training_steps=12,
                                 batch_size=8, data_parallel=dp, progress_bar=False)
        trained, history = trainer(emulator, key=3)
        runs[dp] = (get_params(trained), history.loss)
        # the compiled gradient program really is split over 4 devices (2 samples each)
        # with data_parallel=True, and holds the whole batch of 8 on one device without
        bound = trainer.estimator.bind(config, emulator, state_shape=(1, 16))
        loss_and_grad = make_loss_and_grad(
            bound, sharding=batch_sharding() if trainer.data_parallel else None)
        hlo = jax.jit(loss_and_grad).lower(params, batch).compile().as_text()
        assert ("num_partitions=4" in hlo) == dp, dp
        assert ("f32[2,1,16]" in hlo) == dp and ("f32[8,1,16]" in hlo) != dp, dp
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), runs[False][0], runs[True][0])
    np.testing.assert_allclose(runs[False][1], runs[True][1], rtol=1e-4)
    try:
        GeneralTrainer(config, data, optimizer=optax.adam(1e-2), num_training_steps=1, batch_size=6, data_parallel=True)
    except ValueError as err:
        assert "batch_size" in str(err)
    else:
        raise AssertionError("batch_size 6 on 4 devices was accepted")
    print("MULTI_DEVICE_OK")
    """
)

FLOAT64 = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import brainstate
    brainstate.environ.set(precision=64)
    import jax.numpy as jnp, numpy as np, optax
    from online_emulate import configuration as cfg
    from online_emulate import value_and_grad
    from online_emulate.emulators import LinearStencil, get_params
    from online_emulate.estimators import BPTT, ETrace
    from online_emulate.sample_data import advection_1d_periodic
    from online_emulate.trainer import SupervisedTrainer

    data = advection_1d_periodic(num_points=16, num_samples=4, temporal_horizon=12, key=jax.random.PRNGKey(0)).astype(jnp.float64)
    emulator = LinearStencil(1, 1, 1, kernel_size=2, key=0, dtype=jnp.float64)
    trainer = SupervisedTrainer(data, optimizer=optax.adam(1e-2), num_training_steps=30, batch_size=8, num_rollout_steps=3, progress_bar=False)
    trained, history = trainer(emulator, key=0)
    params = get_params(trained)
    assert params["conv"]["weight"].dtype == jnp.float64, params["conv"]["weight"].dtype
    assert history.loss.dtype == np.float64, history.loss.dtype
    assert history.loss[-1] < history.loss[0]

    # one online estimator in float64: D_RTRL equals BPTT for a single step to 1e-12
    windows = data[:4, :2]
    l_ref, g_ref = value_and_grad(cfg.Supervised(1), emulator, windows, estimator=BPTT())
    l_on, g_on = value_and_grad(cfg.Supervised(1), emulator, windows, estimator=ETrace("d_rtrl"))
    assert g_on["conv"]["weight"].dtype == jnp.float64, g_on["conv"]["weight"].dtype
    np.testing.assert_allclose(l_on, l_ref, rtol=1e-12)
    np.testing.assert_allclose(g_on["conv"]["weight"], g_ref["conv"]["weight"], rtol=1e-10, atol=1e-14)
    print("FLOAT64_OK")
    """
)


def _run(code: str, env_extra: dict) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


def test_data_parallel_on_four_cpu_devices_equals_single_device():
    out = _run(MULTI_DEVICE, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"})
    assert "MULTI_DEVICE_OK" in out.stdout, out.stdout + out.stderr[-4000:]


def test_float64_end_to_end_for_bptt_training_and_d_rtrl():
    out = _run(FLOAT64, {"JAX_PLATFORMS": "cpu"})
    assert "FLOAT64_OK" in out.stdout, out.stdout + out.stderr[-4000:]
