"""Binomial checkpointed BPTT, the memory budget, the planner, and the checkpointed scans'
`reverse=` / `unroll=` (float32, tiny sizes; references: jax.lax.scan / plain BPTT)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from online_emulate.cli import main
from online_emulate.configuration import (Composite, DivertedChain, DivertedChainBranchOne,
                                          MixChainPostPhysics, MixChainPrePhysics, Residuum,
                                          Supervised, TeacherForcing)
from online_emulate.emulators import ConvNet, LinearStencil
from online_emulate.estimators import (BPTT, ETrace, binomial_checkpoint_scan,
                                       binomial_step_evaluations, compiled_temp_bytes,
                                       gradient_fidelity, plan, sqrt_checkpoint_scan,
                                       value_and_grad)
from online_emulate.estimators._fidelity import flat_vector

B, C, N = 3, 2, 8


def init_params():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {"kernel": 0.4 * jax.random.normal(k1, (C, C, 3)),
            "bias": 0.1 * jax.random.normal(k2, (C,))}


def apply(params, u):
    """One-sample periodic 1-D conv + tanh residual update, u: (C, N)."""
    shifted = jnp.stack([jnp.roll(u, s, axis=-1) for s in (1, 0, -1)], axis=-1)
    mixed = jnp.einsum("oik,ink->on", params["kernel"], shifted) + params["bias"][:, None]
    return u + 0.5 * jnp.tanh(mixed)


def ref_stepper(u):
    lap = jnp.roll(u, 1, axis=-1) - 2 * u + jnp.roll(u, -1, axis=-1)
    return u + 0.2 * lap + 0.1 * jnp.sin(u)


def residuum_fn(nxt, prev):
    return nxt - jax.vmap(ref_stepper)(prev)


KW = dict(ref_stepper=ref_stepper, residuum_fn=residuum_fn)

# Every configuration class, with cuts and weights where they change the loop.
CONFIGURATIONS = {
    "supervised": Supervised(6, cut_bptt=True, cut_bptt_every=4,
                             time_level_weights=jnp.linspace(0.5, 1.5, 6)),
    "teacher_forcing": TeacherForcing(6, 4),
    "branch_one": DivertedChainBranchOne(6, cut_div_chain=True),
    "diverted_chain": DivertedChain(6, 3, cut_bptt=True, cut_bptt_every=4),
    "mix_post": MixChainPostPhysics(4, 2),
    "mix_pre": MixChainPrePhysics(4, 2, cut_bptt=True, cut_bptt_every=3),
    "residuum": Residuum(6),
    "composite": Composite([Supervised(5), DivertedChain(5, 2, cut_div_chain=True)], [1.0, 0.5]),
}
# One fast representative runs by default; the rest are marked slow (one compile each).
FAST = {"supervised"}


def rel(a, b):
    a, b = flat_vector(a), flat_vector(b)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize(
    "name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in CONFIGURATIONS])
def test_binomial_equals_bptt_for_every_configuration(name):
    cfg = CONFIGURATIONS[name]
    data = jax.random.normal(jax.random.PRNGKey(1), (B, cfg.num_time_levels, C, N))
    params = init_params()
    ests = [BPTT()] + [BPTT(checkpoint="binomial", num_checkpoints=n) for n in (1, 2, 5)]

    @jax.jit
    def all_estimators(p, d):  # one compile for the four programs
        return [e.value_and_grad(cfg, apply, p, d, **KW) for e in ests]

    (l0, g0), *rest = all_estimators(params, data)
    assert max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(g0)) > 1e-4
    for (loss, g), est in zip(rest, ests[1:]):
        np.testing.assert_allclose(loss, l0, rtol=1e-6)
        assert rel(g, g0) <= 1e-5, est


def scan_case(scan, reverse, params=1.1):
    """A non-commutative scan with per-step PyTree outputs; scalar of carry and ys."""
    xs = {"a": jnp.linspace(0.1, 1.3, 7), "b": jnp.arange(7.0)}

    def f(c, x):
        c2 = jnp.sin(c * params) * x["a"] + 0.3 * c + x["b"]
        return c2, (c2.sum(), x["a"] * c2)

    c, ys = scan(f, jnp.arange(3.0), xs, reverse=reverse)
    return c, ys


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("scan", [functools.partial(binomial_checkpoint_scan, checkpoints=2),
                                  sqrt_checkpoint_scan], ids=["binomial", "sqrt"])
def test_checkpointed_scans_match_lax_scan_with_outputs_and_reverse(scan, reverse):
    ref = scan_case(jax.lax.scan, reverse)
    out = scan_case(scan, reverse)
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-6)

    def loss(p, s):
        c, (y0, y1) = scan_case(s, reverse, p)
        return c.sum() + (y0 * jnp.arange(7.0)).sum() + y1.sum()

    np.testing.assert_allclose(jax.grad(loss)(1.1, scan), jax.grad(loss)(1.1, jax.lax.scan),
                               rtol=1e-5)


def test_binomial_scan_without_xs_needs_length():
    f = lambda c, _: (c * 2.0, c)  # noqa: E731
    c, ys = binomial_checkpoint_scan(f, 1.0, None, length=4, checkpoints=2)
    assert float(c) == 16.0 and np.allclose(ys, [1, 2, 4, 8])
    with pytest.raises(ValueError, match="length"):
        binomial_checkpoint_scan(f, 1.0, None, checkpoints=2)
    with pytest.raises(ValueError, match="checkpoints"):
        binomial_checkpoint_scan(f, 1.0, None, length=4, checkpoints=0)


def test_sqrt_scan_passes_unroll_to_its_step_loops():
    jaxpr = jax.make_jaxpr(
        lambda c: sqrt_checkpoint_scan(lambda c, x: (c + x, None), c, jnp.arange(10.0), unroll=2)
    )(0.0)
    unrolls = [eqn.params["unroll"] for eqn in _eqns(jaxpr.jaxpr) if eqn.primitive.name == "scan"]
    # the per-step scans (inside the segments, and the remainder) unroll by 2
    assert unrolls.count(2) == 2, unrolls


def _eqns(jaxpr):
    """Every equation, recursing into sub-jaxprs (scan bodies, checkpoints)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for v in eqn.params.values():
            inner = getattr(v, "jaxpr", v)  # ClosedJaxpr -> Jaxpr
            if hasattr(inner, "eqns"):
                yield from _eqns(inner)


