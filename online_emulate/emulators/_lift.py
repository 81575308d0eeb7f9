"""Any model's parameter-consuming operations lifted into braintrace ETP operations.

braintrace's eligibility traces (`ETrace`) need a brainstate module whose weights are
`ParamState`s used through ETP primitives, with the field a `HiddenState`. An equinox
module, an `(apply, params)` pair or a brainstate module written with plain jax ops is
none of these. `LiftedModule` makes one from any of them: the model's step on a batch is
traced to a jaxpr and evaluated again, with

* each operation that combines the field with parameters replaced by the braintrace
  op that computes the same thing: a convolution `conv_general_dilated(x, w)` by
  `braintrace.conv` (for D_RTRL a stride-1 one as a width-1 `braintrace.conv` over its
  input's shifted slices, `_patch_options`), a dense product `dot_general(x, w)` of a `(batch, in)` input by
  `braintrace.matmul`, an element-wise scale `x * s` and bias `x + b` by
  `braintrace.einsum` (a bias `b` as `einsum(ones, b)`); a bias added to a lifted
  product's output is folded into that op;
* each weight operand (whatever the model computes from its parameters alone: a
  reshape, a flip, a transpose, a weight normalisation) one `ParamState` of the
  module: `write_params(params)` evaluates those operands from the model's parameters
  and `param_grads(params, g)` maps gradients with respect to them back to the
  parameters (the vector-Jacobian product of that map, so the chain rule is exact);
* the output of every lifted op that reaches another lifted op declared a hidden state
  (`hidden_state`), as the built-in `ConvNet` declares its inner layers, so that every
  weight gets a trace (NOTES.md: braintrace excludes a weight whose output reaches the
  field only through another ETP op);
* reshapes that only add and remove unit axes (the batching of a vmapped one-state
  model) dropped, so no layout change separates an ETP op from the hidden state it
  writes (which braintrace's trace solve does not follow);
* every other operation bound as traced.

braintrace stays the engine: `braintrace.compile` finds these ops and hidden states
and builds the traces. A parameter used by any other operation (inside a `scan`, a
`cond`, a custom derivative rule, or a product braintrace has no op for) raises a
TypeError naming the parameter's path and the operation, before anything compiles.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import brainstate
import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from ._conv_layout import kernel_space_in_out, shifted_slices
from ._hidden import hidden_state
from ._matmul_convs import _CALLS, _bind, _rewritable, environment
from ._patch_op import patch_matmul

__all__ = ["LiftedModule", "LiftError", "lift_plan", "reached_from", "uses_etp_ops"]

# ops that keep the element order and only add or remove axes
_RESHAPES = ("reshape", "squeeze", "expand_dims", "broadcast_in_dim")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
# how a lifted convolution reads its kernel, per ETrace algorithm (and scope): "patch_op"
# (the input's patches times the kernel matrix, this library's ETP primitive with its
# own D-RTRL trace layout, `_patch_op`), "patches" (a width-1 `braintrace.conv` over the
# input's patches, `_patch_options`), "in_space_out" (`_kernel_in_space_out`) or "model"
# (the model's own order, as lifted first). Measured (benchmarks/RESULTS.md, "D_RTRL's
# floor"), ms per step, interleaved: at the issue's size D_RTRL model 268 /
# in_space_out 201 / patches 137 / patch_op 85, ES_D_RTRL 16.2 / 86 / 61 / 13.6; at the
# medium size the coupled scope 1047 / 1043 / 354 / 515, ES_D_RTRL 1.40 / 1.29 / 1.32 /
# 0.96. "factored_patch_op" is "patch_op" whose D-RTRL traces are kept as their two
# factors where the step's hidden-to-hidden Jacobian is structurally zero
# (`_zero_recurrence`; D_RTRL in the diagonal scope only, `_patch_op`): D_RTRL at the
# issue's size 12.1 -> 7.5 ms per step (RESULTS.md, "A rank-one trace where D_t = 0").
# Read when a model is lifted, so benchmarks/online_speed.py can measure one against the
# other; an algorithm/scope without an entry reads its algorithm's.
KERNEL_ORDER = {"d_rtrl": "factored_patch_op", "d_rtrl/coupled": "patches",
                "es_d_rtrl": "patch_op"}
KERNEL_ORDERS = ("model", "in_space_out", "patches", "patch_op", "factored_patch_op")
# the orders whose stride-1 convolutions become `patch_matmul`
_PATCH_OPS = ("patch_op", "factored_patch_op")


class LiftError(TypeError):
    """A parameter is used by an operation that has no braintrace ETP counterpart."""


def _order_preserving(eqn, operand) -> bool:
    name = eqn.primitive.name
    out = eqn.outvars[0].aval
    if name == "broadcast_in_dim":
        dims = tuple(eqn.params["broadcast_dimensions"])
        return math.prod(out.shape) == math.prod(operand.shape) and list(dims) == sorted(dims)
    if name == "reshape":
        return eqn.params.get("dimensions") is None
    return True


def _inline(jaxpr, consts, args, origin):
    """Evaluate `jaxpr` (under a new trace), with call bodies in line and unit-axis
    reshape chains that come back to their start shape replaced by their start."""
    env, read = environment(jaxpr, consts, args)
    for eqn in jaxpr.eqns:
        values = [read(v) for v in eqn.invars]
        body = eqn.params.get("jaxpr") if eqn.primitive.name in _CALLS else None
        if isinstance(body, jcore.ClosedJaxpr):
            out = _inline(body.jaxpr, body.consts, values, origin)
        elif eqn.primitive.name in _RESHAPES and _order_preserving(eqn, eqn.invars[0].aval):
            start = origin.get(id(values[0]), (values[0],))[0]
            if tuple(start.shape) == tuple(eqn.outvars[0].aval.shape):
                out = [start]
            else:
                out = _bind(eqn, values)
                origin[id(out[0])] = (start, out[0])  # the entry keeps out[0] alive
        else:
            out = _bind(eqn, values)
        env.update(zip(eqn.outvars, out))
    return [read(v) for v in jaxpr.outvars]


def flat_jaxpr(fn: Callable, *args) -> tuple[jcore.ClosedJaxpr, Any]:
    """`fn`'s jaxpr for `args` (arrays or shape structs) with calls inlined and unit-axis
    round trips removed, and the output tree."""
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    leaves = jax.tree_util.tree_leaves(args)

    def inlined(*flat):
        return _inline(closed.jaxpr, closed.consts, flat, {})

    flat = jax.make_jaxpr(inlined)(*leaves)
    return _without_dead_code(flat), jax.tree_util.tree_structure(out_shape)


def _without_dead_code(closed: jcore.ClosedJaxpr) -> jcore.ClosedJaxpr:
    """`closed` without the equations whose outputs nothing reads (the dropped
    reshapes), so that every use counted in the analysis is a real one."""
    jaxpr = closed.jaxpr
    live = {v for v in jaxpr.outvars if not isinstance(v, jcore.Literal)}
    kept = []
    for eqn in reversed(jaxpr.eqns):
        if any(v in live for v in eqn.outvars) or eqn.effects:
            kept.append(eqn)
            live.update(v for v in eqn.invars if not isinstance(v, jcore.Literal))
    return jcore.ClosedJaxpr(jaxpr.replace(eqns=kept[::-1]), closed.consts)


def uses_etp_ops(fn: Callable, *args) -> bool:
    """Whether `fn(*args)` binds any braintrace ETP primitive (calls looked into)."""
    from braintrace._op._registries import is_etp_primitive

    def search(jaxpr):
        for eqn in jaxpr.eqns:
            if is_etp_primitive(eqn.primitive):
                return True
            body = eqn.params.get("jaxpr")
            if isinstance(body, jcore.ClosedJaxpr) and search(body.jaxpr):
                return True
        return False

    return search(jax.make_jaxpr(fn)(*args).jaxpr)


@dataclasses.dataclass
class _Op:
    """One lifted operation: `kind` ("conv", "matmul", "scale", "bias"), the eqn it
    replaces, its input variable, its weight operand (and bias operand) as indices into
    the plan's operands, the variable it defines (after any folded transpose or bias),
    and whether its output is declared a hidden state."""

    kind: str
    eqn: Any
    x: Any
    weight: int
    bias: int | None = None
    out: Any = None
    declare: bool = False
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Operand:
    """A weight operand: parameter-only variables of the jaxpr, the parameter leaves they
    read, and an optional function of their values (a negated or reshaped bias, a kernel
    and its bias as one matrix); without it, the one variable's value."""

    vars: tuple
    leaves: frozenset
    transform: Callable | None = None

    def value(self, read):
        values = [read(v) for v in self.vars]
        return values[0] if self.transform is None else self.transform(*values)


