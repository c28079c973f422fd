"""Tabulated conditional surrogate moments for the analytic LIF kernels (GitHub issue 9).

Every (input pair) x (time pair) entry of the SG-NTK needs one conditional moment
``E_{w ~ N(mean, var)}[psi'(w)] = dampening M(beta mean, beta^2 var)`` of the normalised
profile ``g`` (``psi'(x) = dampening g(beta x)``, :mod:`sgntk.surrogates`)::

    M(m, v) = E_{u ~ N(m, v)}[g(u)] = int g(u) N(u; m, v) du.

For the scale-mixture shapes this was a 32-218 term sum per entry (:func:`._fast._gsm_moment`).
Here ``log M`` is tabulated once per shape over

* ``y = m^2 / v`` in ``[0, 64)`` (``M`` is even in ``m``; ``y >= 64``, i.e. ``sqrt(v) <=
  |m| / 8``, is the Gauss-Hermite region of :func:`._fast.conditional_moment_fast`, exact
  there and not tabulated), and
* ``lambda = log v`` from ``-34 ln 2`` to ``30 ln 2`` (``v`` from 5.8e-11 to 1.07e9; above
  ``2^30`` the refined mixture sum and the log-distance rule start to differ, 1.4e-8 at
  ``v = e^23.5``),

on cells of width 1 in ``y`` (64) and 1, 1/2, 1/6 octave in ``lambda`` (fast_sigmoid, cauchy,
sigmoid: :data:`_SUB`). On each cell ``log M`` is the tensor polynomial of degree 5 x 5
interpolating it at the cell's Chebyshev-Lobatto points (neighbouring cells share their edge
points, so the interpolant is continuous); it is stored as monomial coefficients in the local
coordinates, so a lookup is one ``log`` (:func:`sgntk._quadrature.fast_log`), 36
one-dimensional gathers (a column per coefficient: 2.6x faster than one row gather on XLA's CPU
backend), a two-dimensional Horner scheme and one ``exp``. ``log M`` is smooth in ``(y,
lambda)``: for large ``v`` it tends to ``-y/2 - lambda/2 + const`` (the Gaussian dominates), for
small ``v`` to ``log g(0) = 0`` (like ``sqrt(v)`` for the profiles with a kink at 0); the fast
variations are the crossover of ``phi(m/s)/s`` and the algebraic tail ``g(m)`` at large ``v``
(resolved by the unit cells in ``y``) and sigmoid's ``~8 v`` term from its tilted
exponential tail (hence its finer cells in ``lambda``).

The node values come from the scale-mixture sum of :func:`sgntk._quadrature.gsm_nodes` with a
third of its trapezoid step and the window extended to ``s = e^45`` (:func:`_reference_moment`;
1e-15 .. 1e-10 against the log-distance rule :func:`sgntk._quadrature.gauss_expectation`, which
is ~1e-13 against ``scipy.integrate.quad``), at the ``321 x (5 * 64 * sub + 1)`` grid points:
built once per shape and process, on first use (measured 1.2-2.8 s on the shared machine),
cached (:func:`moment_table`). Measured interpolation error (relative error of ``M``, 40 000
random points of the region against the log-distance rule): fast_sigmoid 3.9e-9 (worst below
``v_lo``), cauchy 3.1e-9, sigmoid 1.1e-9; ``tests/test_lif_kernels_deep.py::
test_moment_tables_vs_quadrature`` checks 1e-8 (and a few points against ``scipy``).

Outside the ``lambda`` range:

* ``v < v_lo`` (kinked profiles only; for the smooth ones the Gauss-Hermite region covers
  ``sqrt(v) < R / 8``): ``log M(y, lambda) = log M(y, lambda_lo) sqrt(v / v_lo)``, the
  leading ``sqrt(v)`` behaviour at fixed ``y``; the next term is ``O(v)``, relative error
  ``< 12 v_lo ~ 7e-10`` for fast_sigmoid.
* ``v > v_hi``: not covered; :func:`in_range` tells the caller, which then uses the exact
  route (the LIF kernel checks a bound on every normalised variance of the call once).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import _quadrature
from .. import surrogates as _sg

__all__ = ["TABLE_SHAPES", "moment_table", "table_moment", "in_range", "V_RANGE"]

#: shapes with a table (q_pseudo_spike uses fast_sigmoid's at its default tail q = 2)
TABLE_SHAPES = ("fast_sigmoid", "sigmoid", "cauchy")
#: profiles with a kink at 0 (``M -> g(0)`` like ``sqrt(v)``)
_KINKED = ("fast_sigmoid", "q_pseudo_spike", "exponential")

Y_MAX = 64.0                   # y = m^2 / v tabulated on [0, Y_MAX)
_HY = 1.0                      # cell width in y
# Cells per octave of v, per shape: sigmoid's log M has a part ~ 8 v (the tilted exponential
# tail 4 exp(-4 |u|) of the profile), whose lambda-derivatives grow like v up to v ~ 4, so
# it needs sixth-octave cells there (1.5e-8 with quarter octaves); cauchy half-octave cells.
_SUB = {"fast_sigmoid": 1, "cauchy": 2, "sigmoid": 6}
_OCT = (34, 30)                # lambda in [-34, 30] octaves
_DEG = 5                       # polynomial degree per direction
_NY = int(Y_MAX / _HY)
_L0 = -_OCT[0] * math.log(2.0)
V_RANGE = (2.0 ** -_OCT[0], 2.0 ** _OCT[1])
# Chebyshev-Lobatto points on [-1, 1], ascending, and the inverse Vandermonde matrix that maps
# values there to monomial coefficients.
_S = -np.cos(np.pi * np.arange(_DEG + 1) / _DEG)
_VINV = np.linalg.inv(np.vander(_S, _DEG + 1, increasing=True))


def _grid(n_cells, width, start):
    """Global node positions: cell ``c``'s node ``j`` is entry ``c * _DEG + j``."""
    local = (_S + 1.0) / 2.0
    pos = start + width * (np.arange(n_cells)[:, None] + local[None, :])
    out = np.empty(n_cells * _DEG + 1)
    out[: n_cells * _DEG] = pos[:, :_DEG].reshape(-1)
    out[-1] = start + width * n_cells
    return out


