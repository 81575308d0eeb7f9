"""The one-step loss whose curvature K-FAC estimates.

A window of data `(B, T, C, *N)` is turned into a batch of one-step problems with
time folded into the batch: inputs are the levels `0..T-2` and targets the levels
`1..T-1` (with `T == 1` the single level is the input and the target is the model's own
prediction, held constant: curvature estimated from the model distribution needs no
target). The prediction is registered with kfac as a squared-error loss scaled like a
mean over channel and space, times `curvature_scale`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from .._rollout import rollout
from ..configuration import BaseConfiguration
from ._compat import import_kfac

__all__ = ["fold_window", "folded_batch_size", "make_curvature_loss", "rollout_spec",
           "RolloutCurvature"]


def _check_window(batch) -> None:
    if not hasattr(batch, "ndim") or batch.ndim < 4:
        raise ValueError(
            "batch: expected one data window, an array (batch, time, channel, *space) "
            f"with at least 4 axes, got {getattr(batch, 'shape', type(batch).__name__)}"
        )


def fold_window(batch):
    """`(B, T, C, *N)` -> (inputs, targets or None), each `(B * T', C, *N)`."""
    _check_window(batch)
    b, t = batch.shape[:2]
    rest = batch.shape[2:]
    if t == 1:
        return batch.reshape((b,) + rest), None
    inputs = batch[:, :-1].reshape((b * (t - 1),) + rest)
    targets = batch[:, 1:].reshape((b * (t - 1),) + rest)
    return inputs, targets


def folded_batch_size(batch) -> int:
    """Number of one-step problems in a window: `B * max(T - 1, 1)`."""
    _check_window(batch)
    return batch.shape[0] * max(batch.shape[1] - 1, 1)


def make_curvature_loss(
    apply: Callable, *, curvature_scale: float = 1.0
) -> Callable[[Any, jax.Array], jax.Array]:
    """Build `loss(params, batch)`: the registered one-step loss over a window.

    Arguments:
        apply: `apply(params, u)` on a batch of states `(B, C, *N)`, with plain lax ops
            (e.g. from `online_emulate.emulators.functional`).
        curvature_scale: factor on the registered loss (e.g. the total step weight of a
            rollout loss, so the curvature matches the gradient's scale).

    Returns:
        `loss(params, batch) -> scalar`, the mean squared one-step error times
        `curvature_scale`, with the prediction registered via
        `kfac_jax.register_squared_error_loss`.
    """
    kfac_jax = import_kfac()

    def loss(params, batch):
        inputs, targets = fold_window(batch)
        pred = apply(params, inputs)
        flat_pred = pred.reshape((pred.shape[0], -1))
        if targets is None:
            flat_targets = jax.lax.stop_gradient(flat_pred)
        else:
            flat_targets = targets.reshape(flat_pred.shape)
        per_sample = flat_pred.shape[1]
        kfac_jax.register_squared_error_loss(
            flat_pred, flat_targets, weight=curvature_scale / per_sample
        )
        return curvature_scale * jnp.mean((flat_pred - flat_targets) ** 2)

    return loss


def rollout_spec(configuration: Any) -> tuple | None:
    """`(num_steps, weights, events, uses_data_targets)` or None without an online spec."""
    try:
        spec = configuration.online_spec()
    except (AttributeError, ValueError, TypeError, NotImplementedError):
        return None
    weights = jnp.broadcast_to(jnp.asarray(spec.weights, jnp.float32), (spec.num_steps,))
    return int(spec.num_steps), weights, spec.events, bool(spec.uses_data_targets)


def _register_rows(kfac_jax, pred, target, row_weights, num_rows_per_problem):
    """Register `pred` `(rows, C, *N)` as a squared error whose mean over rows is
    `sum_t w_t * mean_b mean_{C,N}(pred - target)^2` (rows ordered time-major)."""
    flat_pred = pred.reshape((pred.shape[0], -1))
    flat_target = target.reshape(flat_pred.shape)
    per_sample = flat_pred.shape[1]
    root = jnp.sqrt(row_weights)[:, None]
    kfac_jax.register_squared_error_loss(
        flat_pred * root, flat_target * root, weight=num_rows_per_problem / per_sample
    )
    return jnp.mean(jnp.sum(row_weights[:, None] * (flat_pred - flat_target) ** 2, axis=1)) * (
        num_rows_per_problem / per_sample
    )


class RolloutCurvature:
    """Curvature models of a configuration's rollout loss, for kfac.

    For a configuration with an `online_spec()` (R steps, weights w, its cuts and
    teacher-forcing resets), with the network's own chain `u_{t+1} = apply(p, u_t)` from
    `u_0 = data[:, 0]` rolled out by the library's rollout kernel with those events:

    * `estimator_loss(p, (data, states))` (kfac's `value_func_for_estimator`, which
      builds the Kronecker factors): ONE network step applied to the network's rollout
      states `u_0 .. u_{R-1}` (`states(p, data)`, computed beforehand without gradient,
      time folded into the batch, `B * R` rows), its output registered as a squared
      error with row weights `w_t`. Every parameter is used exactly once there, so every
      layer gets a Kronecker block.
    * `model_loss(p, data)` (registered inside the value function, which kfac uses for
      its exact quadratic model: adaptive learning rate, momentum, damping's rho): the
      whole chain `u_1 .. u_R` WITH its dependence through earlier states, registered
      as the same weighted squared error. Its Gauss-Newton matrix is the exact one of
      a weighted-MSE rollout loss, so the step sizes kfac picks are consistent with the
      gradient's loss (the one-step model underestimates a rollout's curvature by
      roughly `sum_t (t+1)^2 w_t / sum_t w_t` for a near-identity emulator).

    Both are means over `B * R` rows whose value is `sum_t w_t * mean_{b,C,N} err^2` (the
    scale of a `Supervised` MSE loss). Targets are `data[:, t+1]` when the configuration
    reads data targets, otherwise the (constant) prediction itself: kfac's curvature
    does not depend on the targets of a squared error (except in its empirical-Fisher
    estimation modes).
    """

    def __init__(
        self,
        apply: Callable,
        configuration: BaseConfiguration,
        *,
        curvature_scale: float = 1.0,
    ):
        self._kfac_jax = import_kfac()
        self.apply = apply
        spec = rollout_spec(configuration)
        if spec is None:
            raise ValueError(
                "configuration: expected one with online_spec() (a per-step loss), got "
                f"{type(configuration).__name__}; use make_curvature_loss for a one-step "
                "curvature over its data"
            )
        self.num_steps, self.weights, self.events, self.data_targets = spec
        self.curvature_scale = float(curvature_scale)

    def batch_size(self, batch: PyTree) -> int:
        """Rows of one curvature evaluation: `B * R` (`batch`: a window or `(window, states)`)."""
        data = batch[0] if isinstance(batch, tuple) else batch
        _check_window(data)
        return data.shape[0] * self.num_steps

    def _chain(self, params, data):
        """`(inputs, outputs)`, each `(R, B, C, *N)`: states before/after every step."""
        def step(u, t):
            nxt = self.apply(params, u)
            return nxt, (u, nxt)

        def level(t):
            return jax.lax.dynamic_index_in_dim(data, t, axis=1, keepdims=False)

        _, (inputs, outputs) = rollout(step, data[:, 0], self.num_steps, events=self.events,
                                       level=level)
        return inputs, outputs

    def states(self, params: PyTree, data: jax.Array) -> jax.Array:
        """The network's own rollout states `u_0 .. u_{R-1}`, `(R, B, C, *N)`, no gradient.

        Computed outside the function kfac's graph matcher reads (a parameter used in
        this rollout and again in the registered step would lose its Kronecker block).
        """
        _check_window(data)
        return jax.lax.stop_gradient(self._chain(params, data)[0])

    def _targets(self, data, pred):
        if self.data_targets and data.shape[1] >= self.num_steps + 1:
            target = jnp.moveaxis(data[:, 1 : self.num_steps + 1], 1, 0)
            return target.reshape(pred.shape)
        return jax.lax.stop_gradient(pred)

    def _row_weights(self, batch_rows):
        return self.curvature_scale * jnp.repeat(self.weights, batch_rows)

    def estimator_loss(self, params: PyTree, batch: PyTree) -> Any:
        """`batch = (data, states)` with `states = self.states(params, data)`."""
        data, inputs = batch
        folded = inputs.reshape((-1,) + inputs.shape[2:])
        pred = self.apply(params, folded)
        return _register_rows(
            self._kfac_jax, pred, self._targets(data, pred),
            self._row_weights(data.shape[0]), self.num_steps,
        )

    def model_loss(self, params: PyTree, data: jax.Array) -> Any:
        _check_window(data)
        _, outputs = self._chain(params, data)
        pred = outputs.reshape((-1,) + outputs.shape[2:])
        return _register_rows(
            self._kfac_jax, pred, self._targets(data, pred),
            self._row_weights(data.shape[0]), self.num_steps,
        )
