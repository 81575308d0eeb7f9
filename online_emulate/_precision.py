"""Keep the user's float64 setting when brainstate is loaded.

`import brainstate` sets `jax_enable_x64` from brainstate's own precision (32) the first
time it runs. The subpackages that load brainstate import this module first, so a user
who enabled float64 before (or after `import online_emulate`, which is lazy) keeps it.
"""

import jax

_USER_X64 = bool(jax.config.jax_enable_x64)

import brainstate  # noqa: E402

if _USER_X64 and not jax.config.jax_enable_x64:
    brainstate.environ.set(precision=64)  # also turns jax_enable_x64 back on

__all__ = []
