"""Tabulated conditional surrogate moments for the analytic LIF kernels (GitHub issue 9).

Every (input pair) x (time pair) entry of the SG-NTK needs one conditional moment
``E_{w ~ N(mean, var)}[psi'(w)] = dampening M(beta mean, beta^2 var)`` of the normalised
profile ``g`` (``psi'(x) = dampening g(beta x)``, :mod:`sgntk.surrogates`)::

    M(m, v) = E_{u ~ N(m, v)}[g(u)] = int g(u) N(u; m, v) du.

For the scale-mixture shapes this was a 32-218 term sum per entry (:func:`._fast._gsm_moment`).
Here ``log M`` is tabulated once per shape over

* ``y = m^2 / v`` in ``[0, GH_RATIO^2)``: 144 for fast_sigmoid and cauchy, 256 for sigmoid
  (``M`` is even in ``m``; beyond, ``sqrt(v) <= sqrt(m^2 + R^2) / GH_RATIO``, is the
  Gauss-Hermite region of :func:`._fast.conditional_moment_fast`, exact there with 8 / 12
  nodes and not tabulated; :data:`GH_RATIO`), and
* ``lambda = log v`` from ``-40 ln 2`` to ``30 ln 2`` (``v`` from 9.1e-13 to 1.07e9; above
  ``2^30`` the refined mixture sum and the log-distance rule start to differ, 1.4e-8 at
  ``v = e^23.5``),

on cells of width 1 in ``y`` and 1, 1/2, 1/6 octave in ``lambda`` (fast_sigmoid, cauchy,
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
is ~1e-13 against ``scipy.integrate.quad``), at the ``(5 y_max + 1) x (5 * 70 * sub + 1)`` grid
points: built once per shape and process, on first use (measured 1.4-3.7 s on the shared
machine; sigmoid's table is 31 MB), cached (:func:`moment_table`). Measured interpolation error
(relative error of ``M`` where ``M > 1e-20``, 8000 random points of the region against the
log-distance rule): fast_sigmoid 2.4e-9, cauchy 2.9e-9, sigmoid 1.9e-9 (below ``M = 1e-20``,
sigmoid's far tail, the cells' absolute error in ``log M`` shows: 1e-7 at ``M = 3e-55``);
``tests/test_lif_kernels_deep.py::test_moment_tables_vs_quadrature`` checks 1e-8 (and a few
points against ``scipy``).

Outside the ``lambda`` range:

* ``v < v_lo`` (kinked profiles only; for the smooth ones the Gauss-Hermite region covers
  ``sqrt(v) < R / 16``): ``log M(y, lambda) = log M(y, lambda_lo) sqrt(v / v_lo)``, the
  leading ``sqrt(v)`` behaviour at fixed ``y``; measured 1.3e-10 relative for fast_sigmoid
  (8.5e-9 with the earlier ``v_lo = 2^-34`` at ``y`` near 144, hence ``2^-40``).
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

# Gauss-Hermite region of the tabulated route: sqrt(v) <= sqrt(m^2 + R^2) / GH_RATIO (R: the
# profile's distance to its kink or pole, ``_fast._POLE``), so the table must cover y = m^2 / v
# below GH_RATIO^2. The further out the region starts, the fewer Gauss-Hermite nodes it needs
# (``_fast._TABLE_GH``): sigmoid's rule (~30 % of its kernel at 20 nodes, measured) needs 12
# nodes at ratio 16 (relative 2.4e-9 where M > 1e-12, against 60 nodes, 4e5 points of the
# region; at ratio 8 even 20 nodes err by 1.5e-3 there, where the tail 4 exp(-4|u|) tilts the
# Gaussian back towards the poles), fast_sigmoid and cauchy 8 nodes at ratio 12 (6.7e-12).
GH_RATIO = {"fast_sigmoid": 12.0, "cauchy": 12.0, "sigmoid": 16.0}
_HY = 1.0                      # cell width in y
# Cells per octave of v, per shape: sigmoid's log M has a part ~ 8 v (the tilted exponential
# tail 4 exp(-4 |u|) of the profile), whose lambda-derivatives grow like v up to v ~ 4, so
# it needs sixth-octave cells there (1.5e-8 with quarter octaves); cauchy half-octave cells.
_SUB = {"fast_sigmoid": 1, "cauchy": 2, "sigmoid": 6}
_OCT = (40, 30)                # lambda in [-40, 30] octaves
_DEG = 5                       # polynomial degree per direction
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
    """``M(m, v)`` by the refined scale-mixture sum (for building the table; float64 numpy in
    and out, summed by a jitted scan over the nodes: ~3x numpy's time on the 2-core machine)."""
    lo, hi, step = _quadrature._GSM_WINDOW[shape]
    s, w, _ = _quadrature.gsm_nodes(shape, window=(lo, max(hi, _BUILD_RIGHT), step / 3.0))
    with jax.enable_x64(True):
        return np.asarray(_mixture_sum(*(jnp.asarray(z, jnp.float64) for z in (m, v, s, w))))


@jax.jit
def _mixture_sum(m, v, s, w):
    """``sum_j w_j sqrt(s_j / (s_j + v)) exp(-m^2 / (2 (s_j + v)))`` over the nodes ``s, w``."""
    half_m2 = 0.5 * m * m

    def body(acc, node):
        sj, wj = node
        return acc + wj * jnp.sqrt(sj / (sj + v)) * jnp.exp(-half_m2 / (sj + v)), None

    return jax.lax.scan(body, jnp.zeros(jnp.broadcast_shapes(m.shape, v.shape)), (s, w))[0]


@functools.lru_cache(maxsize=None)
def _node_values(shape):
    """``log M`` at the global grid ``(5 y_max + 1, 5 * 70 * sub + 1)`` (numpy float64)."""
    y = _grid(_y_cells(shape), _HY, 0.0)
    n_l, h_l = _lambda_cells(shape)
    lam = _grid(n_l, h_l, _L0)
    v = np.exp(lam)[None, :]
    m = np.sqrt(y[:, None] * v)
    with jax.ensure_compile_time_eval(), jax.enable_x64(True):
        vals = _reference_moment(shape, m, v)
    return np.log(vals)


@functools.lru_cache(maxsize=None)
def moment_table(shape):
    """Monomial coefficients ``(36, y_max * n_lambda)`` of ``log M`` per cell (row ``a * 6 + b``:
    coefficient of ``t_y^a t_lambda^b`` in the cell's local coordinates ``t in [-1, 1]``;
    column ``i_y * n_lambda + i_lambda``, ``n_lambda = 70 * sub``). Built on first use, cached
    (numpy)."""
    if shape not in TABLE_SHAPES:
        raise ValueError(f"no moment table for shape {shape!r}; tabulated: {TABLE_SHAPES}")
    g = _node_values(shape)
    n = _DEG + 1
    n_y = _y_cells(shape)
    iy = np.arange(n_y)[:, None] * _DEG + np.arange(n)[None, :]          # (NY, 6)
    n_l = _lambda_cells(shape)[0]
    il = np.arange(n_l)[:, None] * _DEG + np.arange(n)[None, :]          # (NL, 6)
    blocks = g[iy[:, None, :, None], il[None, :, None, :]]                # (NY, NL, 6, 6)
    coef = np.einsum("ai,xyij,bj->abxy", _VINV, blocks, _VINV)            # (6, 6, NY, NL)
    return np.ascontiguousarray(coef.reshape(n * n, n_y * n_l))


def _base(shape):
    """The tabulated shape whose table serves ``shape`` (q_pseudo_spike at ``q = 2``:
    fast_sigmoid's)."""
    return "fast_sigmoid" if shape == "q_pseudo_spike" else shape


def gh_ratio(shape):
    """:data:`GH_RATIO` of the table that serves ``shape``."""
    return GH_RATIO[_base(shape)]


def y_max(shape):
    """Upper end of the tabulated ``y = m^2 / v``: ``GH_RATIO^2`` (144; sigmoid 256)."""
    return gh_ratio(shape) ** 2


def _y_cells(shape):
    """Number of cells in ``y``."""
    return int(y_max(shape) / _HY)


def _lambda_cells(shape):
    """(number, width) of the cells in ``lambda = log v``."""
    sub = _SUB[_base(shape)]
    return sum(_OCT) * sub, math.log(2.0) / sub


def in_range(v):
    """Whether normalised variances ``v`` are below the table's upper end (elementwise)."""
    return v <= V_RANGE[1]


def table_moment(shape, m, v):
    """``M(m, v) = E_{u ~ N(m, v)}[g(u)]`` (normalised units) from :func:`moment_table`.

    Elementwise over ``m`` and ``v > 0``; meaningful for ``m^2 / v < y_max(shape)`` and ``v <=
    v_hi`` (module docstring; outside, finite values with finite derivatives, to be discarded by the
    caller's ``where``). ``q_pseudo_spike`` means its tail ``q = 2`` (= fast_sigmoid).
    """
    coef = moment_table(_base(shape))
    n_y = _y_cells(shape)
    n_l, h_l = _lambda_cells(shape)
    v_lo, v_hi = V_RANGE
    y = jnp.minimum(m * m / v, y_max(shape) * (1.0 - 1e-15))
    lam = _quadrature.fast_log(jnp.clip(v, v_lo, v_hi))
    py = y * (1.0 / _HY)
    pl = jnp.clip((lam - _L0) * (1.0 / h_l), 0.0, float(n_l))
    fy = jnp.clip(jnp.floor(py), 0.0, n_y - 1.0)
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
