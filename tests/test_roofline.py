"""The roofline arithmetic of `benchmarks/_roofline.py` (no timing: the numbers are given)."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "_roofline.py"
_SPEC = importlib.util.spec_from_file_location("bench_roofline", _PATH)
roof = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(roof)


def test_memory_bound_program_is_limited_by_intensity_times_bandwidth():
    # 2e9 flop over 4e9 bytes: I = 0.5 flop/byte; with 20 GB/s the bound is 10 GFLOP/s,
    # under the 100 GFLOP/s peak; 2e9 flop at 10 GFLOP/s take 0.2 s, so 0.8 s is 25%
    r = roof.roofline(2e9, 4e9, 0.8, peak_gflops=100.0, peak_gbs=20.0)
    assert r["intensity"] == pytest.approx(0.5)
    assert r["bound_gflops"] == pytest.approx(10.0)
    assert r["bound_s"] == pytest.approx(0.2)
    assert r["gflops"] == pytest.approx(2.5)
    assert r["gbs"] == pytest.approx(5.0)
    assert r["fraction"] == pytest.approx(0.25)


def test_compute_bound_program_is_limited_by_the_peak():
    # I = 50 flop/byte: 50 * 20 = 1000 GFLOP/s exceeds the 100 peak, so the peak bounds;
    # 1e10 flop at 100 GFLOP/s take 0.1 s, and 0.4 s reach 25 GFLOP/s = 25%
    r = roof.roofline(1e10, 2e8, 0.4, peak_gflops=100.0, peak_gbs=20.0)
    assert r["bound_gflops"] == pytest.approx(100.0)
    assert r["bound_s"] == pytest.approx(0.1)
    assert r["fraction"] == pytest.approx(0.25)
    # the fraction is the least time over the measured time, whichever limit binds
    assert r["fraction"] == pytest.approx(max(1e10 / 100e9, 2e8 / 20e9) / 0.4)


def test_roofline_rejects_a_non_positive_input():
    with pytest.raises(ValueError, match="seconds: expected a positive number"):
        roof.roofline(1.0, 1.0, 0.0, peak_gflops=1.0, peak_gbs=1.0)


def test_xla_cost_reads_the_dict_the_list_and_the_compiled_program():
    n = 32
    compiled = jax.jit(lambda a, b: a @ b).lower(
        jnp.ones((n, n)), jnp.ones((n, n))).compile()
    flops, nbytes = roof.xla_cost(compiled)
    # XLA counts a product of two n x n matrices as 2 n^3 flops, and at least its two
    # float32 operands and its result as bytes
    assert flops == pytest.approx(2 * n ** 3)
    assert nbytes >= 3 * 4 * n * n
    assert roof.xla_cost([{"flops": 3.0, "bytes accessed": 4.0}]) == (3.0, 4.0)
    assert roof.xla_cost({"flops": 3.0, "bytes accessed": 4.0}) == (3.0, 4.0)
    with pytest.raises(ValueError, match="cost: expected"):
        roof.xla_cost([])
    with pytest.raises(ValueError, match="cost: expected"):
        roof.xla_cost({"flops": 1.0})
