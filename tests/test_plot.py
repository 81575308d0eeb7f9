"""Tests for online_emulate.plot: every figure is a real PNG; bad input raises."""

import types

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from online_emulate import configuration as cfg
from online_emulate import plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes=2000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes


def stand_in(name, **attributes):
    """An object whose class is called like a configuration, carrying plain attributes."""
    return type(name, (types.SimpleNamespace,), {})(**attributes)


def test_backend_untouched():
    before = matplotlib.get_backend()
    plot.plot_loss_history(np.ones(3), None, ax=Figure().subplots())
    assert matplotlib.get_backend() == before


def test_loss_history(tmp_path):
    path = tmp_path / "loss.png"
    assert plot.plot_loss_history({"BPTT": np.geomspace(1, 1e-3, 50), "ETrace": np.geomspace(1, 1e-2, 30)}, path) == path
    assert_png(path)
    assert_png(plot.plot_loss_history(np.linspace(1, 0.1, 10), tmp_path / "l2.png", log=False))
    fig = Figure()
    ax = fig.subplots()
    assert plot.plot_loss_history(np.ones(4), ax=ax) is fig
    with pytest.raises(ValueError, match="histories"):
        plot.plot_loss_history({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="histories"):
        plot.plot_loss_history(np.ones((2, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="path"):
        plot.plot_loss_history(np.ones(3))
    with pytest.raises(ValueError, match="ax"):
        plot.plot_loss_history(np.ones(3), tmp_path / "x.png", ax="axes")


def test_error_vs_step(tmp_path):
    path = tmp_path / "err.png"
    errors = {"R=1": np.geomspace(1e-3, 1, 100), "R=5": np.geomspace(1e-3, 0.3, 100)}
    assert plot.plot_error_vs_step(errors, path, ylabel="nRMSE") == path
    assert_png(path)
    with pytest.raises(ValueError, match=r"errors\['a'\]"):
        plot.plot_error_vs_step({"a": np.array([])}, tmp_path / "x.png")


def test_spacetime(tmp_path):
    t = np.arange(20)[:, None, None]
    x = np.linspace(0, 2 * np.pi, 32, endpoint=False)[None, None, :]
    ref = np.concatenate([np.sin(x - 0.1 * t), np.cos(x + 0.1 * t)], axis=1)  # (T, 2, N)
    pred = ref + 0.05 * np.cos(3 * x)
    path = tmp_path / "st.png"
    assert plot.plot_spacetime(ref, pred, path, channel=1) == path
    assert_png(path)
    assert_png(plot.plot_spacetime(ref[:, 0], pred[:, 0], tmp_path / "st2.png"))
    fig = Figure()
    axes = fig.subplots(1, 3)
    assert plot.plot_spacetime(ref, pred, ax=axes) is fig
    with pytest.raises(ValueError, match="slice"):
        plot.plot_spacetime(np.zeros((5, 1, 8, 8)), np.zeros((5, 1, 8, 8)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="prediction"):
        plot.plot_spacetime(ref, pred[:-1], tmp_path / "x.png")
    with pytest.raises(ValueError, match="channel"):
        plot.plot_spacetime(ref, pred, tmp_path / "x.png", channel=2)
    with pytest.raises(ValueError, match="ax"):
        plot.plot_spacetime(ref, pred, ax=fig.subplots())


def test_memory_vs_rollout(tmp_path):
    table = {
        "BPTT": {1: 2.0e6, 10: 1.9e7, 100: 1.9e8},
        "ETrace": {1: 2.0e6, 10: 2.1e6, 100: 2.2e6},
    }
    path = tmp_path / "mem.png"
    assert plot.plot_memory_vs_rollout(table, path) == path
    assert_png(path)
    with pytest.raises(ValueError, match="table"):
        plot.plot_memory_vs_rollout({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"table\['BPTT'\]\[1\]: expected a number > 0"):
        plot.plot_memory_vs_rollout({"BPTT": {1: 0.0}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="rollout lengths"):
        plot.plot_memory_vs_rollout({"BPTT": {0: 1.0}}, tmp_path / "x.png")


CONFIGURATIONS = {
    "supervised": cfg.Supervised(4, cut_bptt=True, cut_bptt_every=2),
    "final_only": cfg.Supervised(3, time_level_weights=np.array([0.0, 0.0, 1.0])),
    "branch_one": cfg.DivertedChainBranchOne(3, cut_div_chain=True),
    "diverted": cfg.DivertedChain(3, 2, cut_bptt=True),
    "post": cfg.MixChainPostPhysics(2, 2),
    "pre": cfg.MixChainPrePhysics(2, 1),
    "residuum": cfg.Residuum(3, cut_prev=True),
    "teacher": cfg.TeacherForcing(5, 2),
    "composite": cfg.Composite([cfg.Supervised(2), cfg.Residuum(2, cut_next=True)], [1.0, 0.5]),
}


@pytest.mark.parametrize("key", sorted(CONFIGURATIONS))
def test_configuration_schematic(tmp_path, key):
    path = tmp_path / f"{key}.png"
    assert plot.plot_configuration_schematic(CONFIGURATIONS[key], path) == path
    assert_png(path, min_bytes=8000)
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 400
    # non-trivial: many distinct colours, not a blank canvas
    assert np.unique(image.reshape(-1, image.shape[-1]), axis=0).shape[0] > 20


def test_configuration_schematic_into_axes_and_errors(tmp_path):
    fig = Figure()
    ax = fig.subplots()
    assert plot.plot_configuration_schematic(CONFIGURATIONS["teacher"], ax=ax) is fig
    assert len(ax.patches) > 10
    with pytest.raises(TypeError, match="configuration: expected one of .*Supervised"):
        plot.plot_configuration_schematic(stand_in("Supervised", num_rollout_steps=2), tmp_path / "x.png")

    class Longer(cfg.Supervised):
        """A user subclass is drawn like its library base class."""

    assert_png(plot.plot_configuration_schematic(Longer(3), tmp_path / "sub.png"))
    with pytest.raises(ValueError, match="configuration.time_level_weights"):
        # a subclass whose attributes break the drawing's assumptions
        bad = Longer(3)
        object.__setattr__(bad, "time_level_weights", np.ones(1))
        plot.plot_configuration_schematic(bad, tmp_path / "x.png")
    with pytest.raises(ValueError, match="path"):
        plot.plot_configuration_schematic(CONFIGURATIONS["supervised"])
    assert not (tmp_path / "x.png").exists()
