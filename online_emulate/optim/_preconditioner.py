"""`KFACPreconditioner`: K-FAC preconditioning of externally computed gradients."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import optax

from .._checks import as_key, check_callable
from ._blocks import block_report, warn_non_kronecker
from ._compat import import_kfac
from ._curvature import folded_batch_size, make_curvature_loss
from ._kfac import check_kfac_options
from ._layout import lift_params, lifted_leaf_mask, lower_params

__all__ = ["KFACPreconditioner", "KFACPreconditionerState"]

_RESERVED = ("value_func", "batch_size_extractor")


class KFACPreconditionerState(NamedTuple):
    """State of `KFACPreconditioner`: kfac's preconditioner state and a PRNG key."""

    precond: Any
    key: jax.Array


class KFACPreconditioner(optax.GradientTransformationExtraArgs):
    """An optax transform that multiplies gradients by K-FAC's inverse curvature.

    For gradients computed elsewhere (online estimators, truncated BPTT, ...): the
    curvature comes from the one-step squared-error loss of `apply` over a window
    (time folded into the batch), estimated with `kfac_jax.OptaxPreconditioner`.
    It returns the preconditioned gradient `(F + damping I)^-1 g`, with no sign or step
    size, so chain it with an optax optimizer::

        pre = KFACPreconditioner(apply, example_batch, damping=1e-3)
        tx = optax.chain(pre, optax.sgd(1e-2))
        opt_state = tx.init(params)
        updates, opt_state = tx.update(grads, opt_state, params, batch=window)
        params = optax.apply_updates(params, updates)

    `update` needs `params` and the keyword `batch` (a window `(B, T, C, *N)`; for
    states `(B, C, *N)` pass `states[:, None]`); `key=` optionally overrides the key
    carried in the state. `update` is jittable.

    Arguments:
        apply: pure `apply(params, u)` with plain lax ops (`functional(emulator)[0]`).
        example_batch: a window of the shape `update` will see (for tracing).
        key: PRNG key or int seed for the curvature sampling. Default 0.
        damping: Tikhonov damping added to the curvature. Default 1e-3.
        curvature_scale: factor on the registered one-step loss. Default 1.0.
        check_blocks: warn naming parameters that fell back to diagonal/generic blocks.
        **kfac_options: any keyword of `kfac_jax.OptaxPreconditioner` except
            `value_func` and `batch_size_extractor`. `pmap_axis_name` defaults
            to None (one device, no collectives; works inside jit / while_loop); name
            the axis only when `update` runs under `jax.pmap`.

    Raises:
        ImportError: kfac-jax is not installed (the message says how to install it).
        TypeError / ValueError: bad arguments, named in the message.
    """

    def __new__(
        cls,
        apply: Callable,
        example_batch: jax.Array,
        *,
        key: int | jax.Array = 0,
        damping: float = 1e-3,
        curvature_scale: float = 1.0,
        check_blocks: bool = True,
        **kfac_options,
    ):
        kfac_jax = import_kfac()
        check_callable("apply", apply, expected="a callable apply(params, u)")
        folded_batch_size(example_batch)  # validates the window
        check_kfac_options(kfac_jax.OptaxPreconditioner.__init__, kfac_options, reserved=_RESERVED)
        key = as_key(key)
        num_spatial_dims = example_batch.ndim - 3
        loss = make_curvature_loss(apply, curvature_scale=curvature_scale)
        # kfac syncs its statistics with collectives over `pmap_axis_name` whenever it
        # believes it runs under that axis; on one device (inside a trainer's jit /
        # while_loop) there is no such axis, so by default we name none and no
        # collective is emitted. Pass pmap_axis_name= explicitly to run under pmap.
        kfac_options.setdefault("pmap_axis_name", None)
        precon = kfac_jax.OptaxPreconditioner(
            value_func=loss,
            damping=damping,
            batch_size_extractor=folded_batch_size,
            **kfac_options,
        )
        holder: dict[str, Any] = {}

        def init_fn(params):
            mask = lifted_leaf_mask(params, num_spatial_dims)
            lifted = lift_params(params, mask)
            init_key, carry_key = jax.random.split(key)
            state = precon.init((lifted, example_batch), init_key)
            if "blocks" not in holder:
                holder["blocks"] = block_report(precon.estimator, lifted)
                if check_blocks:
                    holder["fallback"] = warn_non_kronecker(precon.estimator, lifted, kfac_jax)
            return KFACPreconditionerState(state, carry_key)

        def update_fn(updates, state, params=None, *, batch, key=None, **extra_args):
            del extra_args
            if params is None:
                raise ValueError("params: expected the current params (KFACPreconditioner.update "
                                 "needs them), got None")
            mask = lifted_leaf_mask(params, num_spatial_dims)
            carry_key, step_key = jax.random.split(state.key if key is None else key)
            precond = precon.maybe_update(
                state.precond, (lift_params(params, mask), batch), step_key
            )
            new = precon.apply(lift_params(updates, mask), precond)
            precond = precon.increment_count(precond)
            return lower_params(new, mask), KFACPreconditionerState(precond, carry_key)

        self = super().__new__(cls, init_fn, update_fn)
        self.preconditioner = precon
        self._holder = holder
        return self

    @property
    def blocks(self) -> list:
        """`(block class, parameter paths)` per curvature block (after `init`)."""
        return self._holder.get("blocks", [])

    @property
    def fallback_params(self) -> list:
        """Parameters that fell back to a non-Kronecker block (after `init`)."""
        return self._holder.get("fallback", [])
