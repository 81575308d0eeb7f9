"""General diverted chain: branches of B network steps compared with B reference steps."""

from __future__ import annotations

from .._checks import check_flag, check_int
from .._rollout import stop_gradient, weighted_rollout
from ._chain_fields import ChainConfiguration, Weights, option, options, weights_option
from ._utils import batched, time_level

__all__ = ["DivertedChain"]


@options
class DivertedChain(ChainConfiguration):
    """Branches of B network steps leave the main chain and are compared with the reference.

    With u_0 = data[:, 0], R = num_rollout_steps, B = num_branch_steps, P = ref_stepper:

        for t in 0 .. R-B:
            p = u_t;  r = stop_gradient(u_t) if cut_div_chain else u_t
            for b in 0 .. B-1:
                p = stepper(p);  r = P(r)
                L_t += bw[b] * loss(p, r)
                if cut_bptt and (t+b+1) % cut_bptt_every == 0: p = stop_gradient(p)
            L += w[t] * L_t
            u_{t+1} = stepper(u_t)
            if cut_bptt and (t+1) % cut_bptt_every == 0: u_{t+1} = stop_gradient(u_{t+1})

    There are R-B+1 branches; w[R-B+1:] are unused (w keeps length R, as upstream).
    B = R is `Supervised` on a trajectory made by P; B = 1 is
    `DivertedChainBranchOne`. Both loops run through the injected scan (a scan
    over branch starts whose body scans over branch steps), so the traced program
    does not grow with R or B. Reads only the initial condition.

    Arguments:
        num_rollout_steps: R >= 1 (default 1).
        num_branch_steps: 1 <= B <= R (default 1).
        time_level_loss, cut_bptt, cut_bptt_every, time_level_weights: keyword-only,
            as in `Supervised`.
        cut_div_chain: keyword-only; the branch reference starts from a
            stop_gradient'ed main-chain state (default False).
        branch_level_weights: keyword-only `(B,)` weights bw (default ones).

    Raises:
        ValueError: R, B or cut_bptt_every < 1, B > R, or weights of wrong shape.
        TypeError: time_level_loss is not a loss object, a flag is not a bool.
    """

    num_branch_steps: int = option(1, check_int, positional=True)
    cut_div_chain: bool = option(False, check_flag)
    time_level_weights: Weights = weights_option(
        "num_rollout_steps", meaning="one weight per rollout step, num_rollout_steps")
    branch_level_weights: Weights = weights_option(
        "num_branch_steps", meaning="one weight per branch step, num_branch_steps")

    _needs_ref_stepper = True
    _ref_stepper_use = "it makes the branch targets on the fly"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_branch_steps > self.num_rollout_steps:
            raise ValueError(
                f"num_branch_steps: expected at most num_rollout_steps = "
                f"{self.num_rollout_steps}, got {self.num_branch_steps}"
            )

    @property
    def num_time_levels(self) -> int:
        return 1

    def _loss(self, stepper, data, *, ref_stepper, residuum_fn, scan):
        network = batched(stepper)
        reference = batched(ref_stepper)

        def pair_step(pair):
            prediction, target = pair
            return network(prediction), reference(target)

        def branch_loss(t, start, _next_main):
            target_start = stop_gradient(start) if self.cut_div_chain else start
            loss, _ = weighted_rollout(
                pair_step, (start, target_start), self.branch_level_weights,
                term=lambda b, prev, nxt: self.time_level_loss(nxt[0], nxt[1]),
                scan=scan, events=self._cuts,
                # the branch clock continues the main-chain clock: cut when (t+b+1) % k == 0
                cut_offset=t,
                # only the network half of the branch is cut; the reference runs freely
                cut=lambda pair: (stop_gradient(pair[0]), pair[1]),
            )
            return loss

        num_branches = self.num_rollout_steps - self.num_branch_steps + 1
        loss, _ = weighted_rollout(
            network, time_level(data, 0), self.time_level_weights[:num_branches],
            term=branch_loss, scan=scan,
            events=self._cuts,
        )
        return loss

    def _why_not_online(self) -> str:
        return (
            "each branch term depends on num_branch_steps future network states, not on "
            "the current step alone (use DivertedChainBranchOne(cut_div_chain=True) for "
            "online estimators)."
        )