# Scale-mixture windows for building the tables: the shape's window of
# sgntk._quadrature.gsm_nodes with a third of its step (the trapezoid rule in log s then errs
# by ~exp(-pi^2 / step) ~ 1e-18 instead of ~1e-7 at v -> 0) and the right end moved to
# s = e^45, so that the mass beyond it (~e^-45 for the algebraic tails) is negligible also at
# v = v_hi; it is left out (w_inf = 1 - sum w would carry the weights' rounding, ~2e-13,
# which matters where M is ~1e-12: large v, large y).
_BUILD_RIGHT = 45.0


def _reference_moment(shape, m, v):
    """``M(m, v)`` by the refined scale-mixture sum (for building the table)."""
    lo, hi, step = _quadrature._GSM_WINDOW[shape]
    s, w, _ = _quadrature.gsm_nodes(shape, window=(lo, max(hi, _BUILD_RIGHT), step / 3.0))
    s, w = np.asarray(s), np.asarray(w)
    out = np.zeros(np.broadcast(m, v).shape)
    for sj, wj in zip(s, w):
        q = sj / (sj + v)
        out = out + wj * np.sqrt(q) * np.exp(-0.5 * m * m / (sj + v))
    return out


@functools.lru_cache(maxsize=None)
def _node_values(shape):
    """``log M`` at the global grid ``(321, 5 * 64 * sub + 1)`` (numpy float64)."""
    y = _grid(_NY, _HY, 0.0)
    n_l, h_l = _lambda_cells(shape)
    lam = _grid(n_l, h_l, _L0)
    v = np.exp(lam)[None, :]
    m = np.sqrt(y[:, None] * v)
    with jax.ensure_compile_time_eval(), jax.enable_x64(True):
        vals = _reference_moment(shape, m, v)
    return np.log(vals)


