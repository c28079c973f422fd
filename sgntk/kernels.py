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
  (ask only for the kernels you need with ``which=``; ``get=`` is its deprecated old name),
  raises on NaN.
* :func:`mlp_kernel_fn` -- the pure per-tile function ``(x1, x2, surrogate, sigma_w, sigma_b,
  m) -> MLPKernel``; jit/vmap/grad over surrogate parameters and weight scales (e.g. a grid
  of sharpness values is one ``jax.vmap``). Enable float64 yourself when you use it.

Both are built from the one network definition of :mod:`sgntk.layers`
(``layers.mlp(...).kernel``): the recursion above is ``serial(Dense, phi, ..., Dense)``
applied to :func:`sgntk.layers.input_kernel`.

Cost per input pair and hidden layer (``x1``, ``x2`` of ``d`` features; the input layer is
one ``d``-term dot product per pair):

* ``nngp``: closed form for ``sign``, ``step`` (one ``arctan2``) and ``erf`` (one ``arcsin``);
  a 201 x 201 trapezoid rule (4e4 evaluations) for a smooth callable.
* ``ntk``: closed form for ``sign``, ``step``, ``erf`` (one square root); 4e4 evaluations
  for a callable.
* ``sgntk``: for jumps and ``erf`` the surrogate's centred Gaussian moment at one variance per
  pair: a closed form (gaussian, erf, straight-through, exponential, cauchy, triangular,
  rectangular: one ``erf``/``erfcx``) or one lookup in a table of ~2000 moments built once per
  call (fast_sigmoid, sigmoid, q_pseudo_spike); ~4.6e5 evaluations for a callable.
* ``sg_gram`` (:func:`sgntk.expectations.surrogate_expectation`): gaussian, erf,
  straight-through one square root; Gaussian scale mixtures 32-89 table lookups (first
  layer; up to 218 for normalised variances outside [1e-6, 1e3]); triangular, rectangular a
  13-node closed form (13 ``exp`` + 13-39 ``expm1``), the ~1 % nearly parallel pairs 15-18 x 8
  conditional moments. After a ``sign``/``step`` layer every input has the same variance and
  each pair costs one lookup in a table of ~4000 pair values built once per layer.

``benchmarks/bench_surrogate_shapes.py`` times the default kernels for every shape.

Checked against Monte Carlo over wide networks (``tests/test_kernels_mc.py``), against
neural-tangents' ``stax.Erf``/``stax.Sign`` kernels and against the paper's check values
(``tests/test_kernels.py``).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import expectations as E
from . import layers as L
from ._util import as_inputs, check_int, check_positive, pad_rows, renamed_keyword, tile_starts
from ._x64 import float64
from .layers import KERNELS
from .surrogates import Surrogate
from .surrogates import get as get_surrogate

__all__ = ["KERNELS", "MLPKernel", "mlp", "mlp_kernel_fn", "check_mlp_arguments", "check_which"]


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


def check_which(which) -> tuple:
    """``which`` as a tuple; ``ValueError`` unless it is a non-empty subset of :data:`KERNELS`."""
    which = (which,) if isinstance(which, str) else tuple(which)
    bad = [k for k in which if k not in KERNELS]
    if bad or not which:
        raise ValueError(f"which must be a non-empty subset of {KERNELS}; got {which!r}")
    return which


def mlp_kernel_fn(*, depth: int, activation, which: Optional[Sequence[str]] = None,
                  get: Optional[Sequence[str]] = None) -> Callable:
    """Pure kernel function of an MLP with static ``depth``, ``activation`` and ``which``.

    Returns ``kernel_fn(x1, x2, surrogate, sigma_w, sigma_b, m=1.0) -> MLPKernel`` where
    ``x1: (n1, d)``, ``x2: (n2, d)``, ``surrogate`` a :class:`~sgntk.surrogates.Surrogate`
    pytree and the scales (and ``m``, the sharpness of ``erf(m z)``) arrays; no validation, no
    tiling (see :func:`mlp`). It is ``layers.mlp(...).kernel(layers.input_kernel(x1, x2))``
    with the layers built from the (traced) arguments, so jit/vmap/grad go through every
    numeric hyper-parameter. ``get=`` is the deprecated name of ``which=``.
    """
    which = check_which(renamed_keyword("which", which, "get", get, default=KERNELS))
    depth = check_int("depth", depth, minimum=0)
    activation = E.check_activation(activation)

    def kernel_fn(x1, x2, surrogate: Surrogate, sigma_w, sigma_b, m=1.0) -> MLPKernel:
        net = L.mlp(depth=depth, activation=activation, surrogate=surrogate, sigma_w=sigma_w,
                    sigma_b=sigma_b, sharpness=m)
        k = net.kernel(L.input_kernel(x1, x2, which))
        return MLPKernel(**{n: getattr(k, n) for n in which})

    return kernel_fn


