"""Infinite-width kernels of fully connected networks: NNGP, NTK, SG-NTK and surrogate Gram.

Network (NTK parameterisation, ``depth`` = L hidden layers, scalar output; Eilers, Memmesheimer
& Goedeke, NeurIPS 2024, Sec. 2)::

    h_1 = sigma_w / sqrt(n_0) W_1 x + sigma_b b_1
    h_{l+1} = sigma_w / sqrt(n_l) W_{l+1} phi(h_l) + sigma_b b_{l+1},   l = 1..L

Recursion over layers, with ``(u, v) ~ N(0, [[S_l(x,x), S_l(x,x')], [., S_l(x',x')]])``
(paper Eq. 7-9 and Thm. 3.3)::

    S_1 = sigma_w^2 <x, x'> / n_0 + sigma_b^2,                  K_1 = S_1 for every K below
    S_{l+1} = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2            (NNGP)
    NTK_{l+1}     = S_{l+1} + NTK_l     * sigma_w^2 E[phi'(u) phi'(v)]
    SGNTK_{l+1}   = S_{l+1} + SGNTK_l   * sigma_w^2 E[phi'(u) psi'(v)]   (I = J(x) J~(x')^T)
    SG_GRAM_{l+1} = S_{l+1} + SG_GRAM_l * sigma_w^2 E[psi'(u) psi'(v)]  (J~(x) J~(x')^T)

and the kernels of the network are the layer-(L+1) values. The SG-NTK is *not symmetric*
unless all inputs have equal norm. For jump activations (``sign``, ``step``) the naive NTK is
``inf`` wherever ``x'`` is a positive multiple of ``x`` (in particular on the diagonal) and
finite elsewhere: gradient descent with the true (distributional) derivative is ill-posed in
the infinite-width limit; the SG-NTK is finite everywhere.

Zero-norm inputs: with ``sigma_b = 0`` a zero input has first-layer variance 0, so every
unit sits exactly at the jump of ``sign``/``step``; the kernels are then undefined and
:func:`mlp` raises ``ValueError``. For ``erf`` the value is defined (``erf(0) = 0``).

Two entry points:

* :func:`mlp` -- validated, float64, tiled over rows and columns so N = 20 000 fits in memory
  (ask only for the kernels you need with ``get=``), raises on NaN.
* :func:`mlp_kernel_fn` -- the pure per-tile function ``(x1, x2, surrogate, sigma_w, sigma_b,
  m) -> MLPKernel``; jit/vmap/grad over surrogate parameters and weight scales (e.g. a grid
  of sharpness values is one ``jax.vmap``). Enable float64 yourself when you use it.

Checked against Monte Carlo over wide networks (``tests/test_kernels_mc.py``), against
neural-tangents' ``stax.Erf``/``stax.Sign`` kernels and against the paper's check values
(``tests/test_kernels.py``).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import expectations as E
from ._x64 import float64
from .surrogates import Surrogate
from .surrogates import get as get_surrogate

__all__ = ["KERNELS", "MLPKernel", "mlp", "mlp_kernel_fn"]

KERNELS = ("nngp", "ntk", "sgntk", "sg_gram")


class MLPKernel(NamedTuple):
    """Kernels between x1 (n1 rows) and x2 (n2 rows); each ``(n1, n2)`` or None if not requested.

    nngp: S(x, x'), the output covariance at initialisation.
    ntk: naive NTK J(x) J(x')^T (true derivatives; ``inf`` at degenerate pairs for jumps).
    sgntk: SG-NTK I(x, x') = J(x) J~(x')^T (true at x1, surrogate at x2; asymmetric).
    sg_gram: J~(x) J~(x')^T (surrogate derivatives on both sides).
    """

    nngp: jax.Array | None = None
    ntk: jax.Array | None = None
    sgntk: jax.Array | None = None
    sg_gram: jax.Array | None = None


def mlp_kernel_fn(*, depth: int, activation, get: Sequence[str] = KERNELS) -> Callable:
    """Pure kernel function of an MLP with static ``depth``, ``activation`` and ``get``.

    Returns ``kernel_fn(x1, x2, surrogate, sigma_w, sigma_b, m=1.0) -> MLPKernel`` where
    ``x1: (n1, d)``, ``x2: (n2, d)``, ``surrogate`` a :class:`~sgntk.surrogates.Surrogate`
    pytree and the scales arrays; no validation, no tiling (see :func:`mlp`).
    """
    activation = E.check_activation(activation)
    get = tuple(get)

    def kernel_fn(x1, x2, surrogate: Surrogate, sigma_w, sigma_b, m=1.0) -> MLPKernel:
        d = x1.shape[-1]
        sw2, sb2 = sigma_w**2, sigma_b**2
        a = sw2 * jnp.sum(x1 * x1, -1)[:, None] / d + sb2       # S_l(x, x), (n1, 1)
        b = sw2 * jnp.sum(x2 * x2, -1)[None, :] / d + sb2       # S_l(x', x'), (1, n2)
        r = sw2 * (x1 @ x2.T) / d + sb2                        # S_l(x, x'), (n1, n2)
        out = {k: r for k in get if k != "nngp"}
        for _ in range(depth):
            if "ntk" in out:
                out["ntk"] = out["ntk"] * sw2 * E.true_derivative_expectation(
                    activation, a, b, r, m)
            if "sgntk" in out:
                out["sgntk"] = out["sgntk"] * sw2 * E.mixed_derivative_expectation(
                    activation, a, b, r, surrogate, m)
            if "sg_gram" in out:
                out["sg_gram"] = out["sg_gram"] * sw2 * E.surrogate_expectation(
                    a, b, r, surrogate)
            r_next = sw2 * E.nngp_expectation(activation, a, b, r, m) + sb2
            a = sw2 * E.second_moment(activation, a, m) + sb2
            b = sw2 * E.second_moment(activation, b, m) + sb2
            r = r_next
            out = {k: v + r for k, v in out.items()}
        if "nngp" in get:
            out["nngp"] = r
        return MLPKernel(**out)

    return kernel_fn


# --------------------------------------------------------------------------------------
# Validated, tiled, float64 entry point.
# --------------------------------------------------------------------------------------
def _as_inputs(name, x):
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, d) with n, d >= 1; got {np.shape(x)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf entries")
    return arr


def _positive(name, value, *, allow_zero=False):
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        rng = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {rng}; got {value!r}")
    return v


def _validate(x1, x2, depth, activation, surrogate, sigma_w, sigma_b, m, get):
    x1 = _as_inputs("x1", x1)
    x2 = x1 if x2 is None else _as_inputs("x2", x2)
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"x1 and x2 must have the same feature dimension; got x1 with "
                         f"{x1.shape[1]} and x2 with {x2.shape[1]} features")
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0 (number of hidden layers); got {depth!r}")
    activation = E.check_activation(activation)
    if activation == "erf":
        if m is None:
            raise ValueError("activation='erf' needs m > 0 (phi(z) = erf(m z))")
        m = _positive("m", m)
    elif m is not None:
        raise ValueError(f"m is only used by activation='erf', not by {activation!r}")
    else:
        m = 1.0
    surrogate = get_surrogate(surrogate)
    sigma_w = _positive("sigma_w", sigma_w)
    sigma_b = _positive("sigma_b", sigma_b, allow_zero=True)
    bad = [k for k in get if k not in KERNELS]
    if bad or not get:
        raise ValueError(f"get must be a non-empty subset of {KERNELS}; got {tuple(get)!r}")
    if activation in E.JUMPS and sigma_b == 0 and depth > 0:
        for name, x in (("x1", x1), ("x2", x2)):
            zero = np.flatnonzero(~np.any(x != 0, axis=1))
            if zero.size:
                raise ValueError(
                    f"{name}[{int(zero[0])}] has zero norm and sigma_b = 0: its first-layer "
                    f"pre-activation is exactly 0, at the jump of {activation!r}, so the kernel "
                    "is undefined; use sigma_b > 0 or non-zero inputs")
    return x1, x2, activation, surrogate, sigma_w, sigma_b, m


@functools.lru_cache(maxsize=64)
def _jitted_tile_fn(depth, activation, get):
    return jax.jit(mlp_kernel_fn(depth=depth, activation=activation, get=get))


def _pad_rows(x, size):
    if x.shape[0] == size:
        return x
    return np.concatenate([x, np.repeat(x[:1], size - x.shape[0], axis=0)])


@float64
def mlp(x1, x2=None, *, depth: int, activation, surrogate="erf", sigma_w=1.0, sigma_b=0.0,
        m=None, get: Sequence[str] = KERNELS, tile_size: int = 1024,
        progress: bool | None = None) -> MLPKernel:
    """NNGP, naive NTK, SG-NTK and surrogate Gram of an MLP in the infinite-width limit.

    Args:
      x1: inputs ``(n1, d)``.
      x2: inputs ``(n2, d)``; default ``x1``.
      depth: number of hidden layers L >= 0.
      activation: ``"sign"``, ``"step"``, ``"erf"`` (``erf(m z)``) or a smooth callable.
      surrogate: surrogate derivative psi' (name or :class:`~sgntk.surrogates.Surrogate`);
        the paper's default is ``"erf"`` (psi' = 2/sqrt(pi) exp(-z^2)).
      sigma_w: weight scale > 0.  sigma_b: bias scale >= 0.
      m: sharpness of ``erf(m z)``; only for ``activation="erf"``.
      get: which kernels to compute (others are None), subset of :data:`KERNELS`.
      tile_size: rows/columns per tile; memory per tile is O(tile_size^2).
      progress: tqdm bar over tiles (default: when there are more than 16 tiles).

    Returns:
      :class:`MLPKernel` of float64 arrays ``(n1, n2)``; ``.sgntk[i, j] = I(x1_i, x2_j)``.

    Raises:
      ValueError: bad parameters (named, with the accepted range) or zero-norm inputs of a
        jump activation with sigma_b = 0. FloatingPointError: a NaN appeared (never returned).

    >>> import numpy as np
    >>> x = np.stack([np.sin([0., np.pi]), np.cos([0., np.pi])], 1)
    >>> k = mlp(x, depth=2, activation="sign", surrogate="erf", sigma_b=0.1)
    >>> np.round(np.asarray(k.sgntk), 4)  # paper check values I(0, 0), I(0, pi)
    array([[ 2.4908, -1.5448],
           [-1.5448,  2.4908]])
    """
    get = tuple(get)
    x1, x2, activation, surrogate, sigma_w, sigma_b, m = _validate(
        x1, x2, depth, activation, surrogate, sigma_w, sigma_b, m, get)
    if not isinstance(tile_size, (int, np.integer)) or tile_size < 1:
        raise ValueError(f"tile_size must be an integer >= 1; got {tile_size!r}")
    n1, n2 = x1.shape[0], x2.shape[0]
    t1, t2 = min(tile_size, n1), min(tile_size, n2)
    fn = _jitted_tile_fn(depth, activation, get)
    sur = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), surrogate)
    out = {k: jnp.zeros((n1, n2), jnp.float64) for k in get}
    blocks = [(i, j) for i in range(0, n1, t1) for j in range(0, n2, t2)]
    if progress is None:
        progress = len(blocks) > 16
    if progress:
        from tqdm.auto import tqdm
        blocks = tqdm(blocks, desc="kernel tiles", unit="tile")
    for i, j in blocks:
        xa, xb = x1[i:i + t1], x2[j:j + t2]
        res = fn(_pad_rows(xa, t1), _pad_rows(xb, t2), sur, sigma_w, sigma_b, m)
        for k in get:
            tile = getattr(res, k)[:xa.shape[0], :xb.shape[0]]
            out[k] = _write_tile(out[k], tile, i, j)   # in place (donated buffer)
    for k, v in out.items():
        if bool(jnp.isnan(v).any()):
            idx = np.argwhere(np.isnan(np.asarray(v)))[0]
            raise FloatingPointError(f"kernel {k!r} is NaN at {tuple(int(t) for t in idx)}; "
                                     "please report this with the inputs")
    return MLPKernel(**out)


@functools.partial(jax.jit, donate_argnums=0)
def _write_tile(out, tile, i, j):
    return jax.lax.dynamic_update_slice(out, tile, (i, j))
