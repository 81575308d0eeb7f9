"""Several seeds of one training run in ONE compiled program."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import key_data
from .._compile import jit
from ._update_rules import OptaxRule

__all__ = ["train_seeds"]


def train_seeds(trainer, emulators, keys):
    """Train one model per key with `trainer`'s settings, by `jax.vmap` over parameters,
    optimizer states and keys of the trainer's chunk.

    Every seed follows exactly the run a separate call `trainer(emulator_i, key_i)` would
    take (its own data order), without callbacks, divergence recovery or progress bar;
    the trainer's own state is not changed.

    Arguments:
        trainer: a `GeneralTrainer` with an optax optimizer.
        emulators: a list of models of identical structure, one per key; or one model
            shared by every seed (a tuple is one `(apply, params)` model, not a list).
        keys: int seeds or PRNG keys.

    Returns:
        `(trained_models, losses)`, `losses` of shape `(num_seeds, num_training_steps)`.

    Raises:
        ValueError: the numbers of models and keys differ, the optimizer is K-FAC, or a
            seed's loss became NaN/inf.
    """
    keys = [key_data(k) for k in keys]
    if not isinstance(emulators, list):
        emulators = [emulators] * len(keys)
    if len(emulators) != len(keys):
        raise ValueError(f"emulators: expected one emulator per key ({len(keys)}), got {len(emulators)}")
    if not isinstance(trainer.rule, OptaxRule):
        raise ValueError("optimizer: seed-parallel training expected an optax optimizer, got K-FAC")
    adapters = [trainer._adapt(em) for em in emulators]
    params = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[a.params for a in adapters])
    opt_state = jax.vmap(trainer.rule.transform.init)(params)
    chunk = trainer._chunk_fn(adapters[0])
    vchunk = jit(jax.vmap(chunk, in_axes=(0, 0, None, 0, None, None, None, 0)))
    key_batch = jnp.stack(keys)
    sampler, per_call = trainer.sampler, trainer.steps_per_call
    rows = sampler.max_epochs_per_chunk(per_call)
    step, losses_all = 0, []
    while step < trainer.num_training_steps:
        n = min(per_call, trainer.num_training_steps - step)
        tables = [sampler.permutation_table(k, step, n, rows) for k in keys]
        first_epoch = tables[0][0]
        table = np.stack([t for _, t in tables])
        params, opt_state, losses, _, bad, _ = vchunk(
            params, opt_state, trainer.data, key_batch, jnp.int32(step), jnp.int32(n),
            jnp.int32(first_epoch), table,
        )
        if bool(jnp.any(bad)):
            raise ValueError(
                f"training diverged for seed(s) {np.flatnonzero(np.asarray(bad)).tolist()} "
                f"within steps {step}..{step + n}"
            )
        losses_all.append(np.asarray(losses[:, :n]))
        step += n
    trained = [a.merge(jax.tree_util.tree_map(lambda x: x[i], params)) for i, a in enumerate(adapters)]
    return trained, np.concatenate(losses_all, axis=1)
