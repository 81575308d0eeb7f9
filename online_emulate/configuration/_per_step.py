"""Configurations whose loss is one weighted term per network step."""

from __future__ import annotations

from typing import Optional

from jaxtyping import Array, Float

from .._frozen import frozen
from .._rollout import Events, weighted_rollout
from ._chain_fields import ChainConfiguration
from ._online_spec import OnlineSpec
from ._utils import batched, time_level

__all__ = ["PerStepConfiguration"]


@frozen(eq=False)
class PerStepConfiguration(ChainConfiguration):
    """A loss that is a weighted sum of one term per step of the network chain.

    With u_0 = data[:, 0] and R = num_rollout_steps:

        for t in 0 .. R-1:
            u_{t+1} = stepper(u_t)
            L += w[t] * step_loss(t, u_t, u_{t+1})
            if cut_bptt and (t+1) % cut_bptt_every == 0: u_{t+1} = stop_gradient(u_{t+1})
            if reset_every and (t+1) % reset_every == 0: u_{t+1} = data[:, t+1]

    A subclass defines only its fields (`num_rollout_steps`, `time_level_weights`,
    `cut_bptt`, `cut_bptt_every`, and its own options), the term `_step_loss`, and, where
    they apply, `_reset_every` (teacher forcing) and `_online_blocker` (why the terms do
    not suit online estimators). The BPTT loss and the `online_spec()` of the online
    estimators are both derived here from those three, so they cannot disagree.
    """

    #: teacher-forcing period (None: the chain runs freely)
    _reset_every = None

    @property
    def events(self) -> Events:
        """The chain's cuts (`cut_bptt`) and teacher-forcing resets."""
        return Events(cut_every=self._cuts.cut_every, reset_every=self._reset_every)

    def _step_loss(self, t, prev, nxt, data, *, ref_stepper=None, residuum_fn=None) -> Float[Array, ""]:
        """The unweighted term of step `t` on batches (targets carry no gradient)."""
        raise NotImplementedError

    def _online_blocker(self) -> Optional[str]:
        """None when every term depends on the parameters only through `u_{t+1}` and
        fixed targets (what online estimators need); otherwise the reason it does not."""
        return None

    def _why_not_online(self) -> str:
        return self._online_blocker() or super()._why_not_online()

    def _loss(self, stepper, data, *, ref_stepper, residuum_fn, scan):
        def term(t, prev, nxt):
            return self._step_loss(t, prev, nxt, data, ref_stepper=ref_stepper,
                                   residuum_fn=residuum_fn)

        loss, _ = weighted_rollout(
            batched(stepper), time_level(data, 0), self.time_level_weights, term=term,
            scan=scan, events=self.events, level=lambda t: time_level(data, t),
        )
        return loss

    def online_spec(self) -> OnlineSpec:
        """The per-step decomposition of the loss (the same terms, weights and events).

        Raises:
            ValueError: when the configuration's options make a term depend on more than
                the new state (see the configuration's docstring).
        """
        if self._online_blocker() is not None:
            return super().online_spec()  # raises, saying why
        events = self.events
        return OnlineSpec(
            num_steps=self.num_rollout_steps,
            weights=self.time_level_weights,
            reset_every=events.reset_every,
            cut_every=events.cut_every,
            uses_data_targets=self.num_time_levels > 1,
            uses_ref_stepper=self.needs_ref_stepper,
            uses_residuum_fn=self.needs_residuum_fn,
            step_loss=self._step_loss,
        )
