import jax
import optax
import pytest

from online_emulate.emulators import LinearStencil
from online_emulate.sample_data import advection_1d_periodic
from online_emulate.trainer import OnlineTrainer, _progress


@pytest.mark.parametrize("process, drawn", [(0, True), (1, False)])
def test_only_process_zero_draws_a_bar(monkeypatch, process, drawn):
    monkeypatch.setattr(jax, "process_index", lambda: process)
    bar = _progress.ProgressBar(total=10, initial=0, enabled=True, epochs_per_step=0.1)
    assert (bar.bar is not None) == drawn
    bar.close()


def test_online_trainer_draws_no_bar_off_process_zero(monkeypatch):
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    made = []
    original = _progress.ProgressBar.__init__

    def spy(self, **kwargs):
        original(self, **kwargs)
        made.append(self.bar)

    monkeypatch.setattr(_progress.ProgressBar, "__init__", spy)
    data = advection_1d_periodic(num_points=16, num_samples=2, temporal_horizon=9,
                                key=jax.random.PRNGKey(0))
    trainer = OnlineTrainer(optimizer=optax.sgd(1e-3), rollout_length=8, update_every=4,
                            reference_data=data, batch_size=2, progress_bar=True)
    trainer(LinearStencil(1, 1, 1, kernel_size=3, key=0), key=0)
    assert made == [None]


def test_online_trainer_repr_names_its_options_even_half_built():
    trainer = OnlineTrainer(optimizer=optax.sgd(1e-3), rollout_length=8, update_every=4,
                            reference_data=jax.numpy.zeros((2, 9, 1, 16)), batch_size=2)
    text = repr(trainer)
    assert text.startswith("OnlineTrainer(rollout_length=8, num_rollouts=1, update_every=4")
    assert "<unset>" not in text
    half = object.__new__(OnlineTrainer)
    assert repr(half).startswith("OnlineTrainer(rollout_length='<unset>'")
