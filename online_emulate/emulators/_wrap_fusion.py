"""Periodic convolutions of user models without their wrap-padded copy.

pdequinox (and any model written the same way) pads periodically by concatenating
slices of a tensor to both of its ends, `concatenate([x[N-lo:], x, x[:hi]])` per spatial
axis, and then convolves the padded tensor with no padding of its own. Under
`matmul_convolutions` that padded tensor is a copy the size of the input, written and
read again at every layer, on top of the shifted copies of the matrix product: the
built-in `periodic_conv` rolls the unpadded input instead (benchmarks/RESULTS.md,
"APEBench's pipeline side by side": 1.9x the built-in twin's bytes per step).

`WrapTracker` watches the evaluation of a jaxpr: it records which values are slices of
which, which concatenates are periodic paddings of which tensor (along which axes, by
how much), and follows those through shape-only operations (broadcast_in_dim, reshape,
squeeze) that keep the padded axes whole. A convolution whose input is such a padding
and that pads nothing itself is then computed from the unpadded tensor, the way
`periodic_conv` does:

    y[n, s, o] = sum_{u, i} x[n, (s + u - lo) mod N, i] * w[u, i, o]

with lo = (k - 1) // 2 and lo + hi = k - 1 on every padded axis (the 'same' periodic
convolution). Anything else is left to the caller (im2col of the padded input). The
padding itself is still bound, so other users of it see it; when only the convolution
read it, XLA removes it as dead code.

Values are tracked by identity within one evaluation (a `WrapTracker` lives for one
call of the rewritten function), holding a reference to each tracked value so that its
id is not reused.
"""

from __future__ import annotations

import dataclasses
import math

import jax

from ._conv_layout import channel_last, from_channel_last, kernel_space_in_out
from ._ops import _shifted_matmul_conv

__all__ = ["WrapTracker"]


@dataclasses.dataclass(frozen=True)
class _Slice:
    """`value` is `source[..., start:stop, ...]` along `axis`, whole on every other axis."""

    source: object
    axis: int
    start: int
    stop: int


@dataclasses.dataclass(frozen=True)
class _Wrap:
    """`value` is `base` periodically padded by `pads[axis] = (lo, hi)` on some axes."""

    base: object
    pads: dict


def _as_slice(eqn, operand) -> _Slice | None:
    params = eqn.params
    if params.get("strides") is not None and any(s != 1 for s in params["strides"]):
        return None
    starts, limits = params["start_indices"], params["limit_indices"]
    cut = [a for a, (lo, hi, n) in enumerate(zip(starts, limits, operand.shape))
           if (lo, hi) != (0, n)]
    if len(cut) != 1:
        return None
    axis = cut[0]
    return _Slice(operand, axis, starts[axis], limits[axis])