@dataclasses.dataclass
class Plan:
    """What `lift_plan` found: the flat jaxpr, its lifted ops keyed by eqn index, the
    weight operands, the indices of parameter-only eqns and of the eqns folded into a
    lifted op, and the output tree."""

    jaxpr: jcore.ClosedJaxpr
    ops: dict
    operands: list
    weight_only: set
    skipped: set
    out_tree: Any

    def operand_shapes(self) -> list[tuple]:
        shapes = []
        for o in self.operands:
            value = jax.eval_shape(lambda *a, o=o: o.value(dict(zip(o.vars, a)).__getitem__),
                                   *(jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype)
                                     for v in o.vars))
            shapes.append((tuple(value.shape), str(value.dtype)))
        return shapes


def _describe(eqn) -> str:
    return f"`{eqn.primitive.name}`"


def lift_plan(fn: Callable, params: Any, u: Any, *, paths: list[str] | None = None,
              model: str = "model", conv_bias: str = "vector",
              kernel_order: str = "patch_op") -> Plan:
    """Trace `fn(params, u)` (u a batch in the field layout) and find its lifted ops.

    Arguments:
        fn: the model's step on a batch.
        params: its parameter PyTree (arrays or shape structs).
        u: the batched field (an array or a shape struct).
        paths: a name per parameter leaf (for errors); default the key paths.
        model: the model's description (for errors).
        conv_bias: how a bias folded into a convolution is stored: "vector" `(out,)`
            (what braintrace's D_RTRL needs) or "state" (one state's rank, what its
            ES_D_RTRL needs in a channel-first layout).
        kernel_order: the kernel order a lifted convolution reads, "in_space_out"
            (see `_kernel_in_space_out`), "model" (the model's own), "patches" (a
            stride-1 convolution as its input's shifted slices read by a width-1
            convolution, see `_patch_options`; other convolutions "in_space_out"), or
            "patch_op" (those slices times the kernel matrix, `_patch_op`; a stride-1
            convolution whose input and output layouts differ, or have the channel
            axis neither second nor last, as "patches"), or "factored_patch_op" (as
            "patch_op", with the factored D-RTRL trace where the step's hidden-to-hidden
            Jacobian is structurally zero, `_zero_recurrence`; for D_RTRL's diagonal
            scope only: the coupled scope keeps the convolutions in that Jacobian).

    Returns:
        The `Plan`.

    Raises:
        ValueError: an unknown `kernel_order`.
        LiftError: a parameter is used by an operation that cannot be lifted, naming
            the parameter's path and the operation.
    """
    if kernel_order not in KERNEL_ORDERS:
        raise ValueError(
            f"kernel_order: expected one of {KERNEL_ORDERS}, got {kernel_order!r}")
    closed, out_tree = flat_jaxpr(fn, params, u)
    jaxpr = closed.jaxpr
    num_params = len(jaxpr.invars) - 1
    if paths is None:
        paths = [jax.tree_util.keystr(p) for p, _ in
                 jax.tree_util.tree_leaves_with_path(params)]
    leaves_of = {v: frozenset([i]) for i, v in enumerate(jaxpr.invars[:num_params])}
    field = {jaxpr.invars[-1]}
    uses = {}
    for k, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if not isinstance(v, jcore.Literal):
                uses.setdefault(v, []).append(k)
    outputs = {v for v in jaxpr.outvars if not isinstance(v, jcore.Literal)}
    # which values depend on the field, and which parameters the others are computed
    # from (the weight operands and their inputs), before any op is lifted
    for eqn in jaxpr.eqns:
        ins = [v for v in eqn.invars if not isinstance(v, jcore.Literal)]
        if any(v in field for v in ins):
            field.update(eqn.outvars)
        else:
            used = frozenset().union(*(leaves_of.get(v, frozenset()) for v in ins))
            if used:
                leaves_of.update((v, used) for v in eqn.outvars)

    def leaves(v):
        return frozenset() if isinstance(v, jcore.Literal) else leaves_of.get(v, frozenset())

    def on_field(v):
        return not isinstance(v, jcore.Literal) and v in field

    def refuse(eqn, used, why=""):
        names = ", ".join(paths[i].lstrip(".") for i in sorted(used))
        raise LiftError(
            f"emulator: expected every parameter of the {model} to be used by a "
            "convolution, a dense product of a (batch, features) input, or an element-wise "
            "scale or bias of the field (what ETrace lifts to braintrace ETP ops), got "
            f"parameter {names} used by {_describe(eqn)}{why}; train this model with BPTT(), "
            "TruncatedBPTT(k) or ForwardRTRL(), which take any model"
        )

    operands: list[_Operand] = []
    ops: dict[int, _Op] = {}
    weight_only: set[int] = set()
    skipped: set[int] = set()

    def operand(v, transform=None):
        operands.append(_Operand((v,), leaves(v), transform))
        return len(operands) - 1

    def fold_transpose(op):
        """`dot_general(w, x)` gives `(out, batch)`; a transpose of it that follows is the
        product braintrace.matmul computes."""
        users = uses.get(op.out, [])
        if len(users) == 1 and op.out not in outputs:
            t = jaxpr.eqns[users[0]]
            if t.primitive.name == "transpose" and tuple(t.params["permutation"]) == (1, 0):
                skipped.add(users[0])
                op.out = t.outvars[0]
                return True
        return False

    def fold_bias(op):
        """Fold `y + b` (or `y - b`) into the op producing y, when y has no other use."""
        y = op.out
        users = uses.get(y, [])
        if len(users) != 1 or y in outputs:
            return
        add = jaxpr.eqns[users[0]]
        if add.primitive.name not in ("add", "sub"):
            return
        other = [v for v in add.invars if v is not y]
        if len(other) != 1 or on_field(other[0]) or not leaves(other[0]):
            return
        b = other[0]
        if add.primitive.name == "sub" and add.invars[0] is not y:
            return
        out_shape = tuple(add.outvars[0].aval.shape)
        if tuple(y.aval.shape) != out_shape or len(b.aval.shape) > len(out_shape):
            return
        sign = -1.0 if add.primitive.name == "sub" else 1.0
        if op.kind == "conv":
            # a per-channel bias, which braintrace.conv takes as a vector (its bias
            # trace rules know no other shape); any other bias stays an element-wise op
            shape = (1,) * (len(out_shape) - len(b.aval.shape)) + tuple(b.aval.shape)
            channel = op.options["dimension_numbers"].out_spec[1]
            if any(s != 1 for j, s in enumerate(shape) if j != channel):
                return
            if shape[channel] != out_shape[channel]:
                return
            # braintrace 0.2.6's D_RTRL solve returns a conv bias gradient of shape
            # (out,); its ES_D_RTRL solve sums the leading axes of the per-position
            # gradient, right only for a bias of one state's rank (out, 1, ...) in a
            # channel-first layout (a channel-last one sums to (out,) either way)
            vector = (conv_bias == "vector" or channel == len(out_shape) - 1
                      or "matrix" in op.options)
            transform = _reshape_to((out_shape[channel],) if vector else shape[1:], sign)
        else:
            # braintrace.matmul takes a bias of shape (out,)
            if any(s != 1 for s in b.aval.shape[:-1]) or b.aval.shape[-1] != out_shape[-1]:
                return
            transform = _reshape_to((out_shape[-1],), sign)
        op.bias = operand(b, transform)
        op.out = add.outvars[0]
        skipped.add(users[0])

    for k, eqn in enumerate(jaxpr.eqns):
        if k in skipped:
            continue
        ins = [v for v in eqn.invars if not isinstance(v, jcore.Literal)]
        used = frozenset().union(*(leaves(v) for v in ins))
        if not used:
            continue
        if not any(on_field(v) for v in ins):
            weight_only.add(k)
            continue
        name = eqn.primitive.name
        op = None
        if name == "conv_general_dilated":
            x, w = eqn.invars
            if on_field(x) and not leaves(x) and not on_field(w):
                if eqn.params["feature_group_count"] != 1 or eqn.params["batch_group_count"] != 1:
                    refuse(eqn, used)
                options = {key: eqn.params[key] for key in
                           ("window_strides", "padding", "lhs_dilation", "rhs_dilation",
                            "dimension_numbers")}
                matrix = _matrix_layout(eqn.params) if kernel_order in _PATCH_OPS else None
                if matrix is not None and _rewritable(eqn.params):
                    options.update(_patch_options(eqn.params, w.aval.shape), matrix=matrix)
                    op = _Op("conv", eqn, x, operand(w, _patch_matrix(eqn.params)),
                             options=options)
                elif kernel_order in ("patches", *_PATCH_OPS) and _rewritable(eqn.params):
                    options.update(_patch_options(eqn.params, w.aval.shape))
                    op = _Op("conv", eqn, x, operand(w, _patch_kernel(eqn.params)),
                             options=options)
                elif kernel_order != "model":
                    perm, options["dimension_numbers"] = _kernel_in_space_out(
                        eqn.params["dimension_numbers"])
                    op = _Op("conv", eqn, x, operand(w, _permute(perm)), options=options)
                else:
                    op = _Op("conv", eqn, x, operand(w), options=options)
        elif name == "dot_general":
            op = _dense(eqn, leaves, on_field, operand)
        elif name in ("mul", "add", "sub") and len(eqn.invars) == 2:
            op = _elementwise(eqn, leaves, on_field, operand)
        if op is None:
            refuse(eqn, used)
        op.out = eqn.outvars[0]
        if op.options.get("swapped") and not fold_transpose(op):
            refuse(eqn, used)
        if op.kind in ("conv", "matmul"):
            fold_bias(op)
        ops[k] = op
    _mark_declared(jaxpr, ops)
    field_shape = tuple(jaxpr.outvars[0].aval.shape)
    for op in ops.values():
        # braintrace relates an op to the hidden state it writes position by position:
        # a reshape between them (a dense layer on a flattened state) breaks its solve
        if not op.declare and tuple(op.out.aval.shape) != field_shape:
            refuse(op.eqn, operands[op.weight].leaves,
                   f" (its output {tuple(op.out.aval.shape)} reaches the field "
                   f"{field_shape} only through a reshape)")
    if kernel_order == "factored_patch_op" and _zero_recurrence(jaxpr, ops, skipped,
                                                                 weight_only):
        for op in ops.values():
            if "matrix" in op.options:
                op.options["factored"] = True
    return Plan(closed, ops, operands, weight_only, skipped, out_tree)


