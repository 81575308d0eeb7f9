"""Streaming training over long rollouts: updates during the rollout, nothing of length T stored."""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ..configuration import DivertedChainBranchOne, Supervised
from ..emulators import functional, set_params
from .._checks import as_key, check_positive_int, key_data
from ..estimators import ETrace, Estimator
from ..trainer._checkpoint import load_checkpoint, save_checkpoint
from ..trainer._history import TrainingDiverged

__all__ = ["OnlineTrainer", "save_checkpoint", "load_checkpoint"]


class OnlineTrainer:
    """Train an emulator on a stream of long rollouts, with any online estimator.

    Each rollout starts from `ic_sampler(key)` (a batch `(B, C, *N)`); the emulator runs
    freely for `rollout_length` steps. Targets come from the reference, advanced alongside
    in chunks (nothing of length `rollout_length` is stored):

    * `target="trajectory"`: the loss of step t is loss(u_{t+1}, r_{t+1}) with the
      reference trajectory r_{t+1} = ref_stepper(r_t), r_0 = u_0 (Supervised on a stream).
    * `target="one_step"`: loss(u_{t+1}, ref_stepper(u_t)) (DivertedChainBranchOne with
      cut_div_chain=True), the reference applied to the emulator's own state.

    The rollout is processed in chunks of `update_every` steps (or `chunk_size` when
    `update_every` is None): per chunk, `estimator.value_and_grad` of the chunk loss
    (started from the current emulator state, which carries no gradient into the chunk:
    gradient paths and eligibility traces restart at chunk boundaries, like
    TruncatedBPTT(chunk)); with `update_every` the optimizer updates after every chunk
    (true online learning), otherwise the chunk gradients are summed and applied once per
    rollout. Memory is O(chunk) for BPTT-type estimators and independent of the chunk for
    ETrace / ForwardRTRL apart from the chunk of reference states.

    Arguments:
        emulator: brainstate emulator (updated in place at the end of `train`).
        optimizer: optax GradientTransformation.
        rollout_length: steps per rollout.
        ic_sampler: `ic_sampler(key) -> (B, C, *N)` initial conditions (with ref_stepper).
        ref_stepper: reference stepper on one sample `(C, *N)`; produces the reference on
            the fly (target "trajectory" without reference_data, and target "one_step").
        reference_data: instead of ic_sampler (and of ref_stepper for target "trajectory"),
            stored trajectories `(samples, time, C, *N)` with at least rollout_length + 1
            levels, e.g. a numpy memmap far larger than device memory: each rollout takes
            `batch_size` trajectories in order (wrapping around) and each chunk reads only
            its own time levels.
        batch_size: trajectories per rollout with reference_data.
        num_rollouts: rollouts to train on.
        estimator: gradient estimator (default ETrace("d_rtrl")).
        update_every: steps between updates; None = one update per rollout.
        chunk_size: chunk length when `update_every` is None (default min(rollout_length, 100)).
        target: "trajectory" or "one_step".
        time_level_loss: optional loss object for the per-step term (default MSE).
        checkpoint_path, checkpoint_every: write a checkpoint every this many updates
            (and at the end) when a path is given.
        progress_bar: show a tqdm bar over rollout steps.
        key: int seed or PRNG key for the IC sampler.

    Attributes (after `train`): `history` (list of dicts: update, step, rollout, loss),
    `params`, `opt_state`.

    Raises:
        ValueError/TypeError: invalid arguments, before any compilation.
    """

    def __init__(self, emulator, optimizer, *, rollout_length: int,
                 ic_sampler: Optional[Callable] = None, ref_stepper: Optional[Callable] = None,
                 reference_data=None, batch_size: Optional[int] = None, num_rollouts: int = 1, estimator: Estimator = ETrace("d_rtrl"),
                 update_every: Optional[int] = None, chunk_size: Optional[int] = None,
                 target: str = "trajectory", time_level_loss=None,
                 checkpoint_path: Optional[str] = None, checkpoint_every: int = 100,
                 progress_bar: bool = True, key=0):
        if not hasattr(optimizer, "update") or not hasattr(optimizer, "init"):
            raise TypeError(f"optimizer: expected an optax GradientTransformation, got {type(optimizer).__name__}")
        if reference_data is None:
            if not callable(ic_sampler):
                raise TypeError(f"ic_sampler: expected a callable key -> (B, C, *N), got {ic_sampler!r}")
            if not callable(ref_stepper):
                raise TypeError(f"ref_stepper: expected a callable on one sample, got {ref_stepper!r}")
        else:
            if ic_sampler is not None:
                raise ValueError("ic_sampler: the initial conditions come from reference_data; pass one of the two")
            shape = getattr(reference_data, "shape", None)
            if shape is None or len(shape) < 3:
                raise ValueError(f"reference_data: expected an array (samples, time, C, *N), got {type(reference_data).__name__}{'' if shape is None else tuple(shape)}")
            if shape[1] < rollout_length + 1:
                raise ValueError(f"reference_data: rollout_length={rollout_length} needs {rollout_length + 1} time levels, the data has {shape[1]}")
            if batch_size is None or not isinstance(batch_size, int) or not 1 <= batch_size <= shape[0]:
                raise ValueError(f"batch_size: with reference_data expected an int in [1, {shape[0]}] (trajectories per rollout), got {batch_size!r}")
            if target == "one_step" and not callable(ref_stepper):
                raise TypeError(f"ref_stepper: target='one_step' needs a callable on one sample, got {ref_stepper!r}")
        self.reference_data, self.batch_size = reference_data, batch_size
        if not isinstance(estimator, Estimator):
            raise TypeError(f"estimator: expected an Estimator, got {type(estimator).__name__}")
        if target not in ("trajectory", "one_step"):
            raise ValueError(f"target: expected 'trajectory' or 'one_step', got {target!r}")
        self.rollout_length = check_positive_int("rollout_length", rollout_length)
        self.num_rollouts = check_positive_int("num_rollouts", num_rollouts)
        self.update_every = check_positive_int("update_every", update_every, allow_none=True)
        chunk_size = check_positive_int("chunk_size", chunk_size, allow_none=True)
        self.chunk = self.update_every or chunk_size or min(self.rollout_length, 100)
        self.checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
        self.emulator, self.optimizer, self.ic_sampler = emulator, optimizer, ic_sampler
        self.ref_stepper, self.estimator, self.target = ref_stepper, estimator, target
        self.checkpoint_path, self.progress_bar = checkpoint_path, progress_bar
        self.key = as_key(key)
        kw = {} if time_level_loss is None else {"time_level_loss": time_level_loss}
        self._configs = {}
        self._kw = kw
        self.apply, self.params = functional(emulator)
        self.opt_state = optimizer.init(self.params)
        self.step = 0
        self.rollouts_done = 0  # rollout numbers (and the data stream) continue across train() calls
        self.history: list[dict] = []
        self._vg = {}

    def _config(self, k):
        if k not in self._configs:
            if self.target == "trajectory":
                self._configs[k] = Supervised(k, **self._kw)
            else:
                self._configs[k] = DivertedChainBranchOne(k, cut_div_chain=True, **self._kw)
        return self._configs[k]

    def _value_and_grad(self, k):
        if k not in self._vg:
            cfg, est, apply, ref = self._config(k), self.estimator, self.apply, self.ref_stepper
            call = lambda p, d: est.value_and_grad(cfg, apply, p, d, ref_stepper=ref,  # noqa: E731
                                                   emulator=self.emulator)
            self._vg[k] = jax.jit(call) if est.jittable else call
        return self._vg[k]

    def _advance_fn(self, k):
        """Chunk data (u, r_1..r_k) or (u,) and the next (u, r) after k steps."""
        key = ("advance", k)
        if key not in self._vg:
            # with reference_data the reference levels are read from the stream instead
            trajectory = self.target == "trajectory" and self.reference_data is None
            apply = self.apply
            ref = jax.vmap(self.ref_stepper) if trajectory else None

            def advance(params, u, r):
                def body(c, _):
                    u, r = c
                    u, r = apply(params, u), (ref(r) if trajectory else r)
                    return (u, r), (r if trajectory else None)

                (u_end, r_end), rs = jax.lax.scan(body, (u, r), None, length=k)
                data = (jnp.concatenate([u[:, None], jnp.moveaxis(rs, 0, 1)], axis=1)
                        if trajectory else u[:, None])
                return data, u_end, r_end

            self._vg[key] = jax.jit(advance)
        return self._vg[key]

    def _initial_state(self, rollout, key):
        if self.reference_data is None:
            return jnp.asarray(self.ic_sampler(key)), None
        # trajectories are visited in order, batch_size at a time, wrapping around
        idx = (rollout * self.batch_size + np.arange(self.batch_size)) % self.reference_data.shape[0]
        return jnp.asarray(self.reference_data[idx, 0]), idx

    def _chunk_from_data(self, idx, u, done, k):
        """Chunk data from the stored stream: only levels done+1..done+k are read."""
        if self.target == "one_step":
            return u[:, None]
        refs = jnp.asarray(self.reference_data[idx, done + 1 : done + k + 1])
        return jnp.concatenate([u[:, None], refs], axis=1)

    def _update(self, grads):
        updates, self.opt_state = self.optimizer.update(grads, self.opt_state, self.params)
        self.params = optax.apply_updates(self.params, updates)

    def _checkpoint(self):
        if self.checkpoint_path is not None:
            save_checkpoint(self.checkpoint_path, {
                "params": self.params, "opt_state": self.opt_state, "step": self.step,
                "key": key_data(self.key),
                "history": self.history,
            })

    def _diverged(self, step, loss):
        set_params(self.emulator, self.params)
        finite = [h["loss"] for h in self.history if np.isfinite(h["loss"])]
        checkpoint = self.checkpoint_path
        self._checkpoint()
        raise TrainingDiverged(step, finite[-1] if finite else None, self.emulator, self.history, checkpoint)

    def restore(self, path: str) -> "OnlineTrainer":
        """Continue from a checkpoint: params, optimizer state, step counter, key, history."""
        state = load_checkpoint(path)
        self.params = jax.tree_util.tree_map(jnp.asarray, state["params"])
        self.opt_state = jax.tree_util.tree_map(jnp.asarray, state["opt_state"])
        self.step, self.key = state["step"], jnp.asarray(state["key"])
        self.history = list(state["history"])
        self.rollouts_done = 1 + max((h["rollout"] for h in self.history), default=-1)
        return self

    def train(self):
        """Run `num_rollouts` rollouts; returns the emulator with the trained parameters."""
        T, K = self.rollout_length, self.chunk
        bar = tqdm(total=self.num_rollouts * T, disable=not self.progress_bar, desc="online")
        first = self.rollouts_done
        for rollout in range(first, first + self.num_rollouts):
            self.key, sub = jax.random.split(self.key)
            u, idx = self._initial_state(rollout, sub)
            r = u
            done, acc, acc_loss = 0, None, 0.0
            while done < T:
                k = min(K, T - done)
                data, u_next, r_next = self._advance_fn(k)(self.params, u, r)
                if idx is not None:
                    data = self._chunk_from_data(idx, u, done, k)
                loss, grads = self._value_and_grad(k)(self.params, data)
                loss = float(loss)
                if not (np.isfinite(loss) and all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))):
                    bar.close()
                    self._diverged(done + rollout * T, loss)
                done += k
                if self.update_every is not None:
                    self._update(grads)
                    self.step += 1
                    self.history.append({"update": self.step, "step": done, "rollout": rollout, "loss": loss})
                    if self.step % self.checkpoint_every == 0:
                        self._checkpoint()
                else:
                    acc = grads if acc is None else jax.tree_util.tree_map(jnp.add, acc, grads)
                    acc_loss += loss
                u, r = u_next, r_next
                bar.update(k)
                bar.set_postfix(loss=f"{loss:.3e}")
            if self.update_every is None:
                self._update(acc)
                self.step += 1
                self.history.append({"update": self.step, "step": T, "rollout": rollout, "loss": acc_loss})
                if self.step % self.checkpoint_every == 0:
                    self._checkpoint()
            self.rollouts_done = rollout + 1
        bar.close()
        self._checkpoint()
        set_params(self.emulator, self.params)
        return self.emulator
