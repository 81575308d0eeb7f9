"""The emulator step as a brainstate recurrent module whose hidden state is the field."""

from __future__ import annotations

import brainstate
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..emulators import ConvNet

__all__ = ["RecurrentEmulator"]


class RecurrentEmulator(brainstate.nn.Module):
    """u_{t+1} = f_theta(u_t) with u a `brainstate.HiddenState`, for braintrace learners.

    The field is stored channel-last, `(B, *N, C)`, so that the ETP convolutions of the
    emulator write straight into it (braintrace's IO-dim traces need channel-last convs).
    For a `ConvNet` every inner layer output (before the activation) is declared as a
    `HiddenState` too: without it the first layers reach the field only through another
    ETP op and braintrace excludes their weights from the eligibility trace.

    Arguments:
        emulator: an `online_emulate.emulators` emulator (the same object used for BPTT;
            its `ParamState`s are shared, not copied).
        state_shape: the batched channel-first shape `(B, C, *N)` of the field.
        intermediate_states: declare inner ConvNet layer outputs as hidden states
            (default True). False reproduces braintrace's exclusion of inner weights.

    Calling `update(x)` (x is an ignored dummy input) advances the field by one step
    and returns the new field, channel-last.

    Raises:
        ValueError: if `state_shape` does not match the emulator's channels/dimensions.
    """

    def __init__(self, emulator, state_shape: tuple[int, ...], *, intermediate_states: bool = True):
        super().__init__()
        d = emulator.num_spatial_dims
        state_shape = tuple(int(s) for s in state_shape)
        if len(state_shape) != d + 2 or state_shape[1] != emulator.in_channels:
            raise ValueError(
                f"state_shape: expected (batch, {emulator.in_channels}, *space) with {d + 2} "
                f"axes, got {state_shape}"
            )
        if emulator.in_channels != emulator.out_channels:
            raise ValueError(
                "emulator: a recurrent step needs in_channels == out_channels, got "
                f"{emulator.in_channels} and {emulator.out_channels}"
            )
        self.emulator = emulator
        self.state_shape = state_shape
        self.intermediate_states = bool(intermediate_states)
        self.dtype = jnp.result_type(*[s.value.dtype for s in emulator.states(brainstate.ParamState).values()])

    @property
    def channel_last_shape(self) -> tuple[int, ...]:
        b, c, *n = self.state_shape
        return (b, *n, c)

    def init_state(self, batch_size=None, **kwargs):
        self.u = brainstate.HiddenState(jnp.zeros(self.channel_last_shape, self.dtype))
        emu = self.emulator
        if self.intermediate_states and isinstance(emu, ConvNet) and emu.depth > 1:
            b, *n, _ = self.channel_last_shape
            self.inner = [
                brainstate.HiddenState(jnp.zeros((b, *n, emu.hidden_channels), self.dtype))
                for _ in range(emu.depth - 1)
            ]
        else:
            self.inner = []

    def reset_state(self, batch_size=None, **kwargs):
        """Zero the field and the inner hidden states (in place: no new states)."""
        self.u.value = jnp.zeros_like(self.u.value)
        for h in self.inner:
            h.value = jnp.zeros_like(h.value)

    def _step(self, x: Float[Array, "batch *space channel"]) -> Float[Array, "batch *space channel"]:
        emu = self.emulator
        if isinstance(emu, ConvNet) and self.inner:
            h = x
            for i, layer in enumerate(emu.layers):
                h = layer(h)
                if i < emu.depth - 1:
                    self.inner[i].value = h
                    h = emu.activation(self.inner[i].value)
            return x + h if emu.residual else h
        return emu._forward(x)

    def update(self, dummy=None):
        nxt = self._step(self.u.value)
        self.u.value = nxt
        return nxt

    # -- helpers for channel-first callers ------------------------------------------
    def set_field(self, u: Float[Array, "batch channel *space"]) -> None:
        """Assign a channel-first batch to the hidden field."""
        self.u.value = jnp.moveaxis(jnp.asarray(u, self.dtype), 1, -1)

    def field(self) -> Float[Array, "batch channel *space"]:
        """The hidden field, channel-first."""
        return jnp.moveaxis(self.u.value, -1, 1)