def reached_from(jaxpr, sources, *, cut=frozenset()) -> set:
    """The variables of `jaxpr` computed from the variables `sources` (themselves
    included); the eqns whose indices are in `cut` pass nothing on."""
    reached = set(sources)
    for k, eqn in enumerate(jaxpr.eqns):
        if k not in cut and any(not isinstance(v, jcore.Literal) and v in reached
                                for v in eqn.invars):
            reached.update(eqn.outvars)
    return reached


def _zero_recurrence(jaxpr, ops, skipped, weight_only) -> bool:
    """Whether the step's hidden-to-hidden Jacobian is structurally zero in braintrace's
    diagonal scope: no new hidden state (the field, the declared op outputs) depends on
    the old field except through a lifted convolution or dense product, whose outputs
    that scope treats as inputs of the transition. Element-wise lifted ops count as
    paths (conservatively: the check must never say zero where braintrace's Jacobian
    is not; `online._compile` checks the compiled graph again)."""
    # parameter-only eqns, a bias or transpose folded into a product, and the products
    cut = weight_only | skipped | {k for k, op in ops.items() if op.kind in ("conv", "matmul")}
    reached = reached_from(jaxpr, [jaxpr.invars[-1]], cut=cut)
    hidden = [v for v in jaxpr.outvars if not isinstance(v, jcore.Literal)]
    hidden += [op.out for op in ops.values() if op.declare]
    return not any(v in reached for v in hidden)


