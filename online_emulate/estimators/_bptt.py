"""Exact reverse-mode gradients through the rollout (optionally checkpointed)."""

from __future__ import annotations

import jax

from ._base import Estimator
from ._checkpoint_scan import sqrt_checkpoint_scan, step_checkpoint_scan

__all__ = ["BPTT"]

_SCANS = {None: jax.lax.scan, "step": step_checkpoint_scan, "sqrt": sqrt_checkpoint_scan}


class BPTT(Estimator):
    """Backpropagation through time: `jax.value_and_grad` of `configuration.loss`.

    Arguments:
        checkpoint: None (plain scan, memory O(T) step intermediates), "step"
            (`jax.checkpoint` per step: O(T) carries only) or "sqrt" (nested sqrt(T)
            segments: O(sqrt(T)) carries, about one extra forward pass). All three
            give the same gradient up to floating-point reassociation. Every
            configuration is supported, since the scan is injected through
            `configuration.loss(..., scan=...)`.

    Raises:
        ValueError: for any other `checkpoint`.
    """

    def __init__(self, *, checkpoint: str | None = None):
        if checkpoint not in _SCANS:
            raise ValueError(
                f"checkpoint: expected None, 'step' or 'sqrt', got {checkpoint!r}"
            )
        self._set(checkpoint=checkpoint)

    def _key(self):
        return (self.checkpoint,)

    def __repr__(self):
        return "BPTT()" if self.checkpoint is None else f"BPTT(checkpoint={self.checkpoint!r})"

    @property
    def scan(self):
        """The scan implementation handed to `configuration.loss`."""
        return _SCANS[self.checkpoint]

    def value_and_grad(self, configuration, apply, params, data, *, ref_stepper=None,
                       residuum_fn=None, emulator=None):
        """`(loss, d loss / d params)` of `configuration` with stepper `apply(params, .)`.

        Returns:
            `(loss, grads)`, grads with the structure of `params`.
        """
        scan = self.scan

        def loss_fn(p):
            return configuration.loss(
                lambda u: apply(p, u), data, ref_stepper=ref_stepper,
                residuum_fn=residuum_fn, scan=scan,
            )

        return jax.value_and_grad(loss_fn)(params)
