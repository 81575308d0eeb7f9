"""Several seeds of one training run in ONE compiled program."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import key_data
from .._compile import jit
from ._guard import Anchor, start_anchor
from ._history import SeedsDiverged
from ._update_rules import OptaxRule

__all__ = ["train_seeds"]


def train_seeds(trainer, emulators, keys):
    """Train one model per key with `trainer`'s settings, by `jax.vmap` over parameters,
    optimizer states and keys of the trainer's chunk.

    Every seed follows exactly the run a separate call `trainer(emulator_i, key_i)` would
    take (its own data order), without callbacks or progress bar; the trainer's own state
    is not changed. A diverging seed falls back to the state a single run would keep (see
    `TrainingDiverged`), carried by the `SeedsDiverged` error.

    Arguments:
        trainer: a `GeneralTrainer` with an optax optimizer.
        emulators: a list of models of identical structure, one per key; or one model
            shared by every seed (a tuple is one `(apply, params)` model, not a list).
        keys: int seeds or PRNG keys.

    Returns:
        `(trained_models, losses)`, `losses` of shape `(num_seeds, num_training_steps)`.

    Raises:
        ValueError: the numbers of models and keys differ, or the optimizer is K-FAC.
        SeedsDiverged: (a ValueError) a seed's loss, gradient or update became NaN/inf.
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
    vchunk = jit(jax.vmap(chunk, in_axes=(0, 0, None, 0, None, None, None, 0, 0)))
    key_batch = jnp.stack(keys)
    sampler, per_call = trainer.sampler, trainer.steps_per_call
    rows = sampler.max_epochs_per_chunk(per_call)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
    step, losses_all, anchor = 0, np.zeros((len(keys), 0), np.float32), None
    while step < trainer.num_training_steps:
        n = min(per_call, trainer.num_training_steps - step)
        tables = [sampler.permutation_table(k, step, n, rows) for k in keys]
        first_epoch = tables[0][0]
        table = np.stack([t for _, t in tables])
        fresh = [start_anchor(None, step, row, dtype) for row in losses_all]
        recent = np.stack([f.recent for f in fresh])
        if anchor is None:
            anchor = Anchor((params, opt_state), np.full(len(keys), step, np.int32),
                            np.full(len(keys), np.nan, dtype), recent)
        else:
            anchor = anchor._replace(recent=recent)
        params, opt_state, losses, _, bad, anchor = vchunk(
            params, opt_state, trainer.data, key_batch, jnp.int32(step), jnp.int32(n),
            jnp.int32(first_epoch), table, anchor,
        )
        losses_all = np.concatenate([losses_all, np.asarray(losses[:, :n])], axis=1)
        bad = np.asarray(bad)
        if bad.any():
            raise _diverged(adapters, params, opt_state, anchor, bad, losses_all, step, n)
        step += n
    trained = [a.merge(jax.tree_util.tree_map(lambda x: x[i], params)) for i, a in enumerate(adapters)]
    return trained, losses_all


def _diverged(adapters, params, opt_state, anchor, bad, losses, step, n) -> SeedsDiverged:
    """The error of a chunk (steps `step`..`step + n`) in which the seeds `bad` diverged:
    those fall back to their anchors, the others keep their state after the chunk."""
    kept_params = anchor.state[0]
    models, steps, kept_losses, histories = [], [], {}, []
    for i, adapter in enumerate(adapters):
        if bad[i]:
            k = int(anchor.step[i])
            loss = float(anchor.loss[i])
            kept_losses[i] = loss if np.isfinite(loss) else None
            models.append(adapter.merge(jax.tree_util.tree_map(lambda x: x[i], kept_params)))
        else:
            k = step + n
            models.append(adapter.merge(jax.tree_util.tree_map(lambda x: x[i], params)))
        steps.append(k)
        histories.append(losses[i, :k])
    failed = np.flatnonzero(bad).tolist()
    kept = ", ".join(
        f"seed {i} at step {steps[i]} (loss {kept_losses[i]:.6g} on that step's windows)"
        if kept_losses[i] is not None else f"seed {i} at step {steps[i]} (its start)"
        for i in failed)
    return SeedsDiverged(
        f"training diverged for seed(s) {failed} within steps {step}..{step + n}; kept {kept}, "
        "the last state of each whose loss was finite and sane (see TrainingDiverged); the "
        "other seeds stopped at the end of the chunk. The error's `emulators` hold every "
        "seed's kept model.",
        emulators=models, steps=steps, last_finite_losses=kept_losses, histories=histories,
    )