def test_step_evaluation_counts_closed_forms():
    assert binomial_step_evaluations(7, 7) == 14  # every step stored: forward + backward
    T = 9  # one checkpoint: the backward recomputes from the start for every step
    assert binomial_step_evaluations(T, 1) == T + T * (T + 1) // 2
    assert binomial_step_evaluations(50, 1, limit=100) is None


@pytest.mark.slow
def test_step_evaluation_counts_fall_with_checkpoints_and_match_bptt():
    """More checkpoints, fewer evaluations; and the count equals one taken through
    BPTT itself on a configuration (a host callback in the emulator)."""
    assert binomial_step_evaluations(7, 20) == 14
    counts = [binomial_step_evaluations(30, n) for n in (1, 2, 4, 8)]
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0]

    ticks = []

    def counted(p, u):
        jax.debug.callback(lambda _: ticks.append(1), u.sum())
        return apply(p, u)

    data = jnp.ones((1, 11, C, N))
    est = BPTT(checkpoint="binomial", num_checkpoints=3)
    jax.block_until_ready(jax.jit(lambda p, d: est.value_and_grad(Supervised(10), counted, p, d))(
        init_params(), data))
    assert len(ticks) == binomial_step_evaluations(10, 3)


@pytest.mark.slow
def test_binomial_temp_memory_does_not_grow_with_rollout_length():
    emu = ConvNet(1, 1, 1, hidden_channels=8, depth=2)
    data = jnp.ones((16, 1, 1, 64))
    est = BPTT(checkpoint="binomial", num_checkpoints=4)
    mem = {T: compiled_temp_bytes(est, DivertedChainBranchOne(T, cut_div_chain=True), emu, data,
                                  ref_stepper=lambda u: 0.5 * (u + jnp.roll(u, 1, axis=-1)))
           for T in (200, 2000)}
    plain = compiled_temp_bytes(BPTT(), DivertedChainBranchOne(200, cut_div_chain=True), emu, data,
                                ref_stepper=lambda u: 0.5 * (u + jnp.roll(u, 1, axis=-1)))
    assert mem[2000] <= 1.2 * mem[200], mem
    assert mem[200] < plain / 10, (mem, plain)  # and it is far below plain BPTT's


