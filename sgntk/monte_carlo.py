"""Monte-Carlo estimates of infinite-width kernels: averages over sampled finite networks.

:func:`estimate` averages any per-key sample (a pytree of arrays) over ``n_samples`` keys,
``batch_size`` at a time under ``vmap``, and returns the mean and its standard error
(sample standard deviation / sqrt(n)). :func:`mlp_kernels` applies it to the empirical kernels
of wide NTK-parameterised MLPs (:func:`sgntk.empirical.mlp_empirical`, i.e. finite networks
built from the layers of :mod:`sgntk.layers`); tests compare it with :func:`sgntk.kernels.mlp`
within ~4 standard errors (``tests/test_kernels_mc.py``, ``tests/test_layers.py``).

Two biases are not covered by the standard error and must be made small by the caller:
finite width (the empirical SG-NTK's mean deviates from the limit by O(1/width)) and, for
jump activations, the smoothing ``jump_width`` of the Dirac derivative (O(jump_width^2)).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import empirical
from ._util import check_int, check_positive
from ._x64 import float64
from .kernels import check_mlp_arguments

__all__ = ["MCEstimate", "estimate", "mlp_kernels"]


class MCEstimate(NamedTuple):
    """Mean and standard error of a Monte-Carlo average (pytrees shaped like one sample)."""

    mean: Any
    stderr: Any
    n_samples: int


def estimate(sample_fn: Callable, key, n_samples: int, *, batch_size: int = 16,
             progress: bool | None = None, batched_fn: Callable | None = None) -> MCEstimate:
    """Average ``sample_fn(key)`` over ``n_samples`` independent keys.

    Sums are accumulated around the first batch's mean (shifted data) in the sample's
    dtype, so the variance does not cancel catastrophically. ``batched_fn`` (optional):
    ``keys (B, ...) -> samples stacked on axis 0``, already compiled, used instead of
    ``jax.jit(jax.vmap(sample_fn))`` (which compiles anew on every call: pass a module-level
    jitted function to reuse its compilation across calls); ``sample_fn`` is then unused.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 to estimate a standard error; got {n_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    batch_size = min(int(batch_size), n_samples)   # a batch larger than the sample is one batch
    keys = jax.random.split(key, n_samples)
    batched = jax.jit(jax.vmap(sample_fn)) if batched_fn is None else batched_fn
    shift = s1 = s2 = None
    starts = range(0, n_samples, batch_size)
    if progress is None:
        progress = len(starts) > 8
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="networks", unit="batch")
    for i in starts:
        k = keys[i:i + batch_size]
        if k.shape[0] < batch_size:  # keep one compiled shape: pad, then drop the padding
            pad = batch_size - k.shape[0]
            keep = k.shape[0]
            samples = jax.tree_util.tree_map(lambda a: a[:keep],
                                             batched(jnp.concatenate([k, keys[:pad]])))
        else:
            samples = batched(k)
        if shift is None:
            shift = jax.tree_util.tree_map(lambda a: jnp.mean(a, 0), samples)
            s1 = jax.tree_util.tree_map(jnp.zeros_like, shift)
            s2 = jax.tree_util.tree_map(jnp.zeros_like, shift)
        dev = jax.tree_util.tree_map(lambda a, c: a - c, samples, shift)
        s1 = jax.tree_util.tree_map(lambda s, d: s + jnp.sum(d, 0), s1, dev)
        s2 = jax.tree_util.tree_map(lambda s, d: s + jnp.sum(d * d, 0), s2, dev)
    n = n_samples
    mean = jax.tree_util.tree_map(lambda c, s: c + s / n, shift, s1)
    var = jax.tree_util.tree_map(lambda s, q: jnp.maximum(q - s * s / n, 0.0) / (n - 1), s1, s2)
    stderr = jax.tree_util.tree_map(lambda v: jnp.sqrt(v / n), var)
    return MCEstimate(mean, stderr, n)


@float64
def mlp_kernels(x1, x2=None, *, depth: int, activation, surrogate="erf", width: int,
                n_networks: int, seed: int = 0, sigma_w=1.0, sigma_b=0.0, m=None,
                jump_width=None, batch_size: int = 8, progress: bool | None = None
                ) -> MCEstimate:
    """Monte-Carlo estimate of the MLP kernels of :func:`sgntk.kernels.mlp`.

    Averages :func:`sgntk.empirical.mlp_empirical` over ``n_networks`` independent
    networks of hidden width ``width``. Returns an :class:`MCEstimate` whose ``mean`` and
    ``stderr`` are :class:`~sgntk.kernels.MLPKernel` s. For jump activations pass
    ``jump_width`` (e.g. 0.02) to estimate the SG-NTK; without it the true-derivative side
    is exactly 0 in hidden layers (finite networks) and only the read-out term remains.
    """
    x1, x2, activation, surrogate, sigma_w, sigma_b, m = check_mlp_arguments(
        x1, x2, depth=depth, activation=activation, surrogate=surrogate, sigma_w=sigma_w,
        sigma_b=sigma_b, m=m)
    width = check_int("width", width, minimum=1)
    if jump_width is not None:
        jump_width = check_positive("jump_width", jump_width)
    x1j, x2j = jnp.asarray(x1), jnp.asarray(x2)
    d = x1.shape[1]

    def sample(key):
        params = empirical.mlp_init(key, d, width, depth)
        return empirical.mlp_empirical(params, x1j, x2j, activation=activation,
                                       surrogate=surrogate, sigma_w=sigma_w,
                                       sigma_b=sigma_b, m=m, jump_width=jump_width)

    return estimate(sample, jax.random.PRNGKey(seed), n_networks, batch_size=batch_size,
                    progress=progress)
