"""The emulator step as a brainstate recurrent module whose hidden state is the field."""

from __future__ import annotations

import brainstate
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..emulators import adapt, declaring_hidden_states

__all__ = ["RecurrentEmulator"]


class RecurrentEmulator(brainstate.nn.Module):
    """u_{t+1} = f_theta(u_t) with u a `brainstate.HiddenState`, for braintrace learners.

    The field is stored in the layout the model's step writes: channel-last `(B, *N, C)`
    for the built-in emulators (braintrace's IO-dim traces need channel-last convs), the
    batch `(B, C, *N)` for a user's brainstate module. Every inner activation the model
    declares with `online_emulate.emulators.hidden_state(...)` becomes a
    `HiddenState` too (the built-in `ConvNet` declares each inner layer output): without
    it an inner layer reaches the field only through another ETP op and braintrace
    excludes its weight from the eligibility trace.

    Arguments:
        emulator: a brainstate module (the same object used for BPTT; its `ParamState`s
            are shared, not copied).
        state_shape: the batched channel-first shape `(B, C, *N)` of the field.
        intermediate_states: turn the model's `hidden_state` declarations into hidden
            states (default True). False ignores them (braintrace then excludes inner
            weights, which `compile_learner` reports).

    Calling `update(x)` (x is an ignored dummy input) advances the field by one step
    and returns the new field in its stored layout.

    Raises:
        TypeError: for a model whose operations cannot be lifted into braintrace ETP
            ops, naming the parameter, the operation and the estimators that work.
        ValueError: if `state_shape` does not match the emulator, or the emulator does
            not map the field to a field of the same shape.
    """

    def __init__(
        self,
        emulator: brainstate.nn.Module,
        state_shape: tuple[int, ...],
        *,
        intermediate_states: bool = True,
    ):
        super().__init__()
        state_shape = tuple(int(s) for s in state_shape)
        adapter = adapt(emulator, state_ndim=len(state_shape) - 1)
        module = adapter.recurrent_module()
        adapter.check_state(state_shape[1:], adapter_dtype(adapter), name="state_shape")
        self.emulator = module
        self.state_shape = state_shape
        self.intermediate_states = bool(intermediate_states)
        step, self._channel_last = adapter.field_step()
        # wrapped so brainstate's graph does not see the module a second time
        self._step_fn = lambda x: step(x)
        self.dtype = adapter_dtype(adapter)

    @property
    def channel_last_shape(self) -> tuple[int, ...]:
        b, c, *n = self.state_shape
        return (b, *n, c)

    @property
    def field_shape(self) -> tuple[int, ...]:
        return self.channel_last_shape if self._channel_last else self.state_shape

    def _declared(self) -> list[jax.ShapeDtypeStruct]:
        """Shapes of the activations the step declares, in order (one eager step on zeros;
        only parameters are read)."""
        found = []

        def record(value, name):
            found.append(jax.ShapeDtypeStruct(value.shape, value.dtype))
            return value

        with declaring_hidden_states(record):
            self._step_fn(jnp.zeros(self.field_shape, self.dtype))
        return found

    def init_state(self, batch_size: int | None = None, **kwargs) -> None:
        self.u = brainstate.HiddenState(jnp.zeros(self.field_shape, self.dtype))
        shapes = self._declared() if self.intermediate_states else []
        self.inner = [brainstate.HiddenState(jnp.zeros(s.shape, s.dtype)) for s in shapes]

    def reset_state(self, batch_size: int | None = None, **kwargs) -> None:
        """Zero the field and the inner hidden states (in place: no new states)."""
        self.u.value = jnp.zeros_like(self.u.value)
        for h in self.inner:
            h.value = jnp.zeros_like(h.value)

    def _step(self, x):
        if not self.inner:
            return self._step_fn(x)
        position = iter(range(len(self.inner)))

        def route(value, name):
            i = next(position, None)
            if i is None:
                raise ValueError(
                    "emulator: expected the hidden states declared when the learner was "
                    "compiled, got more (hidden_state(...) calls must not depend on the input)"
                )
            self.inner[i].value = value
            return self.inner[i].value

        with declaring_hidden_states(route):
            return self._step_fn(x)

    def update(self, dummy: jax.Array | None = None) -> jax.Array:
        nxt = self._step(self.u.value)
        self.u.value = nxt
        return nxt

    # -- helpers for channel-first callers ------------------------------------------
    def set_field(self, u: Float[Array, "batch channel *space"]) -> None:
        """Assign a channel-first batch to the hidden field."""
        u = jnp.asarray(u, self.dtype)
        self.u.value = jnp.moveaxis(u, 1, -1) if self._channel_last else u

    def field(self) -> Float[Array, "batch channel *space"]:
        """The hidden field, channel-first."""
        return jnp.moveaxis(self.u.value, -1, 1) if self._channel_last else self.u.value

    def to_channel_first(self, field: jax.Array) -> jax.Array:
        """A value of the stored field layout (e.g. a learner output), channel-first."""
        return jnp.moveaxis(field, -1, 1) if self._channel_last else field


def adapter_dtype(adapter):
    return jnp.result_type(*jax.tree_util.tree_leaves(adapter.params))
