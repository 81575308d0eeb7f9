"""Property tests: random shapes, dtypes, NaNs and argument values thrown at the
trainers, `value_and_grad` and the command line. Every call either works or raises
ValueError/TypeError whose message starts with the name of an argument ("name: ..."),
never another exception type. The distinct rejected inputs are counted (printed by the
last test; run with -s to see the number)."""

import re

import jax
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from online_emulate import value_and_grad
from online_emulate.cli import build_parser
from online_emulate.configuration import Supervised
from online_emulate.emulators import LinearStencil
from online_emulate.estimators import BPTT, TruncatedBPTT
from online_emulate.trainer import SupervisedTrainer

REJECTED: set = set()
# "name: ..." (the package's style) or "`name` ..." (the configurations' style)
NAMED = re.compile(r"^(-{0,2}[A-Za-z_][A-Za-z0-9_\-\[\]'\"]*:|`[A-Za-z_][A-Za-z0-9_]*`)")
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

DTYPES = [np.float32, np.float16, np.float64, np.int32, np.int8, np.bool_, np.complex64]
WEIRD = st.one_of(
    st.integers(-3, 5), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.none(), st.text(max_size=3), st.just([1]), st.just(1.5),
)


def _call(fn, what):
    try:
        return fn()
    except (ValueError, TypeError) as err:
        message = str(err)
        assert NAMED.match(message), f"{type(err).__name__} without an argument name: {message!r}"
        REJECTED.add(what)
        return None


@st.composite
def arrays(draw):
    ndim = draw(st.integers(1, 5))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(DTYPES))
    x = np.ones(shape, dtype)
    if np.issubdtype(dtype, np.inexact) and draw(st.booleans()):
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return x


@pytest.mark.slow
@SETTINGS
@given(data=arrays(), rollout=st.integers(1, 3), truncated=st.booleans(), pytree=st.booleans())
def test_value_and_grad_random_data(data, rollout, truncated, pytree):
    estimator = TruncatedBPTT(1) if truncated else BPTT()
    given_data = {"u": data} if pytree else data
    what = ("value_and_grad", data.shape, str(data.dtype), bool(np.isfinite(data).all()) if data.dtype.kind in "fc" else True, rollout, truncated, pytree)
    out = _call(lambda: value_and_grad(Supervised(rollout), LinearStencil(1, 1, 1), given_data, estimator=estimator), what)
    if out is not None:
        assert np.isfinite(out[0])


@pytest.mark.slow
@SETTINGS
@given(num_training_steps=WEIRD, batch_size=WEIRD, num_rollout_steps=WEIRD, steps_per_call=WEIRD,
       clip_grad_norm=WEIRD, data=arrays())
def test_trainer_random_arguments(num_training_steps, batch_size, num_rollout_steps, steps_per_call, clip_grad_norm, data):
    what = ("trainer", repr(num_training_steps), repr(batch_size), repr(num_rollout_steps), repr(steps_per_call),
            repr(clip_grad_norm), data.shape, str(data.dtype))

    def build_and_check():
        trainer = SupervisedTrainer(
            data, optimizer=optax.adam(1e-3), num_training_steps=num_training_steps, batch_size=batch_size,
            num_rollout_steps=num_rollout_steps, steps_per_call=steps_per_call, clip_grad_norm=clip_grad_norm,
            progress_bar=False,
        )
        # a 2-channel emulator never fits the data's shape: the call must fail by name
        # before anything is compiled
        with pytest.raises((ValueError, TypeError)) as info:
            trainer(LinearStencil(1, 2, 2), key=0)
        assert NAMED.match(str(info.value)), str(info.value)
        return trainer

    _call(build_and_check, what)


KEY_TRAINER = SupervisedTrainer(np.ones((2, 4, 1, 8), np.float32), optimizer=optax.sgd(0.0), num_training_steps=1,
                                batch_size=2, num_rollout_steps=1, progress_bar=False)


@pytest.mark.slow
@SETTINGS
@given(key=st.one_of(WEIRD, st.just(jax.random.PRNGKey(0)), st.just(jax.random.key(1)), st.just(np.zeros(3, np.uint32))))
def test_trainer_random_keys(key):
    KEY_TRAINER.reset()  # the compiled program is kept: only the first valid key compiles
    _call(lambda: KEY_TRAINER(LinearStencil(1, 1, 1), key=key), ("key", type(key).__name__, repr(key)))


OPTIONS = {
    "--steps": st.one_of(st.integers(-2, 3).map(str), st.text(max_size=3)),
    "--batch-size": st.integers(-2, 3).map(str),
    "--learning-rate": st.sampled_from(["1e-3", "0", "-1", "nan", "inf", "x"]),
    "--decay": st.sampled_from(["0.5", "0", "1", "2", "nan", "x"]),
    "--estimator": st.sampled_from(["bptt", "tbptt", "rtrl", "d_rtrl", "es_d_rtrl", "magic"]),
    "--configuration": st.sampled_from(["supervised", "diverted-chain", "residuum", "teacher-forcing", "nope"]),
    "--rollout-steps": st.integers(-1, 3).map(str),
    "--branch-steps": st.integers(-1, 4).map(str),
    "--num-points": st.integers(-1, 40).map(str),
    "--problem": st.sampled_from(["advection_1d", "burgers_1d", "nope"]),
    "--emulator": st.sampled_from(["linear", "convnet", "mlp"]),
    "--seed": st.sampled_from(["0", "-1", "x"]),
}


@pytest.mark.slow
@SETTINGS
@given(chosen=st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.just(None), max_size=5), data=st.data())
def test_cli_parser_random_arguments(chosen, data, capsys):
    from online_emulate.cli._main import _train_run_dict
    from online_emulate.cli._run import resolve_run

    argv = ["train"]
    for option in chosen:
        argv += [option, data.draw(OPTIONS[option])]
    what = ("cli",) + tuple(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "error" in err
        REJECTED.add(what)
        return
    # parsed: building every object (no training) works or names the option
    _call(lambda: resolve_run(_train_run_dict(args)), what)


@pytest.mark.slow
def test_zz_report_how_many_bad_inputs_were_tried():
    print(f"\nproperty tests: {len(REJECTED)} distinct bad inputs rejected with a named error")
    assert len(REJECTED) > 50