# --------------------------------------------------------------------------------------
# Validated, tiled, float64 entry point.
# --------------------------------------------------------------------------------------
def check_mlp_arguments(x1, x2, *, depth, activation, surrogate, sigma_w, sigma_b, m):
    """Validate the arguments shared by :func:`mlp` and :func:`sgntk.monte_carlo.mlp_kernels`.

    Returns ``(x1, x2, activation, surrogate, sigma_w, sigma_b, m)`` with ``x1, x2`` float64
    ``(n, d)`` arrays (``x2 = x1`` if None), the canonical activation, a
    :class:`~sgntk.surrogates.Surrogate`, float scales and ``m`` (1.0 unless ``erf``).
    ``ValueError`` names the parameter and the accepted range; zero-norm inputs of a jump
    activation with ``sigma_b = 0`` (first-layer pre-activation exactly at the jump) raise.
    """
    x1 = as_inputs("x1", x1)
    x2 = x1 if x2 is None else as_inputs("x2", x2)
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"x1 and x2 must have the same feature dimension; got x1 with "
                         f"{x1.shape[1]} and x2 with {x2.shape[1]} features")
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0 (number of hidden layers); got {depth!r}")
    activation = E.check_activation(activation)
    if activation == "erf":
        if m is None:
            raise ValueError("activation='erf' needs m > 0 (phi(z) = erf(m z))")
        m = float(check_positive("m", m))
    elif m is not None:
        raise ValueError(f"m is only used by activation='erf', not by {activation!r}")
    else:
        m = 1.0
    surrogate = get_surrogate(surrogate)
    sigma_w = float(check_positive("sigma_w", sigma_w))
    sigma_b = float(check_positive("sigma_b", sigma_b, inclusive=True))
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
def _jitted_tile_fn(depth, activation, which):
    return jax.jit(mlp_kernel_fn(depth=depth, activation=activation, which=which))


@float64
def mlp(x1, x2=None, *, depth: int, activation, surrogate="erf", sigma_w=1.0, sigma_b=0.0,
        m=None, which: Optional[Sequence[str]] = None, tile_size: int = 1024,
        progress: bool | None = None, get: Optional[Sequence[str]] = None, mesh=None,
        tiles=None) -> MLPKernel:
    """NNGP, naive NTK, SG-NTK and surrogate Gram of an MLP in the infinite-width limit.

    Args:
      x1: inputs ``(n1, d)``.
      x2: inputs ``(n2, d)``; default ``x1``.
      depth: number of hidden layers L >= 0.
      activation: ``"sign"``, ``"step"``, ``"erf"`` (``erf(m z)``) or a smooth callable.
      surrogate: surrogate derivative psi' (name or :class:`~sgntk.surrogates.Surrogate`);
        the paper's default is ``"erf"`` (psi' = 2/sqrt(pi) exp(-z^2)).
      sigma_w: weight scale > 0.  sigma_b: bias scale >= 0.
      m: sharpness of ``erf(m z)`` (``layers.Erf(sharpness=m)``); only for ``activation="erf"``.
      which: which kernels to compute (others are None), subset of :data:`KERNELS`
        (default all). ``get=`` is its deprecated old name (DeprecationWarning).
      tile_size: rows/columns per tile; memory per tile is O(tile_size^2).
      progress: tqdm bar over tiles (default: when there are more than 16 tiles).
      mesh: None (default: one device, the tile loop below) or a ``jax.sharding.Mesh`` /
        ``"all"`` (every device): tiles computed on all devices, rows of the result sharded
        over them (:func:`sgntk.sharding.map_tiles`).
      tiles: None or a folder: stream each kernel tile by tile to ``<tiles>/<name>.npy``
        (resumable; read-only memory maps come back), on ``mesh``'s devices (default all).

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
    which = check_which(renamed_keyword("which", which, "get", get, default=KERNELS,
                                        stacklevel=4))  # user -> float64 wrapper -> mlp
    x1, x2, activation, surrogate, sigma_w, sigma_b, m = check_mlp_arguments(
        x1, x2, depth=depth, activation=activation, surrogate=surrogate, sigma_w=sigma_w,
        sigma_b=sigma_b, m=m)
    if isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) \
            or tile_size < 1:
        raise ValueError(f"tile_size must be an integer >= 1; got {tile_size!r}")
    n1, n2 = x1.shape[0], x2.shape[0]
    t1, t2 = min(tile_size, n1), min(tile_size, n2)
    fn = _jitted_tile_fn(depth, activation, which)
    sur = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), surrogate)
    if mesh is not None or tiles is not None:   # sharded / on disk (sgntk.sharding)
        from . import sharding
        return MLPKernel(**sharding.map_tiles(fn, x1, x2, args=(sur, sigma_w, sigma_b, m),
                                              mesh=mesh, tile=tile_size, out=tiles,
                                              progress=progress))
    out = {k: jnp.zeros((n1, n2), jnp.float64) for k in which}
    blocks = [(i, j) for i in tile_starts(n1, t1) for j in tile_starts(n2, t2)]
    if progress is None:
        progress = len(blocks) > 16
    if progress:
        from tqdm.auto import tqdm
        blocks = tqdm(blocks, desc="kernel tiles", unit="tile")
    for i, j in blocks:
        xa, xb = x1[i:i + t1], x2[j:j + t2]
        res = fn(pad_rows(xa, t1), pad_rows(xb, t2), sur, sigma_w, sigma_b, m)
        for k in which:
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
