"""`KFAC`: kfac-jax's optimizer for unrolled (BPTT) emulator training."""

from __future__ import annotations

import inspect
import itertools
import warnings
from typing import Any, Callable, Literal, Optional

import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from .._checks import check_callable, check_real
from ..configuration import BaseConfiguration
from ..emulators import lax_conv_ops
from ..estimators import BPTT, Bound
from ._blocks import block_report, warn_non_kronecker
from ._compat import import_kfac
from ._curvature import RolloutCurvature, folded_batch_size, make_curvature_loss, rollout_spec
from ._layout import lift_params, lifted_leaf_mask, lower_params

__all__ = ["KFAC", "DEFAULT_KFAC_OPTIONS", "auto_curvature_scale", "check_kfac_options"]

#: Defaults we choose; every other `kfac_jax.Optimizer` option keeps kfac's default.
DEFAULT_KFAC_OPTIONS: dict[str, Any] = dict(
    l2_reg=0.0,
    use_adaptive_learning_rate=True,
    use_adaptive_momentum=True,
    use_adaptive_damping=True,
    initial_damping=1e-2,
    num_burnin_steps=0,
    multi_device=False,
)

# Set by us from the configuration and emulator; not user options.
_RESERVED = ("value_and_grad_func", "value_func_for_estimator", "batch_size_extractor")


def check_kfac_options(target: Callable, options: dict, *, reserved=_RESERVED) -> None:
    """Check that every option is a keyword of `target` and not one we set ourselves.

    Raises:
        TypeError: naming an option `target` does not accept.
        ValueError: naming an option that online_emulate sets itself.
    """
    accepted = inspect.signature(target).parameters
    for name in options:
        if name in reserved:
            raise ValueError(
                f"{name}: expected no value (online_emulate sets it from the configuration "
                f"and emulator), got {options[name]!r}"
            )
        if name not in accepted:
            raise TypeError(
                f"{name}: expected an option of {getattr(target, '__qualname__', target)} "
                f"({', '.join(p for p in accepted if p not in ('self',) + reserved)}), got an "
                "unknown keyword"
            )


def auto_curvature_scale(configuration) -> float:
    """Total step weight of a configuration's loss (sum of `online_spec().weights`).

    The rollout loss is `sum_t w_t * step_loss_t`; approximating every step's curvature
    by the mean one-step curvature gives `sum_t w_t` times it (a lower bound: it ignores
    the dependence through earlier states). Only for callers building their own
    one-step curvature with `make_curvature_loss`; `KFAC` registers the rollout itself
    (`RolloutCurvature`). Configurations without an online spec get 1.0.
    """
    spec = rollout_spec(configuration)
    return 1.0 if spec is None else float(jnp.sum(spec[1]))