def _kernel_in_space_out(dimension_numbers):
    """The kernel order `(in, *space, out)` for a lifted convolution: the permutation
    of the model's kernel into it, and the convolution's dimension numbers reading it.

    braintrace's D_RTRL builds each step's per-position kernel trace in the order
    `(batch, *space_out, in, *kernel_space, out)` and transposes it into the kernel's
    own order; in this order that transpose is the identity, so the trace (B * S * |K|
    floats per layer, the bulk of D_RTRL's work) is not copied once more every step
    (benchmarks/RESULTS.md, "Where the lifted D_RTRL time goes")."""
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    d = len(rhs_spec) - 2
    perm = (rhs_spec[1], *rhs_spec[2:], rhs_spec[0])
    spec = jax.lax.ConvDimensionNumbers(tuple(lhs_spec), (d + 1, 0, *range(1, d + 1)),
                                        tuple(out_spec))
    return perm, spec


def _patch_options(params, kernel_shape):
    """A stride-1 convolution as a width-1 one over its input's patches: the patches'
    padding and taps, and the width-1 convolution's options (kernel `(taps * in, 1, ...,
    out)`, `_patch_kernel`).

    The patches are the input's shifted slices (cheap), concatenated on the channel axis,
    offset major, channel minor. braintrace's D_RTRL rule then extracts the patches of a
    width-1 convolution, instead of those of a width-k one with a convolution primitive
    that XLA:CPU runs slowly inside a loop. The per-position trace is the same, in the
    same layout; the values are the convolution's up to float rounding."""
    dims = params["dimension_numbers"]
    d = len(dims.rhs_spec) - 2
    _, spec = _kernel_in_space_out(dims)
    return {"taps": tuple(kernel_shape[a] for a in dims.rhs_spec[2:]),
            "patch_padding": tuple(tuple(p) for p in params["padding"]),
            "padding": ((0, 0),) * d, "dimension_numbers": spec}


