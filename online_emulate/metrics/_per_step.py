"""Per-rollout-step error metrics on batched trajectories.

Every metric reduces channel and space per sample and per step, then averages over
the batch, mapping `(B, T, C, *N)` prediction/reference pairs to a `(T,)` array.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._validation import check_trajectory_pair


def _flatten(x):
    # (B, T, C, *N) -> (B, T, C * prod(N))
    return jnp.reshape(x, x.shape[:2] + (-1,))


def _per_channel(x):
    # (B, T, C, *N) -> (B, T, C, prod(N))
    return jnp.reshape(x, x.shape[:3] + (-1,))


@jax.jit
def _nrmse(pred, ref, eps):
    # per channel, normalised, then summed over channels (exponax.metrics.nRMSE)
    diff = jnp.linalg.norm(_per_channel(pred - ref), axis=-1)
    norm = jnp.linalg.norm(_per_channel(ref), axis=-1)
    return jnp.mean(jnp.sum(diff / (norm + eps), axis=-1), axis=0)


@jax.jit
def _rmse(pred, ref):
    return jnp.mean(jnp.sqrt(jnp.mean(jnp.square(_flatten(pred - ref)), axis=-1)), axis=0)


@jax.jit
def _mae(pred, ref):
    return jnp.mean(jnp.mean(jnp.abs(_flatten(pred - ref)), axis=-1), axis=0)


def _cosine_flat(p, r):
    # p, r: (B, T, D) -> batch mean of the per-(b, t) cosine similarity, (T,)
    inner = jnp.sum(p * r, axis=-1)
    norms = jnp.linalg.norm(p, axis=-1) * jnp.linalg.norm(r, axis=-1)
    # rounding can push |cos| a hair above 1
    return jnp.mean(jnp.clip(inner / norms, -1.0, 1.0), axis=0)


@jax.jit
def _cosine(pred, ref):
    return _cosine_flat(_flatten(pred), _flatten(ref))


@jax.jit
def _pearson(pred, ref):
    p = _flatten(pred)
    r = _flatten(ref)
    p = p - jnp.mean(p, axis=-1, keepdims=True)
    r = r - jnp.mean(r, axis=-1, keepdims=True)
    return _cosine_flat(p, r)


def nrmse(
    pred: Float[Array, "batch time channel *space"],
    ref: Float[Array, "batch time channel *space"],
    *,
    eps: float = 0.0,
) -> Float[Array, "time"]:
    """Normalised root-mean-square error per rollout step.

    For sample b and step t, with norms over space taken per channel c,

        nRMSE[b, t] = sum_c ||pred[b, t, c] - ref[b, t, c]||_2 / (||ref[b, t, c]||_2 + eps)

    and the result is the mean over b. Channels are normalised separately and then
    SUMMED (not averaged), as `exponax.metrics.nRMSE` does; for one channel this is
    RMSE(pred - ref) / RMS(ref). This is the apebench/exponax convention.

    Arguments:
        pred: predicted trajectories, shape `(B, T, C, *N)`.
        ref: reference trajectories, same shape.
        eps: added to the reference norm; the default 0 gives `inf` (or `nan` where
            the prediction is exact too) for a reference state that is identically zero.

    Returns:
        The per-step nRMSE, shape `(T,)`.

    Raises:
        ValueError: if the shapes differ or have fewer than 3 axes, or `eps < 0`.
    """
    check_trajectory_pair(pred, ref)
    if not eps >= 0:
        raise ValueError(f"eps: expected a number >= 0, got {eps!r}")
    return _nrmse(jnp.asarray(pred), jnp.asarray(ref), eps)


def rmse(
    pred: Float[Array, "batch time channel *space"],
    ref: Float[Array, "batch time channel *space"],
) -> Float[Array, "time"]:
    """Root-mean-square error per rollout step.

        RMSE[b, t] = sqrt( mean_{c, x} (pred[b, t, c, x] - ref[b, t, c, x])^2 )

    averaged over the batch b.

    Arguments:
        pred: predicted trajectories, shape `(B, T, C, *N)`.
        ref: reference trajectories, same shape.

    Returns:
        The per-step RMSE, shape `(T,)`.

    Raises:
        ValueError: if the shapes differ or have fewer than 3 axes.
    """
    check_trajectory_pair(pred, ref)
    return _rmse(jnp.asarray(pred), jnp.asarray(ref))


def mae(
    pred: Float[Array, "batch time channel *space"],
    ref: Float[Array, "batch time channel *space"],
) -> Float[Array, "time"]:
    """Mean absolute error per rollout step.

        MAE[b, t] = mean_{c, x} |pred[b, t, c, x] - ref[b, t, c, x]|

    averaged over the batch b.

    Arguments:
        pred: predicted trajectories, shape `(B, T, C, *N)`.
        ref: reference trajectories, same shape.

    Returns:
        The per-step MAE, shape `(T,)`.

    Raises:
        ValueError: if the shapes differ or have fewer than 3 axes.
    """
    check_trajectory_pair(pred, ref)
    return _mae(jnp.asarray(pred), jnp.asarray(ref))


def correlation(
    pred: Float[Array, "batch time channel *space"],
    ref: Float[Array, "batch time channel *space"],
    *,
    centered: bool = False,
) -> Float[Array, "time"]:
    """Correlation between prediction and reference per rollout step.

    Channel and space of each sample and step are flattened into one vector. By default
    (`centered=False`) this is the normalised inner product (cosine similarity), the
    convention of apebench:

        corr[b, t] = <pred[b, t], ref[b, t]> / (||pred[b, t]||_2 * ||ref[b, t]||_2)

    With `centered=True` the spatial-and-channel mean of each vector is subtracted
    first, which gives the Pearson correlation coefficient. The two agree for
    zero-mean fields (e.g. periodic problems with a conserved zero mean). The result is
    the mean over the batch b; it lies in [-1, 1], and is `nan` where a vector has zero
    norm (e.g. a prediction that collapsed to zero).

    Arguments:
        pred: predicted trajectories, shape `(B, T, C, *N)`.
        ref: reference trajectories, same shape.
        centered: False for the normalised inner product, True for Pearson.

    Returns:
        The per-step correlation, shape `(T,)`.

    Raises:
        ValueError: if the shapes differ or have fewer than 3 axes.
    """
    check_trajectory_pair(pred, ref)
    fn = _pearson if centered else _cosine
    return fn(jnp.asarray(pred), jnp.asarray(ref))