@functools.lru_cache(maxsize=None)
def moment_table(shape):
    """Monomial coefficients ``(36, 64 * n_lambda)`` of ``log M`` per cell (row ``a * 6 + b``:
    coefficient of ``t_y^a t_lambda^b`` in the cell's local coordinates ``t in [-1, 1]``;
    column ``i_y * n_lambda + i_lambda``, ``n_lambda = 64 * sub``). Built on first use, cached
    (numpy)."""
    if shape not in TABLE_SHAPES:
        raise ValueError(f"no moment table for shape {shape!r}; tabulated: {TABLE_SHAPES}")
    g = _node_values(shape)
    n = _DEG + 1
    iy = np.arange(_NY)[:, None] * _DEG + np.arange(n)[None, :]          # (NY, 6)
    n_l = _lambda_cells(shape)[0]
    il = np.arange(n_l)[:, None] * _DEG + np.arange(n)[None, :]          # (NL, 6)
    blocks = g[iy[:, None, :, None], il[None, :, None, :]]                # (NY, NL, 6, 6)
    coef = np.einsum("ai,xyij,bj->abxy", _VINV, blocks, _VINV)            # (6, 6, NY, NL)
    return np.ascontiguousarray(coef.reshape(n * n, _NY * n_l))


def _lambda_cells(shape):
    """(number, width) of the cells in ``lambda = log v``."""
    sub = _SUB["fast_sigmoid" if shape == "q_pseudo_spike" else shape]
    return sum(_OCT) * sub, math.log(2.0) / sub


def in_range(v):
    """Whether normalised variances ``v`` are below the table's upper end (elementwise)."""
    return v <= V_RANGE[1]


def table_moment(shape, m, v):
    """``M(m, v) = E_{u ~ N(m, v)}[g(u)]`` (normalised units) from :func:`moment_table`.

    Elementwise over ``m`` and ``v > 0``; meaningful for ``m^2 / v < 64`` and ``v <= v_hi``
    (module docstring; outside, finite values with finite derivatives, to be discarded by the
    caller's ``where``). ``q_pseudo_spike`` means its tail ``q = 2`` (= fast_sigmoid).
    """
    coef = moment_table("fast_sigmoid" if shape == "q_pseudo_spike" else shape)
    n_l, h_l = _lambda_cells(shape)
    v_lo, v_hi = V_RANGE
    y = jnp.minimum(m * m / v, Y_MAX * (1.0 - 1e-15))
    lam = _quadrature.fast_log(jnp.clip(v, v_lo, v_hi))
    py = y * (1.0 / _HY)
    pl = jnp.clip((lam - _L0) * (1.0 / h_l), 0.0, float(n_l))
    fy = jnp.clip(jnp.floor(py), 0.0, _NY - 1.0)
    fl = jnp.clip(jnp.floor(pl), 0.0, n_l - 1.0)
    ty = 2.0 * (py - fy) - 1.0
    tl = 2.0 * (pl - fl) - 1.0
    i = fy.astype(jnp.int32) * n_l + fl.astype(jnp.int32)
    n = _DEG + 1
    out = None
    for a in range(n - 1, -1, -1):          # Horner in t_y over rows of Horner in t_lambda
        acc = jnp.asarray(coef[a * n + n - 1])[i]
        for b in range(n - 2, -1, -1):
            acc = acc * tl + jnp.asarray(coef[a * n + b])[i]
        out = acc if out is None else out * ty + acc
    if shape in _KINKED:
        out = jnp.where(v < v_lo, out * jnp.sqrt(jnp.maximum(v, 0.0) / v_lo), out)
    return jnp.exp(out)
