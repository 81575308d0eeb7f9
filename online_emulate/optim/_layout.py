"""K-FAC's parameter layout: 1-D conv kernels as height-1 2-D kernels.

kfac-jax only recognises 2-D NHWC/HWIO convolutions whose kernel is itself a
parameter (a reshape between the parameter and the convolution hides it from the graph
matcher). So K-FAC works on a copy of the parameters in which every 1-D kernel
`(k, C_in, C_out)` is stored as `(1, k, C_in, C_out)`; the emulators' lax path
evaluates such a kernel as a height-1 2-D convolution with identical outputs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["lift_params", "lower_params", "lifted_leaf_mask"]


def lifted_leaf_mask(params: Any, num_spatial_dims: int) -> Any:
    """Which leaves are lifted: the rank-3 leaves (1-D kernels) of a 1-D model.

    Arguments:
        params: parameter PyTree in the emulator layout.
        num_spatial_dims: spatial dimensions of the data the model acts on.

    Returns:
        A PyTree of bools with the structure of `params`.
    """
    return jax.tree_util.tree_map(
        lambda p: num_spatial_dims == 1 and jnp.ndim(p) == 3, params
    )


def lift_params(params: Any, mask: Any) -> Any:
    """Emulator layout -> K-FAC layout (masked leaves get a leading axis of size 1).

    Every leaf is a fresh array: kfac donates the parameter buffers it is given, and
    the caller's parameters must survive that.
    """
    return jax.tree_util.tree_map(
        lambda p, m: jnp.array(p[None] if m else p, copy=True), params, mask
    )


def lower_params(params: Any, mask: Any) -> Any:
    """K-FAC layout -> emulator layout (inverse of `lift_params`)."""
    return jax.tree_util.tree_map(lambda p, m: p[0] if m else p, params, mask)
