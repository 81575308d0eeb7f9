"""The XLA compiler options of the library's compiled training programs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from online_emulate import _compile
from online_emulate._compile import CPU_COMPILER_OPTIONS, compiler_options, jit

cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU compiler options")


def _product(a, b):
    return jnp.tanh(a @ b)


def _operands():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return jax.random.normal(k1, (320, 78)), jax.random.normal(k2, (78, 26))


@cpu_only
def test_cpu_programs_get_the_library_options(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert compiler_options() == CPU_COMPILER_OPTIONS


@cpu_only
def test_a_users_xla_flags_setting_wins(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
    assert compiler_options() == {"xla_cpu_use_fusion_emitters": False}
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type= "
                                    "--xla_cpu_use_fusion_emitters=true")
    assert compiler_options() is None
    assert jit(_product).lower(*_operands()).compile().as_text() == \
        jax.jit(_product).lower(*_operands()).compile().as_text()


@cpu_only
def test_matrix_products_leave_ynnpack_values_unchanged(monkeypatch):
    """Under the library's options no matrix product goes to a YNNPACK fusion (the
    option's effect, read from the compiled program), and the values equal a float64
    numpy product to float32 rounding."""
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    a, b = _operands()
    ours = jit(_product).lower(a, b).compile()
    dots = [line for line in ours.as_text().splitlines() if " dot(" in line]
    assert dots and not any("ynn" in line for line in dots), dots
    exact = np.tanh(np.asarray(a, np.float64) @ np.asarray(b, np.float64))
    np.testing.assert_allclose(ours(a, b), exact, atol=2e-5)


def test_options_off_cpu_or_when_rejected(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setattr(_compile.jax, "default_backend", lambda: "gpu")
    assert compiler_options() is None
    monkeypatch.setattr(_compile.jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(_compile, "_probe", lambda backend, options: False)
    assert compiler_options() is None
    # a jit without options is jax's own
    np.testing.assert_allclose(jit(_product)(*_operands()), jax.jit(_product)(*_operands()))


@cpu_only
def test_an_unknown_option_is_detected_not_raised(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setattr(_compile, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option": "x"})
    assert _compile._accepted("cpu") is False
    assert compiler_options() is None
    # a rejected option drops out alone: the others are still passed
    monkeypatch.setattr(_compile, "CPU_COMPILER_OPTIONS", {
        "xla_cpu_no_such_option": "x", "xla_cpu_use_fusion_emitters": False})
    assert compiler_options() == {"xla_cpu_use_fusion_emitters": False}
