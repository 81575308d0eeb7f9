"""Schematic drawing of a training configuration (what the loss is made of).

The drawer is chosen by the configuration's class (subclasses of a library
configuration are drawn like it); the drawing reads the configuration's attributes.

Visual language:

* circles on the top row: the main chain; `u_0` (grey square) comes from the data,
  `û_t` are network outputs, blue arrows are network steps `f`;
* green arrows / green nodes: reference-stepper (physics) steps `P`;
* diverted chains with branches longer than one step: each branch is drawn as its own
  block, starting from a dotted copy of the main-chain state it branches off;
* grey squares: data (reference trajectory) time levels;
* red circles: loss terms (labelled with their weight when weights are not all 1;
  zero-weight terms are omitted); `R` marks a residuum loss;
* grey dashed segments beside an edge: the gradient (cotangent) along that edge is cut
  by a `stop_gradient`.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyBboxPatch

from .._checks import check_int
from ..configuration import (
    BaseConfiguration,
    Composite,
    DivertedChain,
    DivertedChainBranchOne,
    MixChainPostPhysics,
    MixChainPrePhysics,
    Residuum,
    Supervised,
    TeacherForcing,
)
from ._figure import check_target, finish, new_figure

_NET = "#1f5fbf"
_PHYS = "#2e8b3d"
_DATA = "#8c8c8c"
_LOSS = "#c8322d"
_CUT = "#9a9a9a"
_R_NODE = 0.2
_R_LOSS = 0.16


class _Drawer:
    """Lays out nodes, edges and losses in data coordinates and draws them on `ax`
    (`ax=None`: a dry run that only validates and measures the layout)."""

    def __init__(self, ax):
        self.ax = ax
        self.xmax = 0.0
        self.ymin = 0.0
        self.ymax = 0.0

    def _extent(self, x, y):
        self.xmax = max(self.xmax, x)
        self.ymin = min(self.ymin, y)
        self.ymax = max(self.ymax, y)

    def node(self, x, y, label, kind):
        """kind: 'net' (network output), 'copy' (a branch's copy of a main-chain
        state), 'phys' (reference stepper output) or 'data'."""
        self._extent(x, y)
        if self.ax is None:
            return
        if kind == "data":
            patch = FancyBboxPatch(
                (x - _R_NODE, y - _R_NODE), 2 * _R_NODE, 2 * _R_NODE,
                boxstyle="round,pad=0.0,rounding_size=0.04", facecolor="#e6e6e6",
                edgecolor=_DATA, linewidth=1.2, zorder=3,
            )
        else:
            color = _PHYS if kind == "phys" else _NET
            patch = Circle(
                (x, y), _R_NODE, facecolor="white", edgecolor=color, linewidth=1.6,
                linestyle=":" if kind == "copy" else "-", zorder=3,
            )
        self.ax.add_patch(patch)
        self.ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=4)

    def edge(self, a, b, kind, *, cut=False, label=None, shrink=_R_NODE):
        """Arrow from point a to point b; kind 'net', 'phys' or 'data'."""
        if self.ax is None:
            return
        (x0, y0), (x1, y1) = a, b
        d = np.array([x1 - x0, y1 - y0], dtype=float)
        length = np.hypot(*d)
        u = d / length
        start = np.array([x0, y0]) + u * shrink
        end = np.array([x1, y1]) - u * shrink
        color = {"net": _NET, "phys": _PHYS, "data": _DATA}[kind]
        self.ax.annotate(
            "", xy=end, xytext=start, zorder=2,
            arrowprops=dict(arrowstyle="-|>", color=color, linewidth=1.4,
                            shrinkA=0, shrinkB=0, mutation_scale=11),
        )
        normal = np.array([-u[1], u[0]])
        if label:
            mid = (start + end) / 2 + 0.13 * normal
            self.ax.text(*mid, label, color=color, fontsize=8, ha="center", va="center")
        if cut:
            self._cut(start, end, normal)

    def _cut(self, start, end, normal):
        if self.ax is None:
            return
        offset = -0.11 * normal
        s, e = start + offset, end + offset
        self.ax.add_line(Line2D([s[0], e[0]], [s[1], e[1]], color=_CUT, linestyle=(0, (3, 2)),
                                linewidth=1.6, zorder=2))

    def loss(self, x, y, links, *, weight=None, label="L"):
        """A loss circle at (x, y) connected to the points in `links` ((point, cut))."""
        self._extent(x, y)
        if self.ax is None:
            return
        for (px, py), cut in links:
            d = np.array([px - x, py - y], dtype=float)
            u = d / np.hypot(*d)
            start = np.array([x, y]) + u * _R_LOSS
            end = np.array([px, py]) - u * _R_NODE
            self.ax.add_line(Line2D([start[0], end[0]], [start[1], end[1]], color=_LOSS,
                                    linewidth=0.9, alpha=0.7, zorder=1))
            if cut:
                self._cut(start, end, np.array([-u[1], u[0]]))
        self.ax.add_patch(Circle((x, y), _R_LOSS, facecolor="#fbe3e2", edgecolor=_LOSS,
                                 linewidth=1.3, zorder=3))
        self.ax.text(x, y, label, ha="center", va="center", fontsize=8, color=_LOSS, zorder=4)
        if weight is not None:
            self.ax.text(x + _R_LOSS + 0.04, y, f"{weight:g}", ha="left", va="center",
                         fontsize=7, color=_LOSS)

    def caption(self, x, y, text):
        if self.ax is not None:
            self.ax.text(x, y, text, ha="left", va="bottom", fontsize=9, fontweight="bold")
        # rough text width in data units (1 unit ~ 1.1 inch, 9 pt characters)
        self._extent(x + 0.075 * len(text), y + 0.3)


def _count(cfg, name, default, minimum=1):
    value = getattr(cfg, name, default)
    if value is None:
        value = default
    return check_int(f"configuration.{name}", value, minimum=minimum,
                     meaning=f"to draw {type(cfg).__name__}")


def _weights(cfg, n, name="time_level_weights"):
    """n loss weights (None entries mean 'draw without a weight label')."""
    raw = getattr(cfg, name, None)
    if raw is None:
        return np.ones(n)
    w = np.ravel(np.asarray(raw, dtype=float))
    if w.size < n:
        raise ValueError(
            f"configuration.{name}: expected at least {n} weights to draw "
            f"{type(cfg).__name__}, got {w.size}"
        )
    return w[:n]


def _show_weights(w):
    return not np.allclose(w, 1.0)


def _cut_edges(cfg, num_steps):
    """Main-chain edges k -> k+1 whose gradient is cut by cut_bptt (1 <= k < R)."""
    if not getattr(cfg, "cut_bptt", False):
        return set()
    every = _count(cfg, "cut_bptt_every", 1)
    return {k for k in range(1, num_steps) if k % every == 0}


def _main_chain(d, y, num_net, *, cuts=(), skip=(), start=0, x0=0.0, first="data",
                prefix=r"\hat u"):
    """Network chain from x0+start to x0+start+num_net; returns node positions."""
    points = {}
    if first is not None:
        d.node(x0 + start, y, rf"$u_{{{start}}}$" if first == "data" else
               rf"$\tilde u_{{{start}}}$", first)
        points[start] = (x0 + start, y)
    for k in range(start, start + num_net):
        d.node(x0 + k + 1, y, rf"${prefix}_{{{k + 1}}}$", "net")
        points[k + 1] = (x0 + k + 1, y)
        if k not in skip:
            d.edge((x0 + k, y), (x0 + k + 1, y), "net", cut=k in cuts, label="f")
    return points


def _data_losses(d, y, main_points, levels, weights, x0=0.0):
    show = _show_weights(weights)
    y_data = y - 1.6
    for w, t in zip(weights, levels):
        d.node(x0 + t, y_data, rf"$u_{{{t}}}$", "data")
        if w != 0:
            d.loss(x0 + t, y - 0.8, [(main_points[t], False), ((x0 + t, y_data), False)],
                   weight=w if show else None)


def _draw_supervised(d, cfg, y):
    R = _count(cfg, "num_rollout_steps", 1)
    pts = _main_chain(d, y, R, cuts=_cut_edges(cfg, R))
    _data_losses(d, y, pts, range(1, R + 1), _weights(cfg, R))


def _draw_teacher_forcing(d, cfg, y):
    R = _count(cfg, "num_rollout_steps", 1)
    k = getattr(cfg, "reset_every", None)
    resets = set() if k is None else {t for t in range(1, R) if t % _count(cfg, "reset_every", 1) == 0}
    pts = _main_chain(d, y, R, cuts=_cut_edges(cfg, R), skip=resets)
    _data_losses(d, y, pts, range(1, R + 1), _weights(cfg, R))
    for t in sorted(resets):
        # the chain restarts from the data level t: no gradient crosses the reset
        d.edge((t, y - 1.6), (t + 1, y), "net", label="f")
        d._cut(np.array([t + _R_NODE, y]), np.array([t + 1 - _R_NODE, y]), np.array([0, 1]))


def _draw_diverted(d, cfg, y, branch_one):
    R = _count(cfg, "num_rollout_steps", 1)
    B = 1 if branch_one else _count(cfg, "num_branch_steps", 1)
    if B > R:
        raise ValueError(
            f"configuration.num_branch_steps: expected <= num_rollout_steps ({R}) to draw "
            f"DivertedChain, got {B}"
        )
    cut_div = bool(getattr(cfg, "cut_div_chain", False))
    cuts = _cut_edges(cfg, R)
    num_branches = R - B + 1
    w = _weights(cfg, num_branches)
    bw = _weights(cfg, B, "branch_level_weights") if not branch_one else np.ones(1)
    show = _show_weights(w) or _show_weights(bw)
    if B == 1:
        # the one-step branch prediction is the main chain itself: compact drawing
        pts = _main_chain(d, y, R, cuts=cuts)
        for k in range(R):
            if w[k] == 0:
                continue
            d.node(k + 1, y - 1.6, rf"$\tilde u_{{{k + 1}}}$", "phys")
            d.edge((k, y), (k + 1, y - 1.6), "phys", cut=cut_div or k in cuts, label="P")
            d.loss(k + 1, y - 0.8, [(pts[k + 1], False), ((k + 1, y - 1.6), False)],
                   weight=w[k] if show else None)
        return
    # B > 1: the main chain only provides the starting points u_0 .. u_{R-B}; each
    # branch k runs B network steps and B reference steps from its own copy of u_k.
    _main_chain(d, y, R - B, cuts=cuts)
    for k in range(num_branches):
        y_net = y - 1.2 - 2.5 * k
        y_ref = y_net - 1.6
        y_mid = y_net - 0.8
        label = r"$u_0$" if k == 0 else rf"$\hat u_{{{k}}}$"
        d.node(k, y_mid, label, "data" if k == 0 else "copy")
        for b in range(1, B + 1):
            j = k + b
            d.node(j, y_net, rf"$\hat u_{{{j}}}$", "net")
            d.node(j, y_ref, rf"$\tilde u_{{{j}}}$", "phys")
            net_src = (k, y_mid) if b == 1 else (j - 1, y_net)
            ref_src = (k, y_mid) if b == 1 else (j - 1, y_ref)
            d.edge(net_src, (j, y_net), "net", cut=(j - 1) in cuts, label="f")
            d.edge(ref_src, (j, y_ref), "phys",
                   cut=b == 1 and (cut_div or (j - 1) in cuts), label="P")
            weight = w[k] * bw[b - 1]
            if weight != 0:
                d.loss(j, y_mid, [((j, y_net), False), ((j, y_ref), False)],
                       weight=weight if show else None)


def _draw_residuum(d, cfg, y):
    R = _count(cfg, "num_rollout_steps", 1)
    pts = _main_chain(d, y, R, cuts=_cut_edges(cfg, R))
    w = _weights(cfg, R)
    show = _show_weights(w)
    cut_prev = bool(getattr(cfg, "cut_prev", False))
    cut_next = bool(getattr(cfg, "cut_next", False))
    for t in range(R):
        if w[t] != 0:
            d.loss(t + 0.5, y - 0.9, [(pts[t], cut_prev), (pts[t + 1], cut_next)],
                   weight=w[t] if show else None, label=r"$\mathcal{R}$")


def _draw_mix_post(d, cfg, y):
    R = _count(cfg, "num_rollout_steps", 1)
    P = _count(cfg, "num_post_physics_steps", 1)
    pts = _main_chain(d, y, R, cuts=_cut_edges(cfg, R))
    for k in range(R, R + P):
        d.node(k + 1, y, rf"$\tilde u_{{{k + 1}}}$", "phys")
        d.edge((k, y), (k + 1, y), "phys", label="P")
        pts[k + 1] = (k + 1, y)
    _data_losses(d, y, pts, range(1, R + P + 1), _weights(cfg, R + P))


def _draw_mix_pre(d, cfg, y):
    R = _count(cfg, "num_rollout_steps", 1)
    P = _count(cfg, "num_pre_physics_steps", 1)
    d.node(0, y, r"$u_0$", "data")
    pts = {0: (0, y)}
    for k in range(P):
        d.node(k + 1, y, rf"$\tilde u_{{{k + 1}}}$", "phys")
        d.edge((k, y), (k + 1, y), "phys", label="P")
        pts[k + 1] = (k + 1, y)
    cuts = {P + c for c in _cut_edges(cfg, R)}
    pts.update(_main_chain(d, y, R, start=P, first=None, cuts=cuts))
    raw = getattr(cfg, "time_level_weights", None)
    n_all = R + P
    if raw is not None and np.size(raw) == n_all:
        _data_losses(d, y, pts, range(1, n_all + 1), _weights(cfg, n_all))
    else:
        _data_losses(d, y, pts, range(P + 1, n_all + 1), _weights(cfg, R))


_DRAWERS = {
    Supervised: _draw_supervised,
    TeacherForcing: _draw_teacher_forcing,
    DivertedChain: lambda d, c, y: _draw_diverted(d, c, y, branch_one=False),
    DivertedChainBranchOne: lambda d, c, y: _draw_diverted(d, c, y, branch_one=True),
    Residuum: _draw_residuum,
    MixChainPostPhysics: _draw_mix_post,
    MixChainPrePhysics: _draw_mix_pre,
}
SUPPORTED = tuple(cls.__name__ for cls in _DRAWERS) + ("Composite",)


def _check_supported(cfg) -> None:
    if not isinstance(cfg, (Composite, *_DRAWERS)):
        raise TypeError(
            f"configuration: expected one of online_emulate.configuration's "
            f"{', '.join(SUPPORTED)}, got {type(cfg).__name__}"
        )


def _drawer(cfg):
    # the most specific library class in the configuration's MRO decides
    return next(_DRAWERS[klass] for klass in type(cfg).__mro__ if klass in _DRAWERS)


def _describe(cfg) -> str:
    name = type(cfg).__name__
    parts = []
    for attr in ("num_rollout_steps", "num_branch_steps", "num_post_physics_steps",
                 "num_pre_physics_steps", "reset_every"):
        value = getattr(cfg, attr, None)
        if value is not None:
            parts.append(f"{attr}={value}")
    for flag in ("cut_bptt", "cut_div_chain", "cut_prev", "cut_next"):
        if getattr(cfg, flag, False):
            parts.append(flag + (f"(every {cfg.cut_bptt_every})" if flag == "cut_bptt"
                                 and getattr(cfg, "cut_bptt_every", 1) != 1 else ""))
    return f"{name}(" + ", ".join(parts) + ")"


def _parts(cfg):
    for attr in ("configurations", "configs", "parts"):
        parts = getattr(cfg, attr, None)
        if parts is not None:
            parts = list(parts)
            if parts:
                return parts
    raise ValueError(
        "configuration: expected a Composite with a non-empty configurations sequence "
        "to draw, got none"
    )


def _draw_any(d, cfg, y, depth=0):
    _check_supported(cfg)
    if isinstance(cfg, Composite):
        if depth > 0:
            raise ValueError("configuration: expected a Composite of non-Composite parts to draw, "
                             "got a nested Composite")
        parts = _parts(cfg)
        weights = getattr(cfg, "weights", None)
        weights = np.ones(len(parts)) if weights is None else np.ravel(np.asarray(weights, float))
        if weights.size != len(parts):
            raise ValueError(
                f"configuration.weights: expected one weight per part ({len(parts)}), "
                f"got {weights.size}"
            )
        for part, weight in zip(parts, weights):
            d.caption(-0.3, y + 0.35, f"{weight:g} x {_describe(part)}")
            top = d.ymin
            _draw_any(d, part, y, depth + 1)
            y = min(d.ymin, top) - 1.3
        return
    _drawer(cfg)(d, cfg, y)


def plot_configuration_schematic(
    configuration: BaseConfiguration,
    path: PathLike | None = None,
    ax: Any = None,
    *,
    title: str | None = None,
) -> Any:
    """Draw a schematic of a training configuration.

    The top row is the main chain `u_0 -> û_1 -> ... -> û_R` of network steps; data
    levels, reference-stepper branches (diverted chains) and physics steps (mix chains)
    are drawn below or beside it, loss terms as red circles linked to what they compare,
    and every cut gradient (`cut_bptt` / `cut_bptt_every`, `cut_div_chain`,
    `cut_prev` / `cut_next`, teacher-forcing resets) as a grey dashed segment
    alongside the edge whose cotangent it stops. A `Composite` is drawn as its parts
    stacked, each captioned with its weight.

    The configuration is one of `online_emulate.configuration`'s Supervised,
    DivertedChain, DivertedChainBranchOne, MixChainPostPhysics, MixChainPrePhysics,
    Residuum, TeacherForcing or Composite (or a subclass); read are `num_rollout_steps`,
    `num_branch_steps`, `num_post_physics_steps`, `num_pre_physics_steps`,
    `reset_every`, `cut_bptt`, `cut_bptt_every`, `cut_div_chain`, `cut_prev`,
    `cut_next`, `time_level_weights`, `branch_level_weights` (missing ones take
    their defaults); a Composite needs `configurations` (and optionally `weights`).

    Arguments:
        configuration: the configuration object.
        path: PNG file to write. Required when `ax` is None.
        ax: an existing matplotlib Axes to draw into.
        title: figure title; default: a one-line description of the configuration.

    Returns:
        `path` when `ax` is None, otherwise the figure of `ax`.

    Raises:
        TypeError: for an object that is not one of those configurations.
        ValueError: for attributes of the wrong kind (e.g. a non-positive step count,
            too few weights), or unusable `path`/`ax`.
    """
    check_target(path, ax)
    # dry run first, so that bad input raises before anything is drawn into `ax`
    _check_supported(configuration)
    _draw_any(_Drawer(None), configuration, 0.0)

    if ax is None:
        fig, ax_used = new_figure()
    else:
        fig, ax_used = ax.figure, ax
    d = _Drawer(ax_used)
    _draw_any(d, configuration, 0.0)
    width = d.xmax + 1.0
    height = d.ymax - d.ymin + 1.0
    ax_used.set_xlim(-0.6, d.xmax + 0.6)
    ax_used.set_ylim(d.ymin - 0.5, d.ymax + 0.5)
    ax_used.set_aspect("equal")
    ax_used.axis("off")
    if title is None:
        title = "Composite" if isinstance(configuration, Composite) else _describe(configuration)
    ax_used.set_title(title, fontsize=10)
    if ax is None:
        scale = 1.1
        fig.set_size_inches(
            max(6.2, scale * width + 0.5, 0.085 * len(title) + 0.5),
            max(2.5, scale * height + 0.9),
        )
    handles = [
        Line2D([], [], color=_NET, marker=r"$\rightarrow$", linestyle="-", label="network f"),
        Line2D([], [], color=_PHYS, linestyle="-", label="reference stepper P"),
        Line2D([], [], color=_DATA, marker="s", linestyle="", markerfacecolor="#e6e6e6",
               label="data"),
        Line2D([], [], color=_LOSS, marker="o", linestyle="", markerfacecolor="#fbe3e2",
               label="loss"),
        Line2D([], [], color=_CUT, linestyle=(0, (3, 2)), label="cut gradient"),
    ]
    ax_used.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=5, frameon=False, fontsize=7, handlelength=1.8)
    return finish(fig, path, ax is not None)
