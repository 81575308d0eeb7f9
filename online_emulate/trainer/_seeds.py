"""Several seeds of one training run in ONE compiled program."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import key_data
from .._compile import jit
from ._guard import Anchor, recent_losses
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
    # the step count varies per seed: a diverged seed's state is rebuilt by running its
    # chunk again for its own number of steps
    vchunk = jit(jax.vmap(chunk, in_axes=(0, 0, None, 0, None, 0, None, 0, 0)))
    key_batch = jnp.stack(keys)
    sampler, per_call = trainer.sampler, trainer.steps_per_call
    rows = sampler.max_epochs_per_chunk(per_call)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
    num = len(keys)
    step, losses_all, anchor, sources = 0, np.zeros((num, 0), np.float32), None, []
    while step < trainer.num_training_steps:
        n = min(per_call, trainer.num_training_steps - step)
        tables = [sampler.permutation_table(k, step, n, rows) for k in keys]
        first_epoch = tables[0][0]
        table = np.stack([t for _, t in tables])
        recent = np.stack([recent_losses(row, dtype) for row in losses_all])
        if anchor is None:
            anchor = Anchor(np.full(num, step, np.int32), np.full(num, np.nan, dtype), recent)
        else:
            anchor = anchor._replace(recent=recent)
        args = (params, opt_state, trainer.data, key_batch, jnp.int32(step),
                np.full(num, n, np.int32), jnp.int32(first_epoch), table, anchor)
        params, opt_state, losses, _, bad, anchor = vchunk(*args)
        # the chunks the seeds' anchors lie in (to rebuild their states from)
        sources.append((step, args))
        oldest = max(s0 for s0, _ in sources if s0 <= int(np.min(anchor.step)))
        sources = [src for src in sources if src[0] >= oldest]
        losses_all = np.concatenate([losses_all, np.asarray(losses[:, :n])], axis=1)
        bad = np.asarray(bad)
        if bad.any():
            kept = _kept_states(vchunk, sources, np.asarray(anchor.step), bad)
            raise _diverged(adapters, params, kept, anchor, bad, losses_all, step, n)
        step += n
    trained = [a.merge(jax.tree_util.tree_map(lambda x: x[i], params)) for i, a in enumerate(adapters)]
    return trained, losses_all


def _kept_states(vchunk, sources, anchor_steps, bad):
    """Seed i's parameters at step `anchor_steps[i]`, for the seeds `bad`: the chunk that
    step lies in, run again for each seed up to its own anchor."""
    kept = {}
    for i in np.flatnonzero(bad):
        step0, args = max((src for src in sources if src[0] <= anchor_steps[i]),
                          key=lambda src: src[0])
        again = list(args)
        again[5] = np.where(np.arange(len(bad)) == i, anchor_steps[i] - step0, 0).astype(np.int32)
        params = vchunk(*again)[0]
        kept[int(i)] = jax.tree_util.tree_map(lambda x, i=i: x[i], params)
    return kept


def _diverged(adapters, params, kept, anchor, bad, losses, step, n) -> SeedsDiverged:
    """The error of a chunk (steps `step`..`step + n`) in which the seeds `bad` diverged:
    those fall back to their anchors (`kept`: seed -> parameters), the others keep their
    state after the chunk."""
    models, steps, kept_losses, histories = [], [], {}, []
    for i, adapter in enumerate(adapters):
        if bad[i]:
            k = int(anchor.step[i])
            loss = float(anchor.loss[i])
            kept_losses[i] = loss if np.isfinite(loss) else None
            models.append(adapter.merge(kept[i]))
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