@pytest.mark.slow
def test_memory_budget_picks_the_cheapest_exact_scheme_that_fits():
    emu = LinearStencil(1, 1, 1, kernel_size=3)
    cfg = DivertedChainBranchOne(40, cut_div_chain=True)
    data = jax.random.normal(jax.random.PRNGKey(0), (8, 1, 1, 64))
    kw = dict(ref_stepper=lambda u: 0.5 * (u + jnp.roll(u, 1, axis=-1)))

    def temp(est):
        return compiled_temp_bytes(est, cfg, emu, data, **kw)

    plain, sqrt = temp(BPTT()), temp(BPTT(checkpoint="sqrt"))
    one, two = (temp(BPTT(checkpoint="binomial", num_checkpoints=n)) for n in (1, 2))
    assert one < two < sqrt < plain
    _, g0 = value_and_grad(cfg, emu, data, **kw)
    chosen = {}
    for budget in (plain, sqrt, (one + two) // 2 + (two - one) * 3, one):
        est = BPTT(memory_budget_bytes=int(budget))
        loss, g = value_and_grad(cfg, emu, data, estimator=est, **kw)
        assert rel(g, g0) <= 1e-5
        [choice] = est._choices.values()
        chosen[budget] = choice
        assert temp(choice) <= budget
    assert chosen[plain] == BPTT() and chosen[sqrt] == BPTT(checkpoint="sqrt")
    assert chosen[one] == BPTT(checkpoint="binomial", num_checkpoints=1)
    mid = chosen[(one + two) // 2 + (two - one) * 3]
    assert mid.checkpoint == "binomial" and mid.num_checkpoints >= 2
    # the largest count that fits: one more checkpoint would not
    bigger = BPTT(checkpoint="binomial", num_checkpoints=mid.num_checkpoints + 1)
    assert temp(bigger) > (one + two) // 2 + (two - one) * 3
    with pytest.raises(ValueError, match=rf"memory_budget_bytes >= {one}\b"):
        value_and_grad(cfg, emu, data, estimator=BPTT(memory_budget_bytes=one - 1), **kw)


@pytest.mark.slow
def test_plan_lists_every_estimator_and_matches_the_budget_choice():
    emu = LinearStencil(1, 1, 1, kernel_size=3)
    cfg = Supervised(12)
    data = jnp.zeros((4, 13, 1, 32))
    budget = compiled_temp_bytes(BPTT(checkpoint="binomial", num_checkpoints=3), cfg, emu, data)
    p = plan(cfg, emu, data, budget)
    names = [r.estimator for r in p.rows]
    assert names[:3] == ["BPTT()", "BPTT(checkpoint='step')", "BPTT(checkpoint='sqrt')"]
    assert names[3].startswith("BPTT(checkpoint='binomial'")
    assert {"TruncatedBPTT(1)", "ETrace('d_rtrl')"} <= set(names)
    assert any(n.startswith("ForwardRTRL") for n in names)
    for r in p.rows:
        if r.temp_bytes is not None:
            assert r.fits == (r.temp_bytes <= budget)
    assert p.choice.checkpoint == "binomial" and p.choice.num_checkpoints >= 3
    est = BPTT(memory_budget_bytes=budget)
    value_and_grad(cfg, emu, data, estimator=est)
    assert list(est._choices.values()) == [p.choice]
    binomial_row = p.rows[3]
    assert binomial_row.recompute == binomial_step_evaluations(12, p.choice.num_checkpoints) / 12
    text = str(p)
    assert "ETrace('d_rtrl')" in text and repr(p.choice) in text
    # configurations without a per-step loss: the online rows say unsupported
    p2 = plan(DivertedChain(3, 2), emu, jnp.zeros((2, 1, 1, 16)), 10**9, ref_stepper=ref_stepper)
    online = [r for r in p2.rows if not r.estimator.startswith("BPTT")]
    assert online and all(not r.supported and "unsupported" in r.note for r in online)
    assert p2.choice == BPTT()


@pytest.mark.slow
def test_gradient_fidelity_and_value_and_grad_accept_binomial():
    emu = ConvNet(1, 1, 1, hidden_channels=3, depth=2, residual=True)
    data = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 1, 16))
    rows = gradient_fidelity(emu, lambda T: Supervised(T), data,
                             estimators=[BPTT(checkpoint="binomial", num_checkpoints=2)],
                             rollout_lengths=[5])
    assert rows[0]["rel_error"] <= 1e-5 and rows[0]["estimator"].startswith("BPTT(checkpoint='binomial'")


def test_bad_options_name_the_argument():
    with pytest.raises(ValueError, match="num_checkpoints: expected an int >= 1 with checkpoint="):
        BPTT(checkpoint="binomial")
    with pytest.raises(ValueError, match="num_checkpoints"):
        BPTT(checkpoint="binomial", num_checkpoints=0)
    with pytest.raises(ValueError, match="num_checkpoints"):
        BPTT(num_checkpoints=4)
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        BPTT(memory_budget_bytes=0)
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        BPTT(checkpoint="sqrt", memory_budget_bytes=10**6)
    with pytest.raises(ValueError, match="checkpoint"):
        BPTT(checkpoint="revolve")
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        plan(Supervised(2), LinearStencil(1, 1, 1), jnp.zeros((1, 3, 1, 8)), -5)
    with pytest.raises(ValueError, match="scan"):
        BPTT(memory_budget_bytes=100).scan
    assert BPTT(checkpoint="binomial", num_checkpoints=3) == BPTT(checkpoint="binomial", num_checkpoints=3)
    assert BPTT(checkpoint="binomial", num_checkpoints=3) != BPTT(checkpoint="binomial", num_checkpoints=4)
    assert repr(BPTT(memory_budget_bytes=100)) == "BPTT(memory_budget_bytes=100)"


@pytest.mark.slow
def test_cli_plan_prints_the_table(capsys):
    code = main(["plan", "--memory-budget", "64K", "--problem", "advection_1d", "--num-points", "16",
                 "--batch-size", "2", "--rollout-steps", "8", "--emulator", "linear"])
    out = capsys.readouterr().out
    assert code == 0
    assert "choice (exact, fits, least recomputation): BPTT" in out and "ETrace('d_rtrl')" in out


def test_cli_plan_rejects_bad_budget(capsys):
    with pytest.raises(SystemExit) as info:
        main(["plan", "--memory-budget", "lots"])
    assert info.value.code == 2
    assert "--memory-budget" in capsys.readouterr().err
