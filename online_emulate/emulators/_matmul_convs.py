"""Convolutions of any model re-expressed as matrix products (CPU only).

XLA:CPU runs convolution primitives inside a `while`/`scan` body 2.5-9x slower than at
the top level of a program, and every training step of this library runs inside the
trainer's `while_loop` (benchmarks/RESULTS.md, "Training speed on a realistic network").
The built-in emulators avoid convolution primitives themselves (`periodic_conv`); a
user's equinox module, `(apply, params)` pair or brainstate module does not. For those,
`matmul_convolutions(fn)` traces `fn` to a jaxpr and evaluates it again with each
stride-1, undilated, ungrouped `conv_general_dilated` replaced by one matrix product of
shifted slices of its padded input (im2col); braintrace's `etp_conv` ops (the
`braintrace.nn` convolutions) are first inlined to their implementation, whose
convolution is then replaced the same way; every other operation is bound as traced.
The values equal the convolution's up to float rounding, and `jax.grad`, `jax.vmap`
and `jax.jit` see ordinary operations.

The same interpreter serves K-FAC (`kernel_space_first`): there the convolutions stay,
with their kernels transposed into the order kfac-jax can read.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
from jax.extend import core as jcore

from ._conv_layout import channel_last, from_channel_last, kernel_space_in_out, shifted_slices
from ._split_im2col import split_im2col
from ._wrap_fusion import WrapTracker

__all__ = ["matmul_convolutions", "im2col_conv", "kernel_space_first"]

# call primitives whose body is evaluated (and rewritten) in line
_CALLS = ("pjit", "jit", "closed_call", "core_call")


def _rewritable(params) -> bool:
    return (
        all(s == 1 for s in params["window_strides"])
        and all(d == 1 for d in params["lhs_dilation"])
        and all(d == 1 for d in params["rhs_dilation"])
        and params["feature_group_count"] == 1
        and params["batch_group_count"] == 1
    )


def _recomputed(fn: Callable) -> Callable:
    # keep only the operands for the backward pass, as the built-in convolution does
    # (`_ops._shifted_matmul_conv`): the copies are cheaper to rebuild than to store
    return jax.checkpoint(fn, policy=jax.checkpoint_policies.nothing_saveable)


def im2col_conv(lhs: jax.Array, rhs: jax.Array, *, padding, dimension_numbers,
                preferred_element_type=None) -> jax.Array:
    """A stride-1 `lax.conv_general_dilated` as one matrix product.

    With x the input moved to `(N, *S, C_in)` and zero-padded by `padding`, and w the
    kernel moved to `(*K, C_in, C_out)`:

        y[n, s, o] = sum_{u, i} x[n, s + u, i] * w[u, i, o]

    a `(N * prod(S_out), prod(K) * C_in) @ (prod(K) * C_in, C_out)` product of the
    prod(K) shifted slices of x, moved back to the output layout. That is the rule for
    one spatial axis; with two or more, the shifted copies are built along the last
    axis only and the other offsets summed on the product's output side
    (`_split_im2col`, which states the measurement behind the rule), with only the
    input kept for the backward pass.

    Arguments:
        lhs, rhs: the convolution's operands.
        padding: `((lo, hi), ...)` per spatial axis (negative values crop).
        dimension_numbers: a `jax.lax.ConvDimensionNumbers`.
        preferred_element_type: the output dtype, if the convolution names one.
    """
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    d = len(lhs_spec) - 2
    w = kernel_space_in_out(rhs, rhs_spec)
    kernel, c_out = w.shape[:d], w.shape[-1]
    x = channel_last(lhs, lhs_spec)
    if d >= 2:
        split = functools.partial(split_im2col, padding=tuple(tuple(p) for p in padding))
        y = _recomputed(split)(x, w)
    else:
        cols = shifted_slices(x, padding, kernel, space_axes=range(1, d + 1), channel_axis=-1)
        out_space = cols.shape[1:-1]
        rows = cols.shape[0] * math.prod(out_space)
        y = (cols.reshape(rows, -1) @ w.reshape(-1, c_out)).reshape(
            (cols.shape[0], *out_space, c_out))
    y = from_channel_last(y, out_spec)
    return y if preferred_element_type is None else y.astype(preferred_element_type)


def _is_etp_conv(eqn) -> bool:
    # braintrace's convolution ETP op: its implementation is a conv_general_dilated
    # (plus the bias), which the jaxpr shows only once the op is inlined
    return (eqn.primitive.name == "etp_conv"
            and type(eqn.primitive).__module__.startswith("braintrace"))


def _inlined(eqn, args) -> jcore.ClosedJaxpr:
    """The jaxpr of a braintrace ETP op's own implementation, for `args` (arrays or
    abstract values). Off the eligibility-trace path nothing needs the op itself: its
    derivative rules are those of this implementation."""
    impl = functools.partial(eqn.primitive.impl, **eqn.params)
    return jax.make_jaxpr(impl)(*args)


def _body(eqn, args, inline_etp: bool) -> jcore.ClosedJaxpr | None:
    """The jaxpr evaluated in line for `eqn` (and searched for convolutions): a call's
    body, or braintrace's `etp_conv` implementation for `args` when `inline_etp`; None
    for other ops."""
    if eqn.primitive.name in _CALLS and isinstance(eqn.params.get("jaxpr"), jcore.ClosedJaxpr):
        return eqn.params["jaxpr"]
    if inline_etp and _is_etp_conv(eqn):
        return _inlined(eqn, args)
    return None


def environment(jaxpr, consts, args) -> tuple[dict, Callable]:
    """`(env, read)` for evaluating `jaxpr` by hand: `env` maps its variables to values
    (constants and arguments bound), `read(var)` gives a variable's or literal's value."""
    env = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))

    def read(var):
        return var.val if isinstance(var, jcore.Literal) else env[var]

    return env, read


def _bind(eqn, values):
    bound = eqn.primitive.get_bind_params(eqn.params)
    subfuns, params = ((), bound) if isinstance(bound, dict) else bound
    out = eqn.primitive.bind(*subfuns, *values, **params)
    return out if eqn.primitive.multiple_results else [out]


@dataclasses.dataclass(frozen=True)
class _Rewrite:
    """Which convolutions to replace (`wants(params)`), by what (`replace(values,
    params)`, one output), whether braintrace's etp_conv ops are opened first, and
    whether a convolution of a periodic padding is computed from the unpadded tensor
    (`_wrap_fusion`) before `replace` is tried."""

    wants: Callable
    replace: Callable
    inline_etp: bool
    fuse_wraps: bool = False

    def evaluate(self, jaxpr, consts, args, wraps: WrapTracker | None = None):
        env, read = environment(jaxpr, consts, args)
        for eqn in jaxpr.eqns:
            values = [read(v) for v in eqn.invars]
            if eqn.primitive.name == "conv_general_dilated" and self.wants(eqn.params):
                fused = None if wraps is None else wraps.convolution(values, eqn.params)
                out = [self.replace(values, eqn.params) if fused is None else fused]
            elif (body := _body(eqn, values, self.inline_etp)) is not None:
                out = self.evaluate(body.jaxpr, body.consts, values, wraps)
            else:
                out = _bind(eqn, values)
                if wraps is not None:
                    wraps.observe(eqn, values, out)
            env.update(zip(eqn.outvars, out))
        return [read(v) for v in jaxpr.outvars]

    def applies(self, jaxpr) -> bool:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated" and self.wants(eqn.params):
                return True
            body = _body(eqn, [v.aval for v in eqn.invars], self.inline_etp)
            if body is not None and self.applies(body.jaxpr):
                return True
        return False

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapped(*args):
            closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
            if not self.applies(closed.jaxpr):
                return fn(*args)
            wraps = WrapTracker() if self.fuse_wraps else None
            out = self.evaluate(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args), wraps)
            return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), out)

        return wrapped


def _im2col(values, params):
    return im2col_conv(*values, padding=params["padding"],
                       dimension_numbers=params["dimension_numbers"],
                       preferred_element_type=params.get("preferred_element_type"))


_MATMUL = _Rewrite(wants=_rewritable, replace=_im2col, inline_etp=True, fuse_wraps=True)


def matmul_convolutions(fn: Callable) -> Callable:
    """`fn` with its convolutions evaluated as matrix products (see the module docstring).

    Convolutions inside control flow (`scan`, `cond`, ...) and custom-derivative rules
    stay convolution primitives, as do strided, dilated and grouped ones; a function
    without a rewritable convolution is called as it is.

    Arguments:
        fn: a function of arrays / PyTrees of arrays.

    Returns:
        A function with the same signature and outputs (up to float rounding).
    """
    return _MATMUL(fn)


def _kernel_space_trails(params) -> bool:
    rhs_spec = params["dimension_numbers"].rhs_spec
    return tuple(rhs_spec[2:]) != tuple(range(len(rhs_spec) - 2))


def _kernel_space_first(values, params):
    lhs, rhs = values
    dims = params["dimension_numbers"]
    d = len(dims.rhs_spec) - 2
    kernel = kernel_space_in_out(rhs, dims.rhs_spec)
    spec = jax.lax.ConvDimensionNumbers(dims.lhs_spec, (d + 1, d, *range(d)), dims.out_spec)
    return jax.lax.conv_general_dilated_p.bind(lhs, kernel, **{**params, "dimension_numbers": spec})


_KERNEL_SPACE_FIRST = _Rewrite(wants=_kernel_space_trails, replace=_kernel_space_first,
                               inline_etp=False)


def kernel_space_first(fn: Callable) -> Callable:
    """`fn` with every convolution's kernel read in the `(*space, in, out)` order.

    kfac-jax 0.0.8 reads a convolution kernel's spatial sizes from the kernel's
    leading axes: a kernel stored `(out, in, *space)` (equinox, PyTorch order) fails
    inside kfac-jax with an IndexError. Here such a kernel is transposed before the
    convolution. The transpose also hides the kernel from kfac-jax's graph matcher, so
    that parameter gets a diagonal curvature block (named in the K-FAC optimizer's
    warning) instead of a crash. Same outputs, exactly.

    Arguments:
        fn: a function of arrays / PyTrees of arrays.

    Returns:
        A function with the same signature and outputs.
    """
    return _KERNEL_SPACE_FIRST(fn)