def _patch_kernel(params):
    rhs_spec = params["dimension_numbers"].rhs_spec
    d = len(rhs_spec) - 2

    def transform(w):
        k = kernel_space_in_out(w, rhs_spec)  # (*taps, in, out)
        return k.reshape((-1,) + (1,) * d + (k.shape[-1],))
    return transform


def _matrix_layout(params):
    """Whether `_patch_op.patch_matmul` can stand for a stride-1 convolution: "first"
    or "last" (its channel axis, the same in its input and output, batch first and
    space in order), else None."""
    lhs, _, out = params["dimension_numbers"]
    if tuple(lhs) != tuple(out) or lhs[0] != 0:
        return None
    space = tuple(lhs[2:])
    if lhs[1] == 1 and space == tuple(range(2, len(lhs))):
        return "first"
    if lhs[1] == len(lhs) - 1 and space == tuple(range(1, len(lhs) - 1)):
        return "last"
    return None


def _patch_matrix(params):
    """The kernel as the `(out, taps * in)` matrix `patch_matmul` reads, columns in
    the patches' order (offset major, channel minor)."""
    rhs_spec = params["dimension_numbers"].rhs_spec

    def transform(w):
        k = kernel_space_in_out(w, rhs_spec)  # (*taps, in, out)
        return k.reshape((-1, k.shape[-1])).T
    return transform