class WrapTracker:
    """Periodic paddings seen so far in one jaxpr evaluation (see the module docstring)."""

    def __init__(self):
        self._slices: dict[int, tuple[object, _Slice]] = {}
        self._wraps: dict[int, tuple[object, _Wrap]] = {}

    def _slice_of(self, value) -> _Slice | None:
        found = self._slices.get(id(value))
        return found[1] if found is not None and found[0] is value else None

    def wrap_of(self, value) -> _Wrap | None:
        """The periodic padding `value` is known to be, or None."""
        found = self._wraps.get(id(value))
        return found[1] if found is not None and found[0] is value else None

    def observe(self, eqn, values, outs) -> None:
        """Record what `eqn` (bound to `values`, giving `outs`) tells about paddings."""
        name = eqn.primitive.name
        if name == "slice":
            found = _as_slice(eqn, values[0])
            if found is not None:
                self._slices[id(outs[0])] = (outs[0], found)
        elif name == "concatenate":
            self._concatenate(eqn.params["dimension"], values, outs[0])
        elif (inner := self.wrap_of(values[0]) if values else None) is not None:
            moved = _moved(name, eqn.params, values[0].shape, inner)
            if moved is not None:
                self._wraps[id(outs[0])] = (outs[0], moved)

    def _concatenate(self, axis, values, out) -> None:
        # [slices of x ending at N], x, [slices of x starting at 0]
        slices = [self._slice_of(v) for v in values]
        middle = [j for j, x in enumerate(values)
                  if all(s is not None and s.source is x and s.axis == axis
                         for i, s in enumerate(slices) if i != j)]
        if len(middle) != 1:
            return
        j = middle[0]
        x, n = values[j], values[j].shape[axis]
        before = [(s.start, s.stop) for s in slices[:j]]
        after = [(s.start, s.stop) for s in slices[j + 1:]]
        if not (_contiguous(before, end=n) and _contiguous(after, start=0)):
            return
        lo = sum(b - a for a, b in before)
        hi = sum(b - a for a, b in after)
        inner = self.wrap_of(x)
        if inner is None:
            inner = _Wrap(x, {})
        if axis in inner.pads or lo + hi == 0:
            # a second padding of one axis is not one periodic padding of the base
            return
        self._wraps[id(out)] = (out, _Wrap(inner.base, {**inner.pads, axis: (lo, hi)}))

    def convolution(self, values, params):
        """The convolution `conv_general_dilated(*values, **params)` computed from the
        unpadded tensor, or None when its input is no periodic 'same' padding."""
        lhs, rhs = values
        wrap = self.wrap_of(lhs)
        if wrap is None or any(p != (0, 0) for p in params["padding"]):
            return None
        lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
        space = lhs_spec[2:]
        if not set(wrap.pads) <= set(space):
            return None
        for a, u in zip(space, rhs_spec[2:]):
            k = rhs.shape[u]
            lo, hi = wrap.pads.get(a, (0, 0))
            if (lo, hi) != ((k - 1) // 2, k - 1 - (k - 1) // 2):
                return None
        y = _shifted_matmul_conv(channel_last(wrap.base, lhs_spec),
                                 kernel_space_in_out(rhs, rhs_spec))
        y = from_channel_last(y, out_spec)
        preferred = params.get("preferred_element_type")
        return y if preferred is None else y.astype(preferred)


def _contiguous(ranges, *, start=None, end=None) -> bool:
    """Whether `ranges` tile one interval (starting at `start` / ending at `end`)."""
    if not ranges:
        return True
    if any(b <= a for a, b in ranges) or any(b != c for (_, b), (c, _) in zip(ranges, ranges[1:])):
        return False
    return (start is None or ranges[0][0] == start) and (end is None or ranges[-1][1] == end)


def _moved(name, params, shape, wrap: _Wrap) -> _Wrap | None:
    """The padding an axis-keeping shape operation turns `wrap` into, or None."""
    if name == "broadcast_in_dim":
        dims = params["broadcast_dimensions"]
        out_shape = list(params["shape"])
        if any(out_shape[dims[a]] != shape[a] for a in wrap.pads):
            return None
        for a in wrap.pads:
            out_shape[dims[a]] = wrap.base.shape[a]
        base = _BIND[name].bind(wrap.base, **{**params, "shape": tuple(out_shape)})
        return _Wrap(base, {int(dims[a]): p for a, p in wrap.pads.items()})
    if name == "squeeze":
        gone = {d % len(shape) for d in params["dimensions"]}
        if gone & set(wrap.pads):
            return None
        kept = [a for a in range(len(shape)) if a not in gone]
        base = _BIND[name].bind(wrap.base, **params)
        return _Wrap(base, {kept.index(a): p for a, p in wrap.pads.items()})
    if name == "reshape" and params.get("dimensions") is None:
        # a padded axis survives a row-major reshape whole when some output axis has its
        # size and the same number of elements before it
        sizes = tuple(params["new_sizes"])
        places = {}
        for a in wrap.pads:
            match = [b for b in range(len(sizes))
                     if sizes[b] == shape[a] and math.prod(sizes[:b]) == math.prod(shape[:a])]
            if not match:
                return None
            places[a] = match[0]
        new = list(sizes)
        for a, b in places.items():
            new[b] = wrap.base.shape[a]
        base = _BIND[name].bind(wrap.base, **{**params, "new_sizes": tuple(new)})
        return _Wrap(base, {places[a]: p for a, p in wrap.pads.items()})
    return None


_BIND = {"broadcast_in_dim": jax.lax.broadcast_in_dim_p, "squeeze": jax.lax.squeeze_p,
         "reshape": jax.lax.reshape_p}