class KFAC:
    """K-FAC (kfac-jax) for emulators trained on a configuration's rollout loss.

    The loss and its gradient are the binding's (`Bound.loss_and_grad` of a `BPTT`
    estimator bound to the configuration and the model: the configuration's full
    rollout loss, exactly what the other optimizers minimise). For a
    configuration with an `online_spec()` (Supervised, TeacherForcing, Residuum, ...)
    the curvature follows `RolloutCurvature`: kfac's Kronecker factors come from ONE
    network step applied to the network's own rollout states (computed before each
    step without gradient, time folded into the batch, `B * R` rows, rows weighted by
    the step weights), evaluated with plain lax ops so every convolution is a
    Kronecker-factored block (1-D kernels in the height-1 2-D layout, see
    `lift_params`); kfac's exact quadratic model (adaptive learning rate, momentum and
    the damping's reduction ratio) uses the Gauss-Newton matrix of the rollout's own
    predictions, so it is consistent with the gradient's loss. (Using the one-step
    model there underestimates a rollout's curvature several-fold and made 5-step
    training diverge.) Configurations without an online spec fall back to a one-step
    loss over the window's data levels.

    Protocol (what a trainer calls)::

        kfac = KFAC(**options)
        kfac.build(BPTT().bind(configuration, emulator, state_shape=(C, *N), ...))
        state = kfac.init(params, key, batch)          # batch: (B, T, C, *N) window
        params, state, loss = kfac.step(params, state, batch, key)

    `params` stay in the emulator layout (`functional(emulator)[1]`); `loss` is the
    rollout loss at the parameters before the step; `kfac.last_stats` holds kfac's
    statistics of the last step (learning_rate, momentum, damping, rho, ...).
    Do not jit `init`/`step` (kfac compiles internally).

    Arguments:
        curvature_scale: factor on the registered losses, or `"auto"` (default,
            1.0: they already have the scale of the configuration's weighted rollout
            MSE).
        check_blocks: warn (naming them) about parameters that fell back to a
            diagonal/generic block after `init`. Default True.
        **kfac_options: any keyword of `kfac_jax.Optimizer` except
            `value_and_grad_func`, `value_func_for_estimator` and
            `batch_size_extractor`; they override `DEFAULT_KFAC_OPTIONS` (adaptive
            learning rate, momentum and damping, initial damping 1e-2, no burn-in).

    Raises:
        ImportError: kfac-jax is not installed (the message says how to install it).
        TypeError / ValueError: an unknown or reserved option, or a bad
            `curvature_scale`, named in the message.
    """

    # Trainers recognise K-FAC by this flag (it is not an optax transformation).
    is_kfac = True

    def __init__(
        self,
        *,
        curvature_scale: float | Literal["auto"] = "auto",
        check_blocks: bool = True,
        **kfac_options,
    ):
        self._kfac_jax = import_kfac()
        check_kfac_options(self._kfac_jax.Optimizer.__init__, kfac_options)
        if not (isinstance(curvature_scale, str) and curvature_scale == "auto"):
            check_real("curvature_scale", curvature_scale, positive=True)
        self.curvature_scale = curvature_scale
        self.check_blocks = bool(check_blocks)
        self.options = {**DEFAULT_KFAC_OPTIONS, **kfac_options}
        self._built = None
        self._optimizer = None
        self._mask = None
        self._prepare = None
        self.curvature = None
        self.blocks: list[tuple[str, tuple[str, ...]]] = []
        self.fallback_params: list[str] = []
        self.last_stats: Optional[dict] = None

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"KFAC(curvature_scale={self.curvature_scale!r}, {opts})"

    # -- protocol -------------------------------------------------------------------

    def build(
        self,
        bound: Bound | Callable,
        configuration: BaseConfiguration | None = None,
        *,
        ref_stepper: Callable | None = None,
        residuum_fn: Callable | None = None,
    ) -> KFAC:
        """Take the loss to minimise from a binding (`Estimator.bind`).

        Arguments:
            bound: a `Bound` of a `BPTT` estimator (K-FAC needs the full rollout's
                gradient): its `loss_and_grad` is the loss and gradient, its model's
                `apply` the network whose curvature is estimated. Deprecated: a pure
                `apply(params, u)` followed by `configuration` (and `ref_stepper`,
                `residuum_fn`), bound by `init` once the parameters and the window are
                known.
            configuration, ref_stepper, residuum_fn: only with the deprecated `apply`.

        Returns:
            `self` (a later `build` replaces the binding; call `init` again).

        Raises:
            TypeError: `bound` is neither a `Bound` nor callable, or `configuration`
                has no `loss`.
            ValueError: `bound`'s estimator is not a `BPTT`.
        """
        if isinstance(bound, Bound):
            if not isinstance(bound.estimator, BPTT):
                raise ValueError(f"bound: expected a binding of a BPTT estimator (K-FAC takes "
                                 f"its gradient from the full rollout), got {bound.estimator!r}")
            self._built = lambda params, batch: (bound, bound.model.apply)
        else:
            warnings.warn("KFAC.build(apply, configuration, ...) is deprecated: pass the "
                          "binding, kfac.build(BPTT().bind(configuration, model, "
                          "state_shape=...))", DeprecationWarning, stacklevel=2)
            check_callable("bound", bound, expected="a Bound (Estimator.bind) or a callable "
                           "apply(params, u)")
            if not callable(getattr(configuration, "loss", None)):
                raise TypeError(
                    "configuration: expected an object with loss(stepper, data, *, "
                    f"ref_stepper, residuum_fn), got {type(configuration).__name__}"
                )

            # the pair (apply, params) on the window's states is bound for the gradient;
            # the curvature is that of apply as given (a pair is called on one state: its
            # vmap would hide the biases' Kronecker blocks)
            def bound_pair(params, batch):
                return BPTT().bind(configuration, (bound, params), state_shape=batch.shape[2:],
                                   dtype=batch.dtype, ref_stepper=ref_stepper,
                                   residuum_fn=residuum_fn), bound

            self._built = bound_pair
        self._optimizer = None
        return self

    def init(self, params: PyTree, key: jax.Array, batch: jax.Array) -> Any:
        """Create kfac's optimizer for this window shape and its state.

        Arguments:
            params: emulator-layout parameter PyTree.
            key: PRNG key.
            batch: an example window `(B, T, C, *N)` of the size `step` will get.

        Returns:
            kfac's optimizer state (an opaque PyTree).

        Raises:
            RuntimeError: `build` was not called.
            ValueError: `batch` is not a window array.
        """
        if self._built is None:
            raise RuntimeError("KFAC.init: call kfac.build(bound) first")
        folded_batch_size(batch)  # validates the window
        bound, apply = self._built(params, batch)
        apply, loss_and_grad = _with_conv_primitives(apply), bound.loss_and_grad
        self._mask = mask = _choose_mask(apply, params, batch)
        scale = 1.0 if self.curvature_scale == "auto" else float(self.curvature_scale)
        try:
            curvature = RolloutCurvature(apply, bound.configuration, curvature_scale=scale)
        except ValueError:  # no online spec: one-step curvature over the data levels
            curvature = None
        if curvature is not None:
            estimator_loss, model_loss = curvature.estimator_loss, curvature.model_loss
            batch_size = curvature.batch_size
            states = jax.jit(curvature.states)
            self._prepare = lambda p, data: (data, states(p, data))
        else:
            one_step = make_curvature_loss(apply, curvature_scale=scale)
            estimator_loss = lambda p, b: one_step(p, b[0])  # noqa: E731
            model_loss = one_step
            batch_size = lambda b: folded_batch_size(b[0])  # noqa: E731
            self._prepare = lambda p, data: (data, None)
        self.curvature = curvature

        def value_and_grad(p, batch):
            data = batch[0]
            # kfac's exact quadratic model (adaptive learning rate and momentum, the
            # damping's reduction ratio) differentiates the loss tags registered in this
            # function: register the rollout's own predictions (with their dependence
            # through earlier states) so that model matches the gradient's loss.
            registered = model_loss(p, data)
            value, grads = loss_and_grad(lower_params(p, mask), data)
            return value + 0.0 * registered, lift_params(grads, mask)

        self._optimizer = self._kfac_jax.Optimizer(
            value_and_grad_func=value_and_grad,
            value_func_for_estimator=estimator_loss,
            batch_size_extractor=batch_size,
            **self.options,
        )
        lifted = lift_params(params, self._mask)
        state = self._optimizer.init(lifted, key, self._prepare(lifted, batch))
        estimator = getattr(self._optimizer, "estimator", None) or self._optimizer._estimator
        self.blocks = block_report(estimator, lifted, self._kfac_jax)
        if self.check_blocks:
            self.fallback_params = warn_non_kronecker(estimator, lifted, self._kfac_jax)
        return state

    def step(
        self,
        params: PyTree,
        state: Any,
        batch: jax.Array,
        key: jax.Array,
    ) -> tuple[PyTree, Any, jax.Array]:
        """One K-FAC update on one window.

        Returns:
            `(new_params, new_state, loss)`; `loss` is the rollout loss before the step.

        Raises:
            RuntimeError: `init` was not called.
        """
        if self._optimizer is None:
            raise RuntimeError("KFAC.step: call kfac.init(params, key, batch) first")
        lifted = lift_params(params, self._mask)
        # kfac's batch: the window and the network's rollout states at the current
        # parameters (the inputs of the registered one-step curvature loss)
        prepared = self._prepare(lifted, batch)
        new, state, stats = self._optimizer.step(
            lifted, state, key, data_iterator=itertools.repeat(prepared)
        )
        self.last_stats = stats
        return lower_params(new, self._mask), state, stats["loss"]

    @property
    def optimizer(self):
        """The underlying `kfac_jax.Optimizer` (after `init`)."""
        return self._optimizer


def _with_conv_primitives(apply: Callable) -> Callable:
    """`apply` traced inside `lax_conv_ops()`: kfac's graph matcher finds the emulators'
    convolutions only as convolution primitives, not as the matrix products the
    plain-lax path computes them with by default."""

    def conv_apply(params, u):
        with lax_conv_ops():
            return apply(params, u)

    return conv_apply


def _choose_mask(apply, params, batch):
    """Lift 1-D kernels only if `apply` accepts them and gives the same outputs."""
    mask = lifted_leaf_mask(params, batch.ndim - 3)
    if not any(jax.tree_util.tree_leaves(mask)):
        return mask
    u = batch[:, 0]
    try:
        same = bool(
            jnp.allclose(
                apply(lift_params(params, mask), u), apply(params, u), rtol=1e-5, atol=1e-6
            )
        )
    except Exception:  # noqa: BLE001 - an apply that cannot take them keeps its layout
        same = False
    return mask if same else jax.tree_util.tree_map(lambda _: False, mask)