def _patches(x, options):
    lhs_spec = options["dimension_numbers"].lhs_spec
    return shifted_slices(x, options["patch_padding"], options["taps"],
                          space_axes=lhs_spec[2:], channel_axis=lhs_spec[1])


def _permute(perm):
    def transform(w):
        return jnp.transpose(w, perm)
    return transform


def _reshape_to(shape, sign):
    def transform(b):
        b = jnp.reshape(b, shape)
        return -b if sign < 0 else b
    return transform


def _dense(eqn, leaves, on_field, operand):
    """`dot_general(x, w)` of a field input `(batch, in)` and a weight operand `(in, out)`
    or `(out, in)` giving `(batch, out)`: braintrace.matmul (a weight stored `(out, in)`
    becomes its transpose)."""
    a, b = eqn.invars
    (ca, cb), (ba, bb) = eqn.params["dimension_numbers"]
    if ba or bb:
        return None
    if on_field(a) and not leaves(a) and not on_field(b):
        x, w, cx, cw, swapped = a, b, ca, cb, False
    elif on_field(b) and not leaves(b) and not on_field(a):
        # w @ x.T (a vmapped equinox Linear), transposed just after (fold_transpose)
        x, w, cx, cw, swapped = b, a, cb, ca, True
    else:
        return None
    if x.aval.ndim != 2 or w.aval.ndim != 2 or tuple(cx) != (1,) or len(cw) != 1:
        return None
    transform = None if tuple(cw) == (0,) else _transpose
    return _Op("matmul", eqn, x, operand(w, transform), options={"swapped": swapped})


def _transpose(w):
    return jnp.transpose(w)


def _elementwise(eqn, leaves, on_field, operand):
    """`x * s`, `x + b`, `x - b` (s, b weight operands broadcast against the field
    value x) as `braintrace.einsum` with the weight operand broadcast to one state's
    shape: `'abc,bc->abc'` (a bias as the einsum of ones). Every weight axis is then an
    output axis: braintrace 0.2.6's D_RTRL counts a weight shared across output axes
    (`'abc,b->abc'`) once per position, and the broadcast's vjp sums them exactly."""
    a, b = eqn.invars
    if on_field(a) and not leaves(a) and not on_field(b) and not isinstance(b, jcore.Literal):
        x, w = a, b
    elif (eqn.primitive.name != "sub" and on_field(b) and not leaves(b)
          and not on_field(a) and not isinstance(a, jcore.Literal)):
        x, w = b, a
    else:
        return None
    xs, ws = tuple(x.aval.shape), tuple(w.aval.shape)
    if tuple(eqn.outvars[0].aval.shape) != xs or len(ws) > len(xs) or len(xs) > len(_LETTERS):
        return None
    if len(ws) == len(xs) and ws[0] != 1:
        return None  # a weight per batch entry is not a parameter of the step
    spec = _LETTERS[:len(xs)]
    sign = -1.0 if eqn.primitive.name == "sub" else 1.0
    kind = "scale" if eqn.primitive.name == "mul" else "bias"
    return _Op(kind, eqn, x, operand(w, _broadcast_to(xs[1:], sign)),
               options={"equation": f"{spec},{spec[1:]}->{spec}"})


