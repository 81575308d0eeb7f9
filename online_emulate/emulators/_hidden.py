"""Declaring inner activations as hidden states for eligibility-trace learning."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

__all__ = ["hidden_state", "declaring_hidden_states"]

_HANDLERS: list[Callable] = []


def hidden_state(value: Any, name: str | None = None) -> Any:
    """Mark `value`, an inner activation of a model's step, as a hidden state.

    braintrace's eligibility traces (`ETrace`) give a weight a trace only when the output
    of the ETP op that uses it (`braintrace.nn` layer, `braintrace.conv` / `matmul` /
    `element_wise`) reaches a hidden state directly. The field `u` is always one; in a
    deeper network, wrap the output of every inner ETP op (before its activation) in
    `hidden_state(...)`, as the built-in `ConvNet` does:

        h = hidden_state(self.conv1(u))   # the weight of conv1 now gets a trace
        u_next = self.conv2(jax.nn.relu(h))

    Outside an ETrace learner this is the identity (BPTT, ForwardRTRL, K-FAC, plain
    calls see no difference). Inside one, the value is stored in a
    `brainstate.HiddenState` created for it; declarations are matched by their order
    within one step, `name` only labels them.

    Arguments:
        value: the activation (an array).
        name: optional label for reports.

    Returns:
        `value` (or the hidden state's value holding it).
    """
    if not _HANDLERS:
        return value
    return _HANDLERS[-1](value, name)


@contextlib.contextmanager
def declaring_hidden_states(handler: Callable) -> Iterator[None]:
    """Route `hidden_state(value, name)` calls to `handler(value, name)` (for the
    recurrent wrapper that compiles a learner; nests)."""
    _HANDLERS.append(handler)
    try:
        yield
    finally:
        _HANDLERS.pop()
