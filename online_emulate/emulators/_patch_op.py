"""A stride-1 convolution's patches times its kernel matrix, as a braintrace ETP primitive
with its own param-dim D-RTRL rules (what `_lift` lifts a convolution to for D_RTRL).

    y[b, o, s] = sum_i W[o, i] x[b, i, s] + bias[o]

x is the convolution's patches (`_conv_layout.shifted_slices`: taps * C_in channels),
W the kernel as an `(out, taps * in)` matrix. braintrace stays the engine: the primitive
is made with `braintrace.register_primitive` and brings its rules through braintrace's
registries, so `braintrace.compile` finds it, relates it to the hidden state it writes,
and its `ParamDimVjpAlgorithm` runs the trace recurrence

    eps_t = D_t * eps_{t-1} + df_t (x) x_t,        grad = sum_{b, s} g_t . eps_t

unchanged. Only the layout of the exact per-position trace is this op's own:
`(B, out, in, space * n_state)`, positions (and states) minor, where braintrace 0.2.6's `etp_conv`
keeps `(B, *space, *kernel, n_state)`. With the positions minor the trace update is one
streaming pass whose broadcast operands are contiguous, and the solve is one batched
contraction per (sample, output channel) over the contiguous positions; `etp_conv`'s
position sum is an XLA reduction over the trace's major axes, which ran at 2-3 GB/s,
a tenth of the machine's streaming bandwidth (benchmarks/RESULTS.md, "D_RTRL's
floor"). The values are the same sums in another order (float rounding).

The rules come as braintrace's closed-form param-dim bundle (`FastPathRules`: instant,
recurrent and solve terms on whole batched arrays), installed with the public
`ETPPrimitive.register_etp_rules(fast_path=...)`. The `FastPathRules` type itself is
private in braintrace 0.2.6 (`braintrace._op`, not re-exported at the top level); no
public name exists for it. IO-dim algorithms (ES_D_RTRL) get the generic rules
(`xy_to_dw` as the vjp of the forward, `init_pp`), so the op serves them too.

The factored variant (`patch_matmul(..., factored=True)`) is for steps whose
hidden-to-hidden Jacobian is structurally zero in braintrace's diagonal scope (every path
from the old field to the new hidden states passes through a lifted product: a plain or
residual-block conv net whose inner outputs are declared hidden states; `_lift` checks it
on the plan, `online._compile` again on braintrace's graph). Then D_t = 0, the trace is
its instantaneous term, eps_t = df_t (x) x_t, and it is stored as those two factors:
`x_t` `(B, in, *space)` and `df_t` `(B, out, *space, n)` (in the op's layout), B * S *
(in + out * n) floats where the product is B * S * in * out * n. The solve is then a
matrix product,

    grad[o, i] = sum_{b, s} x[b, i, s] * (sum_a df[b, o, s, a] * g[b, o, s, a]),

which XLA runs as a dot; over the product trace it fused the same sums into a reduction
at a fifth of the matrix unit's speed (benchmarks/RESULTS.md, "A rank-one trace where
D_t = 0"). Its recurrent rule does not read the old trace; where D_t is not zero after
all it returns NaN, so a wrong use shows as a diverged run, not as a wrong gradient.

braintrace is imported when the primitive is first made (it loads lazily, DESIGN.md).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

__all__ = ["patch_matmul", "is_factored"]

# the factored-trace primitives made so far (`is_factored`)
_FACTORED: set = set()


def _to_first(a, channel_last: bool, rank: int):
    """`a` (batched, hidden-shaped, with `rank` leading axes in the op's layout and any
    trailing state axes) with its channel axis moved to 1."""
    return jnp.moveaxis(a, rank - 1, 1) if channel_last else a


def _forward(x, w, b=None, *, channel_last: bool, num_spatial: int):
    """y = W x (+ bias) on one batch `(B, in, *space)` or one sample `(in, *space)`
    (channel-last: the channel axis last)."""
    one = x.ndim == num_spatial + 1
    x = x[None] if one else x
    x = jnp.moveaxis(x, -1, 1) if channel_last else x
    y = jnp.einsum("oi,bi...->bo...", w, x)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * num_spatial)
    y = jnp.moveaxis(y, 1, -1) if channel_last else y
    return y[0] if one else y


def _decay(trace, d):
    """d * trace, exactly zero where d is zero.

    Where the hidden-to-hidden Jacobian is zero (a plain convolution net in the diagonal
    scope: the whole of it) the old trace does not matter, and the product says so
    without reading it: XLA sees that `d == 0` is a constant and drops the select's other
    branch, and with it a pass over the trace, where `trace * 0` has to be evaluated
    (0 * x is not 0 for a float x that is inf or NaN)."""
    return jnp.where(d == 0, jnp.zeros((), trace.dtype), trace * d)


def _factored_rules(channel_last: bool):
    """`(init_drtrl, instant, recurrent, solve)` of the factored trace (module docstring).

    braintrace wants a trace with the gradient's tree (`{"weight"[, "bias"]}`), so the
    two factors travel as one array, `"weight"`: x and df concatenated on the channel
    axis, `(B, in + out * n, positions)` (channel-last `(B, positions, in + out * n)`);
    a bias's trace is df itself, in the op's layout."""

    def pack(x, df):
        B = x.shape[0]
        if channel_last:
            x = x.reshape(B, -1, x.shape[-1])
            df = df.reshape(B, x.shape[1], -1)  # (B, positions, out * n)
            return jnp.concatenate([x, df], axis=-1)
        x = x.reshape(B, x.shape[1], -1)
        df = jnp.moveaxis(df.reshape(B, df.shape[1], -1, df.shape[-1]), -1, 2)
        return jnp.concatenate([x, df.reshape(B, -1, x.shape[-1])], axis=1)

    def init_drtrl(x_var, y_var, weight_vars, num_state):
        dtype = jnp.result_type(x_var.aval.dtype, y_var.aval.dtype,
                                *(v.aval.dtype for v in weight_vars.values()))
        x = jnp.zeros(x_var.aval.shape, dtype)
        df = jnp.zeros((*y_var.aval.shape, num_state), dtype)
        out = {"weight": pack(x, df)}
        if "bias" in weight_vars:
            out["bias"] = df
        return out

    def instant(x, df, has_bias):
        out = {"weight": pack(x, df)}
        if has_bias:
            out["bias"] = df
        return out

    def recurrent(diag, old, num_state):
        # the new trace is the instantaneous term alone: D_t is zero wherever this
        # variant is lifted, and XLA, which sees that zero, folds the guard away; a D_t
        # that is not zero makes the trace NaN, a diverged run rather than a wrong one
        bad = jnp.any(diag != 0)
        return {k: jnp.broadcast_to(jnp.where(bad, jnp.asarray(jnp.nan, v.dtype),
                                              jnp.zeros((), v.dtype)), v.shape)
                for k, v in old.items()}

    def solve(dg, trace, *, fold_batch=False):
        packed = trace["weight"]
        B, n = dg.shape[0], dg.shape[-1]
        if channel_last:
            O = dg.shape[-2]
            x = packed[..., :packed.shape[-1] - O * n]  # (B, positions, in)
            df = packed[..., packed.shape[-1] - O * n:].reshape(B, -1, O, n)
            signal = jnp.sum(df * dg.reshape(df.shape), axis=-1)  # (B, positions, out)
            spec = "bpi,bpo->oi" if fold_batch else "bpi,bpo->boi"
            position = 1
        else:
            O = dg.shape[1]
            x = packed[:, :packed.shape[1] - O * n]  # (B, in, positions)
            df = packed[:, packed.shape[1] - O * n:].reshape(B, O, n, -1)
            g = jnp.moveaxis(dg.reshape(B, O, -1, n), -1, 2)
            signal = jnp.sum(df * g, axis=2)  # (B, out, positions)
            spec = "bip,bop->oi" if fold_batch else "bip,bop->boi"
            position = 2
        out = {"weight": jnp.einsum(spec, x, signal)}
        if "bias" in trace:
            gb = signal.sum(position)  # (B, out)
            out["bias"] = gb.sum(0) if fold_batch else gb
        return out

    return init_drtrl, instant, recurrent, solve


@functools.cache
def _primitive(channel_last: bool, factored: bool = False):
    import braintrace
    from braintrace._op import FastPathRules  # private in braintrace 0.2.6, see above

    def impl(*args, has_bias=False, num_spatial=1):
        x, w = args[0], args[1]
        b = args[2] if has_bias else None
        return _forward(x, w, b, channel_last=channel_last, num_spatial=num_spatial)

    def trainable(params):
        return {"weight": 1, "bias": 2} if params.get("has_bias", False) else {"weight": 1}

    name = ("online_emulate_patch_matmul" + ("_channel_last" if channel_last else "")
            + ("_factored" if factored else ""))
    p = braintrace.register_primitive(name, impl, batched=True, trainable_invars_fn=trainable,
                                      x_invar_index=0)

    def init_drtrl(x_var, y_var, weight_vars, num_state):
        w = weight_vars["weight"].aval
        y = y_var.aval.shape
        space = y[1:-1] if channel_last else y[2:]
        dtype = jnp.result_type(x_var.aval.dtype, y_var.aval.dtype,
                                *(v.aval.dtype for v in weight_vars.values()))
        out = {"weight": jnp.zeros((y[0], *w.shape, math.prod(space) * num_state), dtype)}
        if "bias" in weight_vars:
            out["bias"] = jnp.zeros((y[0], w.shape[0], *space, num_state), dtype)
        return out

    def instant(x, df, has_bias):
        # x (B, in, *space); df (B, out, *space, n): the trace (B, out, in, space * n)
        d = x.ndim - 2
        x = _to_first(x, channel_last, d + 2)
        df = _to_first(df, channel_last, d + 2)
        w = x[:, None, ..., None] * df[:, :, None]
        out = {"weight": w.reshape(w.shape[:3] + (-1,))}
        if has_bias:
            out["bias"] = df
        return out

    def recurrent(diag, old, num_state):
        # diag (B, out, *space, n, n), the hidden-to-hidden Jacobian's diagonal blocks
        diag = _to_first(diag, channel_last, diag.ndim - 2)
        B, O = diag.shape[:2]
        if num_state == 1:
            dd = diag[..., 0]  # (B, out, *space, 1)
            out = {"weight": _decay(old["weight"], dd.reshape(B, O, 1, -1))}
            if "bias" in old:
                out["bias"] = _decay(old["bias"], dd)
            return out
        tw = old["weight"]
        tw = tw.reshape(tw.shape[:3] + diag.shape[2:-1])  # (B, out, in, *space, n)
        tw = jnp.einsum("bo...ac,boi...c->boi...a", diag, tw)
        out = {"weight": tw.reshape(tw.shape[:3] + (-1,))}
        if "bias" in old:
            out["bias"] = jnp.einsum("bo...ac,bo...c->bo...a", diag, old["bias"])
        return out

    def solve(dg, trace, *, fold_batch=False):
        # dg (B, out, *space, n): per (sample, output channel) the trace's (in,
        # positions) block contracted with the signal, positions contiguous
        dg = _to_first(dg, channel_last, dg.ndim - 1)
        # the trace's own shape, (B, out, in, space * n): a reshape of the trace here
        # lets XLA fuse braintrace's trace update into the product's operand as a second
        # evaluation of it (two more passes over the trace, and a copy of the old one)
        tw = trace["weight"]
        B, O, I = tw.shape[:3]
        # a product and a sum over the trace's minor axis, not a batched dot_general: XLA
        # runs B * out matrix-vector products of (in, positions) blocks at about half the
        # streaming bandwidth, the fused product-and-sum at more (D_RTRL 10-13% faster at
        # APEBench's size; benchmarks/RESULTS.md, "The D_RTRL solve as a reduction")
        g = jnp.sum(tw * dg.reshape(B, O, 1, -1), axis=-1)
        out = {"weight": g.sum(0) if fold_batch else g}
        if "bias" in trace:
            gb = jnp.sum((trace["bias"] * dg).reshape(B, O, -1), axis=-1)
            out["bias"] = gb.sum(0) if fold_batch else gb
        return out

    def dt_to_t(hidden_dim, trace, **params):
        # registered because braintrace looks every op's dt_to_t up; the closed-form
        # rules above always apply, and the generic path's per-state slices of the
        # trailing axis would cut this trace's merged (space * n) axis
        raise NotImplementedError(
            "trace: expected braintrace's closed-form rules for this op's (B, out, in, "
            "space * n_state) trace, got a call of the generic dt_to_t rule")

    def xy_to_dw(x, hidden_dim, weights, **params):
        def fwd(ws):
            return _forward(x, ws["weight"], ws.get("bias"), channel_last=channel_last,
                            num_spatial=params.get("num_spatial", 1))
        return jax.vjp(fwd, weights)[1](hidden_dim)[0]

    def init_pp(x_var, y_var, weight_vars, num_state):
        return jnp.zeros((*y_var.aval.shape, num_state), y_var.aval.dtype)

    if factored:
        init_drtrl, instant, recurrent, solve = _factored_rules(channel_last)
        _FACTORED.add(p)
    p.register_etp_rules(
        dt_to_t=dt_to_t, xy_to_dw=xy_to_dw, init_drtrl=init_drtrl, init_pp=init_pp,
        fast_path=FastPathRules(instant, recurrent, solve, lambda params: True))
    return p


def is_factored(primitive) -> bool:
    """Whether `primitive` is this module's factored-trace variant."""
    return primitive in _FACTORED


def patch_matmul(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *,
                 channel_last: bool, factored: bool = False) -> jax.Array:
    """`W x (+ bias)` over the patches `x` of a stride-1 convolution, as this module's
    braintrace ETP primitive.

    Arguments:
        x: the patches, `(B, taps * in, *space)`, or `(B, *space, taps * in)` when
            `channel_last`.
        w: the kernel matrix `(out, taps * in)`.
        b: an optional bias `(out,)`.
        channel_last: the layout of `x` and of the output.
        factored: keep the D-RTRL trace as its two factors (module docstring); only
            where the step's hidden-to-hidden Jacobian is structurally zero.

    Returns:
        `(B, out, *space)` (or `(B, *space, out)`).

    Raises:
        ValueError: `w` is not a matrix whose columns match the patches' channels.
    """
    channels = x.shape[-1] if channel_last else x.shape[1]
    if w.ndim != 2 or w.shape[1] != channels:
        raise ValueError(f"w: expected a matrix (out, {channels}), got shape {tuple(w.shape)}")
    p = _primitive(bool(channel_last), bool(factored))
    params = {"num_spatial": x.ndim - 2}
    if b is None:
        return p.bind(x, w, has_bias=False, **params)
    return p.bind(x, w, b, has_bias=True, **params)