def _broadcast_to(shape, sign):
    def transform(w):
        w = jnp.broadcast_to(w.reshape(w.shape[-len(shape):] if w.ndim > len(shape) else w.shape), shape)
        return -w if sign < 0 else w
    return transform


def _mark_declared(jaxpr, ops):
    """Declare a lifted op's output a hidden state when it reaches another lifted op's
    input (walking the jaxpr backwards)."""
    needed = set()
    for k in range(len(jaxpr.eqns) - 1, -1, -1):
        eqn = jaxpr.eqns[k]
        if k in ops:
            op = ops[k]
            op.declare = op.out in needed or eqn.outvars[0] in needed
            needed.add(op.x)
            continue
        if any(v in needed for v in eqn.outvars):
            needed.update(v for v in eqn.invars if not isinstance(v, jcore.Literal))


def _evaluate(plan: Plan, u, weights):
    """The plan's jaxpr on the field `u`, with the lifted ops as braintrace ETP ops on
    `weights` (one value per operand)."""
    import braintrace

    jaxpr = plan.jaxpr.jaxpr
    # the parameter inputs are never read: the weight operands stand for them
    env, read = environment(jaxpr, plan.jaxpr.consts, [])
    env[jaxpr.invars[-1]] = u
    for k, eqn in enumerate(jaxpr.eqns):
        if k in plan.weight_only or k in plan.skipped:
            continue
        op = plan.ops.get(k)
        if op is None:
            out = _bind(eqn, [read(v) for v in eqn.invars])
            env.update(zip(eqn.outvars, out))
            continue
        x, w = read(op.x), weights[op.weight]
        b = None if op.bias is None else weights[op.bias]
        if op.kind == "conv":
            o = op.options
            if "taps" in o:
                x = _patches(x, o)
            if "matrix" in o:
                y = patch_matmul(x, w, b, channel_last=o["matrix"] == "last",
                                 factored=o.get("factored", False))
            else:
                y = braintrace.conv(x, w, b, strides=o["window_strides"],
                                    padding=o["padding"], lhs_dilation=o["lhs_dilation"],
                                    rhs_dilation=o["rhs_dilation"],
                                    dimension_numbers=o["dimension_numbers"])
        elif op.kind == "matmul":
            y = braintrace.matmul(x, w, b)
        else:
            # jnp.ones, not ones_like: braintrace reads a ones_like(x) as a function of x
            operand = x if op.kind == "scale" else jnp.ones(x.shape, x.dtype)
            y = braintrace.einsum(op.options["equation"], operand, w)
            if op.kind == "bias":
                y = x + y
        y = y.astype(op.out.aval.dtype)
        if op.declare:
            y = hidden_state(y, f"lifted/{k}")
        env[op.out] = y
    return [read(v) for v in jaxpr.outvars]


def _operand_values(plan: Plan, params_leaves):
    """Every weight operand's value, from the parameter leaves (the parameter-only
    part of the jaxpr)."""
    jaxpr = plan.jaxpr.jaxpr
    env, read = environment(jaxpr, plan.jaxpr.consts, params_leaves)  # zip stops at u
    for k in sorted(plan.weight_only):
        eqn = jaxpr.eqns[k]
        env.update(zip(eqn.outvars, _bind(eqn, [read(v) for v in eqn.invars])))
    return [o.value(read) for o in plan.operands]


class _Static:
    """The lifted module's non-State parts, shared by its copies (braintrace and the
    estimators deep-copy modules; a jaxpr need not be copied)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __deepcopy__(self, memo):
        return self


class LiftedModule(brainstate.nn.Module):
    """A model's step as a brainstate module on braintrace ETP ops (module docstring).

    Arguments:
        fn: the model's step on a batch in the field layout, `fn(params, u) -> u_next`.
        params: the model's parameter PyTree.
        state_shape: one state `(C, *N)`, channel-first.
        dtype: the state dtype.
        channel_last: whether `fn` takes the field channel-last `(B, *N, C)` (a user's
            brainstate module) or channel-first `(B, C, *N)` (equinox modules, pairs).
        model: the model's description (for errors).
        conv_bias: see `lift_plan` ("vector" for D_RTRL, "state" for ES_D_RTRL).
        kernel_order: see `lift_plan`; default D_RTRL's entry of `KERNEL_ORDER`.

    Raises:
        LiftError: see `lift_plan`.
    """

    def __init__(self, fn: Callable, params: Any, state_shape: tuple[int, ...],
                 dtype: Any, *, channel_last: bool, model: str = "model",
                 conv_bias: str = "vector", kernel_order: str | None = None):
        super().__init__()
        state_shape = tuple(int(s) for s in state_shape)
        avals = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
        self._s = _Static(fn=fn, treedef=jax.tree_util.tree_structure(params), avals=avals,
                          paths=paths, channel_last=bool(channel_last), plans={}, model=model,
                          conv_bias=conv_bias, kernel_order=kernel_order or KERNEL_ORDER["d_rtrl"])
        self.num_spatial_dims = len(state_shape) - 1
        self.in_channels = self.out_channels = state_shape[0]
        self.field_channel_last = bool(channel_last)
        self.dtype = dtype
        plan = self._plan(self._field_shape((2,) + state_shape))
        self._s.reference = plan
        self._s.names = self._names(plan)
        values = _operand_values(plan, jax.tree_util.tree_leaves(params))
        self.weights = {name: brainstate.ParamState(v) for name, v in zip(self._s.names, values)}

    def _field_shape(self, batch_shape):
        if not self._s.channel_last:
            return tuple(batch_shape)
        b, c, *n = batch_shape
        return (b, *n, c)

    def _names(self, plan):
        names, seen = [], {}
        for o in plan.operands:
            base = "+".join(self._s.paths[i].lstrip(".") for i in sorted(o.leaves))
            base = base.replace(".", "/")
            seen[base] = seen.get(base, 0) + 1
            names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
        return names

    def _plan(self, field_shape):
        plan = self._s.plans.get(field_shape)
        if plan is None:
            u = jax.ShapeDtypeStruct(field_shape, self.dtype)
            plan = lift_plan(self._s.fn, self._s.avals, u, paths=self._s.paths,
                             model=self._s.model, conv_bias=self._s.conv_bias,
                             kernel_order=self._s.kernel_order)
            reference = getattr(self._s, "reference", None)
            if reference is not None and plan.operand_shapes() != reference.operand_shapes():
                raise LiftError(
                    f"emulator: expected the {self._s.model}'s weight operands not to depend "
                    f"on the batch size, got {plan.operand_shapes()} for a field "
                    f"{field_shape} and {reference.operand_shapes()} before"
                )
            self._s.plans[field_shape] = plan
        return plan

    @property
    def lifted_ops(self) -> list[tuple[str, str, bool]]:
        """`(kind, weight operand name, declared a hidden state)` per lifted op."""
        plan = self._s.reference
        return [(op.kind, self._s.names[op.weight], op.declare)
                for _, op in sorted(plan.ops.items(), key=lambda kv: kv[0])]

    # -- parameters ---------------------------------------------------------------------
    def operands(self, params: Any) -> list:
        """The weight operands' values for the model's `params`."""
        return _operand_values(self._s.reference, jax.tree_util.tree_leaves(params))

    def write_params(self, params: Any) -> None:
        """Set the module's ParamStates from the model's parameter PyTree."""
        for name, v in zip(self._s.names, self.operands(params)):
            self.weights[name].value = v

    def param_grads(self, params: Any, grads: dict) -> Any:
        """Gradients w.r.t. the weight operands (`{name: array}`) as gradients w.r.t. the
        model's parameters (the vjp of `operands` at `params`)."""
        _, vjp = jax.vjp(self.operands, params)
        # braintrace leaves out nothing here (an excluded weight is an error), but a
        # weight operand the loss does not reach has no entry
        cotangent = [grads[name] if name in grads else jnp.zeros_like(self.weights[name].value)
                     for name in self._s.names]
        return vjp(cotangent)[0]

    # -- the step ------------------------------------------------------------------------
    def _forward(self, u):
        """One step of a batched field in the field layout."""
        plan = self._plan(tuple(u.shape))
        # by name: brainstate may reorder the dict's entries
        weights = [self.weights[name].value for name in self._s.names]
        out = _evaluate(plan, u, weights)
        return jax.tree_util.tree_unflatten(plan.out_tree, out)

    def __call__(self, u):
        one = u.ndim == self.num_spatial_dims + 1
        x = u[None] if one else u
        if self._s.channel_last:
            x = jnp.moveaxis(x, 1, -1)
        y = self._forward(x)
        if self._s.channel_last:
            y = jnp.moveaxis(y, -1, 1)
        return y[0] if one else y
