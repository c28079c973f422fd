"""The LIF surrogate Gram's pair expectation ``E[psi'(u - theta) psi'(v - theta)]`` (GitHub
issue 9): a sum over Gaussian bumps for the Gaussian-scale-mixture shapes and gaussian / erf
(:func:`surrogate_pair_fast`), closed forms over rectangles of the bivariate normal for the
compactly supported triangular and rectangular profiles (:func:`compact_pair_closed`), and the
constant ``dampening^2`` for straight-through.

Split from :mod:`._fast` (which keeps the orthant probability and the conditional surrogate
moment); :func:`sgntk.lif_kernels.analytic.surrogate_pair_expectation` is the public entry.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import _quadrature
from .. import surrogates as _sg
from ._fast import bvn_upper_fast

__all__ = ["surrogate_pair_fast", "PAIR_SHAPES", "compact_pair_closed", "COMPACT_SHAPES"]


# Profiles that are one Gaussian bump, g(u) = w0 exp(-u^2 / (2 s0)): the pair sum below with
# one node and no mass at s = inf.
_ONE_BUMP = {"gaussian": (1.0 / (2.0 * math.pi), 1.0), "erf": (0.5, 2.0 / math.sqrt(math.pi))}
#: shapes whose surrogate Gram entry :func:`surrogate_pair_fast` computes (mixtures of bumps)
PAIR_SHAPES = tuple(_quadrature.GSM_SHAPES) + tuple(_ONE_BUMP)


def surrogate_pair_fast(surrogate: _sg.Surrogate, a, b, r, theta, moment):
    """``E[psi'(u - theta) psi'(v - theta)]``, ``(u, v) ~ N(0, [[a, r], [r, b]])``, for the
    shapes in :data:`PAIR_SHAPES`, elementwise over broadcast ``a, b, r`` (``a > 0``).

    The profile on the ``u`` side is its Gaussian scale mixture ``g(z) = sum_j w_j
    exp(-z^2 / (2 s_j)) + w_inf`` (:func:`sgntk._quadrature.gsm_nodes`; one bump for gaussian
    and erf). In normalised units (``A = beta^2 a``, ``R = beta^2 r``, ``Th = beta theta``) each
    bump times the density of ``u`` is a Gaussian in ``u``::

        N(u; 0, A) exp(-(u - Th)^2 / (2 s)) = sqrt(s / (s + A)) exp(-Th^2 / (2 (s + A)))
                                              N(u; A Th / (s + A), A s / (s + A))

    and ``v | u ~ N(R u / A, B - R^2 / A)``, so the bump's term is that prefactor times the
    conditional moment ``E[psi'(w)]``, ``w ~ N((R / A) A Th / (s + A) - Th, (R / A)^2 A s /
    (s + A) + B - R^2 / A)`` (``/ beta``, ``/ beta^2`` back in the units of psi'), computed by
    ``moment(mean, var)`` (:func:`conditional_moment_fast` behind the zero-variance guard);
    the mass at ``s = inf`` contributes ``w_inf E[psi'(v - theta)]``. Cost per entry: one
    conditional moment per node (32-218 nodes, each moment a closed form or a 32-218 term
    sum), against ~5e6 profile evaluations of the nested quadrature
    (:func:`sgntk.lif_kernels.analytic.surrogate_pair_expectation`'s reference route).
    Checked against ``scipy.integrate.dblquad``
    (``tests/test_lif_kernels.py::test_surrogate_pair_expectation_vs_dblquad``).
    """
    shape = surrogate.shape
    if shape in _ONE_BUMP:
        s0, w0 = _ONE_BUMP[shape]
        s, w, w_inf = jnp.asarray([s0]), jnp.asarray([w0]), 0.0
    else:
        s, w, w_inf = _quadrature.gsm_nodes(shape, surrogate.tail)
    beta = jnp.asarray(surrogate.sharpness)
    big_a, big_r, th = beta**2 * a, beta**2 * r, beta * theta
    kap = big_r / big_a
    cond_var = jnp.maximum(beta**2 * b - big_r * kap, 0.0)

    def term(mean_n, var_n):          # the moment in the units of psi'
        return moment(mean_n / beta, var_n / beta**2)

    def body(acc, node):
        sj, wj = node
        inv = 1.0 / (sj + big_a)
        pref = jnp.sqrt(sj * inv) * jnp.exp(-0.5 * th * th * inv)
        return acc + wj * pref * term(kap * big_a * th * inv - th,
                                      kap * kap * big_a * sj * inv + cond_var), None

    acc0 = w_inf * term(-th + jnp.zeros_like(big_a), beta**2 * b + jnp.zeros_like(big_a))
    acc, _ = jax.lax.scan(body, acc0, (s, w))
    return jnp.asarray(surrogate.dampening) * acc


# --------------------------------------------------------------------------------------
# Compactly supported piecewise-linear profiles: closed forms over rectangles.
# --------------------------------------------------------------------------------------
#: shapes whose surrogate Gram entry :func:`compact_pair_closed` computes
COMPACT_SHAPES = ("triangular", "rectangular")
_BIG = 1e30                                             # "infinite" standardised distance


def _bvn_upper_any(h, k, rho):
    """``P(X > h, Y > k)`` for any finite ``h, k`` (standard bivariate normal, correlation
    ``rho``) from :func:`._fast.bvn_upper_fast` (``h, k >= 0``) by reflecting the negative
    coordinates: ``P(X > h, Y > k) = Phi(-k) - P(-X > -h, Y > k)`` for ``h < 0 <= k`` (and
    the mirror case), ``= 1 - Phi(h) - Phi(k) + P(-X > -h, -Y > -k)`` for ``h, k < 0``."""
    ah, ak = jnp.abs(h), jnp.abs(k)
    ph, pk = _quadrature.norm_cdf(-ah), _quadrature.norm_cdf(-ak)
    nh, nk = h < 0, k < 0
    up = bvn_upper_fast(ah, ak, jnp.where(nh != nk, -rho, rho), ph, pk)
    return jnp.where(nh, jnp.where(nk, 1.0 - ph - pk + up, pk - up),
                     jnp.where(nk, ph - up, up))


def _conditional_z(d, s):
    """``d / s`` (the standardised distance of an edge from a conditional mean), with the
    limits ``+-inf`` (here ``+-1e30``) and 0 at ``s = 0`` (correlation +-1)."""
    pos = s > 0
    return jnp.where(pos, d / jnp.where(pos, s, 1.0),
                     jnp.where(d > 0, _BIG, jnp.where(d < 0, -_BIG, 0.0)))


def _diff(x, axis):
    """``d[e] = x[e] - x[e - 1]`` along ``axis`` (length ``n`` -> ``n + 1``, zeros outside):
    the weight of edge ``e`` in a sum over cells ``[e, e + 1]`` of ``x_cell (f(e) - f(e+1))``."""
    zero = jnp.zeros_like(jax.lax.slice_in_dim(x, 0, 1, axis=axis))
    return (jnp.concatenate([x, zero], axis) - jnp.concatenate([zero, x], axis))


def _edges(shape, a, b, r, theta, sharpness):
    """The standardised setting shared by the value and its derivatives: ``sqrt(a)``,
    ``sqrt(b)``, the correlation (snapped to +-1 where ``1 - rho^2 <= 64 eps``, as in
    :func:`sgntk.lif_kernels.analytic.orthant_probability`), ``s = sqrt(1 - rho^2)``, the
    degenerate mask and the profile's kinks / jumps standardised, ``x[e] = (theta + o_e
    half) / sqrt(a)`` (n, 1, ...) and ``y[f]`` (1, n, ...)."""
    from .analytic import _DEGENERATE        # analytic imports this module at its top
    sa, sb = jnp.sqrt(a), jnp.sqrt(b)
    rho = jnp.clip(r / (sa * sb), -1.0, 1.0)
    c1 = 1.0 - rho * rho
    degen = c1 <= _DEGENERATE                  # perfect correlation up to rounding (as _orthant)
    rho = jnp.where(degen, jnp.sign(rho), rho)
    s = jnp.where(degen, 0.0, jnp.sqrt(jnp.where(degen, 1.0, c1)))
    beta = jnp.asarray(sharpness)
    half = 1.0 / beta if shape == "triangular" else 0.5 / beta   # support: |u - theta| < half
    offs = (-1.0, 0.0, 1.0) if shape == "triangular" else (-1.0, 1.0)
    x = jnp.stack([(theta + o * half) / sa for o in offs])[:, None]
    y = jnp.stack([(theta + o * half) / sb for o in offs])[None, :]
    return sa, sb, rho, c1, s, degen, beta, x, y


def _tri_cells(x, y, rh, sc):
    """The special-function arrays of the four triangular cells: corner orthant
    probabilities ``L[e, f] = P(X > x_e, Y > y_f)`` (3, 3), the conditional standardised
    edges ``zy[e, f]`` of ``Y | X = x_e`` (3, 3) and ``zx`` likewise, and the conditional
    interval probabilities ``qy[e, j] = P(Y in [y_j, y_j+1] | X = x_e)`` (3, 2), ``qx[i, f]``
    (2, 3)."""
    corner = _bvn_upper_any(x, y, rh)                         # L[e, f] = P(X > x_e, Y > y_f)
    zy = _conditional_z(y - rh * x, sc)                       # edge y_f for Y | X = x_e
    zx = _conditional_z(x - rh * y, sc)                       # edge x_e for X | Y = y_f
    qy = _quadrature._interval_prob(zy[:, :-1], zy[:, 1:])    # (3, 2)
    qx = _quadrature._interval_prob(zx[:-1, :], zx[1:, :])    # (2, 3)
    return corner, zy, zx, qy, qx


def _tri_cell_sum(cells, x, y, rh, sc, al, bx, by, ga):
    """``sum_cells al P + bx E[X 1] + by E[Y 1] + ga E[X Y 1]`` over the four cells (``al ..
    ga`` (2, 2, ...) per cell, standard bivariate normal, correlation ``rh``), by Stein's
    identity ``E[X h(X, Y)] = E[d_x h] + rho E[d_y h]`` (``h = 1_cell, Y 1_cell``)::

        E[X 1] = ddx + rho ddy,  E[Y 1] = ddy + rho ddx,  E[X Y 1] = dmx + rho (P + ydy)

    with ``dx[e, j] = phi(x_e) P(Y in [y_j, y_j+1] | X = x_e)`` (``ddx`` its difference over
    the cell's two x edges), ``dy`` likewise, ``mx[e, j] = phi(x_e) E[Y 1{Y in cell j} | X =
    x_e]`` (``= phi(x_e) (rho x_e qy + s (phi(zy_j) - phi(zy_j+1)))``), ``ydy = y_j dy_j -
    y_j+1 dy_j+1``. The cells' weights are moved onto corners / edges (:func:`_diff`)."""
    corner, zy, _, qy, qx = cells
    # weights of the cells' P, ddx, ddy, dmx, ydy, then moved onto corners / edges
    w_p, w_dx, w_dy, w_mx, w_ydy = al + rh * ga, bx + rh * by, rh * bx + by, ga, rh * ga
    w_corner = _diff(_diff(w_p, 0), 1)                        # (3, 3)
    w_qy = _diff(w_dx, 0)                                     # dx's weight, (3, 2)
    w_mxe = _diff(w_mx, 0)                                    # mx's weight, (3, 2)
    w_qx = _diff(w_dy, 1) + y * _diff(w_ydy, 1)               # dy's weight, (2, 3)
    phi = _quadrature._phi
    px, py = phi(x), phi(y)
    return (jnp.sum(w_corner * corner, (0, 1))
            + jnp.sum(px * (w_qy + rh * x * w_mxe) * qy, (0, 1))
            + jnp.sum(py * w_qx * qx, (0, 1))
            + jnp.sum(sc * px * _diff(w_mxe, 1) * phi(zy), (0, 1)))


def _tri_signs(rho):
    """``si`` (2, 1, ...) = +1 / -1 on the rising / falling side of the u profile, ``sj`` its
    transpose (v profile)."""
    si = jnp.asarray((1.0, -1.0)).reshape((2, 1) + (1,) * rho.ndim)
    return si, jnp.swapaxes(si, 0, 1)


def _use_gl(a, b, c1, beta):
    """Where the triangular cells take the Gauss-Legendre rule (:func:`_compact_pair_value`)."""
    small = jnp.minimum(beta * beta * a, beta * beta * b)
    return (small >= _GL_MIN_VAR) & (c1 * small >= 1.0)


def _compact_pair_value(shape, a, b, r, theta, dampening, sharpness):
    """``E[psi'(u - theta) psi'(v - theta)]`` for ``shape`` in :data:`COMPACT_SHAPES`, ``a, b >
    0`` (see :func:`compact_pair_closed`).

    Layout: the corner / edge axes lead, the entries are the minor (vectorised) axis, and
    every special-function array (orthant probabilities, interval probabilities, densities)
    enters only through one weighted sum over its leading axes, with the cells' weights moved
    onto its corners / edges (:func:`_diff`). Slicing a special-function array instead (``p =
    L[:-1, :-1] - L[1:, :-1] - ...``) made XLA's CPU backend run the fused loop 3-4x slower
    (measured: four orthant probabilities 0.87 us per entry, combined by slices 3.2 us, by a
    weighted sum 1.2 us)."""
    sa, sb, rho, c1, s, _, beta, x, y = _edges(shape, a, b, r, theta, sharpness)
    rh, sc = rho[None, None], s[None, None]
    if shape == "rectangular":      # P(cell) = L[0, 0] - L[1, 0] - L[0, 1] + L[1, 1]
        corner = _bvn_upper_any(x, y, rh)               # L[e, f] = P(X > x_e, Y > y_f)
        w = jnp.asarray([[1.0, -1.0], [-1.0, 1.0]]).reshape((2, 2) + (1,) * rho.ndim)
        return jnp.asarray(dampening) ** 2 * jnp.sum(w * corner, (0, 1))
    # Triangular: on cell (i, j) (x in [x_i, x_i+1], y in [y_j, y_j+1]) the product is
    # (1 + si ca (X - xc)) (1 + sj cb (Y - yc)) with ca = beta sqrt(a), xc = theta / sqrt(a)
    # (ca xc = beta theta), si = +1 / -1 on the rising / falling side; expanded:
    #   al P + bx E[X 1] + by E[Y 1] + ga E[X Y 1]  on the cell (:func:`_tri_cell_sum`).
    si, sj = _tri_signs(rho)
    bt = (beta * theta)[None, None]
    ca, cb = (beta * sa)[None, None], (beta * sb)[None, None]
    al = (1.0 - si * bt) * (1.0 - sj * bt)
    bx = si * ca * (1.0 - sj * bt)
    by = sj * cb * (1.0 - si * bt)
    ga = si * sj * ca * cb
    total = _tri_cell_sum(_tri_cells(x, y, rh, sc), x, y, rh, sc, al, bx, by, ga)
    # The sums above cancel by ~A B (weights ~beta^2 sqrt(a b) on orthant probabilities of
    # O(1)); where the cells are small against the Gaussian (A, B >= 30) and not narrower
    # than its ridge ((1 - rho^2) min(A, B) >= 1), a 6 x 6 Gauss-Legendre rule per cell of
    # the bilinear product times the density is exact to ~3e-10 instead (measured against
    # the 1-D scipy reference incl. the ridge limit, beta 0.5-10, beta theta up to 10,
    # A 10-1e5; 2.5e-11 for A >= 300). The closed form was 1.8e-8 off at A = 330, B = 220,
    # beta theta = 5.5.
    use_gl = _use_gl(a, b, c1, beta)
    xe, ye, ca0, cb0 = x[:, 0], y[0], beta * sa, beta * sb

    def product(i, j, xs, ys):
        return ((1.0 - ca0 * jnp.abs(xs - xe[1])) * (1.0 - cb0 * jnp.abs(ys - ye[1])),)

    gl, = _triangle_cells_gl(xe, ye, jnp.where(use_gl, rho, 0.0), product)
    return jnp.asarray(dampening) ** 2 * jnp.where(use_gl, gl, total)


_GL_MIN_VAR = 30.0
_CELL_X, _CELL_W = np.polynomial.legendre.leggauss(6)


def _triangle_cells_gl(xe, ye, rho, integrand):
    """``sum_cells E[h_k(X, Y) 1_cell]`` for the functions ``h_k`` (standard bivariate
    normal, correlation ``rho``, ``|rho| < 1``) by a 6 x 6 Gauss-Legendre rule on each of the
    four cells between the edges ``xe``, ``ye`` (3, ...); ``integrand(i, j, xs, ys)`` gives
    the tuple of ``h_k`` on cell ``(i, j)`` at the nodes ``xs`` (6, 1, ...), ``ys`` (1, 6,
    ...). Node axes lead (see :func:`_compact_pair_value`). Returns the tuple of sums."""
    nodes = jnp.asarray(0.5 * (_CELL_X + 1.0)).reshape((-1, 1) + (1,) * rho.ndim)
    wts = jnp.asarray(np.outer(_CELL_W, _CELL_W) / 4.0).reshape((6, 6) + (1,) * rho.ndim)
    inv = 1.0 / (1.0 - rho * rho)
    norm = jnp.sqrt(inv) / (2.0 * math.pi)
    total = None
    for i in range(2):
        xs = xe[i] + (xe[i + 1] - xe[i]) * nodes              # (6, 1, ...)
        for j in range(2):
            ys = jnp.swapaxes(ye[j] + (ye[j + 1] - ye[j]) * nodes, 0, 1)   # (1, 6, ...)
            q = (xs * xs - 2.0 * rho * xs * ys + ys * ys) * inv
            dens = jnp.exp(-0.5 * q)
            cell = [jnp.sum(wts * h * dens, (0, 1)) * (xe[i + 1] - xe[i]) * (ye[j + 1] - ye[j])
                    for h in integrand(i, j, xs, ys)]
            total = cell if total is None else [t + c for t, c in zip(total, cell)]
    return tuple(norm * t for t in total)


def _compact_pair_partials(shape, a, b, r, theta, sharpness):
    """``E[g(beta (u - theta)) g(beta (v - theta))]`` 's partial derivatives in ``(a, b, r,
    theta, beta)`` (g the normalised profile: multiply by ``gamma^2``), closed forms in the
    cells / orthant machinery of :func:`_compact_pair_value`, finite at correlation +-1.

    With ``f = psi'`` (Gaussian integration by parts: heat equation and Price's theorem)::

        dF/dr = E[f'(u - theta) f'(v - theta)],   dF/da = 1/2 E[f''(u - theta) f(v - theta)],
        dF/dtheta = -E[f'(u - theta) f(v - theta)] - E[f(u - theta) f'(v - theta)],
        dF/dbeta = (2 (a dF/da + b dF/db + r dF/dr) + theta dF/dtheta) / beta

    (the last from ``F(a, b, r, theta; beta) = F(beta^2 a, beta^2 b, beta^2 r, beta theta;
    1)``). Triangular: ``f'`` is ``+-gamma beta`` on the rising / falling side, so ``dF/dr``
    and ``dF/dtheta`` are cell sums (:func:`_tri_cell_sum`), and ``f''`` is ``gamma beta
    (1, -2, 1)`` deltas at the kinks, so ``dF/da = gamma^2 beta / 2 sum_e k_e phi(x_e) /
    sqrt(a) E[g | X = x_e]`` (conditional triangle moment from the cell's interval
    probabilities); all bounded at correlation +-1 and continuous up to it. Where the value
    takes the Gauss-Legendre cells, so do the derivatives (``dF/da = H_a - rho/2 sqrt(b/a)
    dF/dr`` with ``H_a = E[f'(u - theta) u f(v - theta)] / (2a)`` the derivative at fixed
    correlation). Rectangular: ``f'`` is two deltas, so with ``H`` the derivatives in ``(a,
    b, rho, theta)``: ``H_a = 1/(2a) sum_e s_e x_e phi(x_e) P(Y in J | X = x_e)``, ``H_theta
    = -sum_e s_e phi(x_e) P(Y in J | X = x_e) / sqrt(a) - (a <-> b)``, ``H_rho = sum_{e, f}
    s_e s_f phi_2(x_e, y_f; rho)`` (infinite at ``rho = +-1``, where the tangent of rho is 0
    up to rounding, so it is dropped for ``1 - rho^2 <= 64 eps``: the derivative of the exact
    degenerate value, as for the orthant probability), and ``dF/da = H_a - rho H_rho / (2a)``,
    ``dF/dr = H_rho / sqrt(a b)``, ``a dF/da + b dF/db + r dF/dr = a H_a + b H_b``.
    """
    sa, sb, rho, c1, s, degen, beta, x, y = _edges(shape, a, b, r, theta, sharpness)
    rh, sc = rho[None, None], s[None, None]
    phi = _quadrature._phi
    if shape == "rectangular":
        sgn = jnp.asarray((1.0, -1.0)).reshape((2,) + (1,) * rho.ndim)    # jump up / down
        xe, yf = x[:, 0], y[0]
        zy = _conditional_z(y - rh * x, sc)                                # (2, 2)
        zx = _conditional_z(x - rh * y, sc)
        qy = _quadrature._interval_prob(zy[:, 0], zy[:, 1])                # P(Y in J | x_e)
        qx = _quadrature._interval_prob(zx[0], zx[1])                      # P(X in I | y_f)
        ex, ey = sgn * phi(xe) * qy, sgn * phi(yf) * qx
        h_a = jnp.sum(xe * ex, 0) / (2.0 * a)
        h_b = jnp.sum(yf * ey, 0) / (2.0 * b)
        h_th = -(jnp.sum(ex, 0) / sa + jnp.sum(ey, 0) / sb)
        safe = jnp.where(degen, 1.0, s)
        sg2 = sgn[:, None] * sgn[None, :]
        h_rho = jnp.where(degen, 0.0, jnp.sum(sg2 * phi(x) * phi(zy), (0, 1)) / safe)
        d_a = h_a - rho * h_rho / (2.0 * a)
        d_b = h_b - rho * h_rho / (2.0 * b)
        d_r = h_rho / (sa * sb)
        d_beta = (2.0 * (a * h_a + b * h_b) + theta * h_th) / beta
        return d_a, d_b, d_r, h_th, d_beta
    si, sj = _tri_signs(rho)
    bt = (beta * theta)[None, None]
    ca, cb = (beta * sa)[None, None], (beta * sb)[None, None]
    zero = jnp.zeros_like(si * sj * bt)                  # (2, 2, ...)
    cells = _tri_cells(x, y, rh, sc)
    _, zy, zx, qy, qx = cells
    # dF/dr = beta^2 sum si sj P;  dF/dtheta = -beta sum (si g_v + sj g_u) on the cells
    s_r = _tri_cell_sum(cells, x, y, rh, sc, si * sj + zero, zero, zero, zero)
    s_th = _tri_cell_sum(cells, x, y, rh, sc, si * (1.0 - sj * bt) + sj * (1.0 - si * bt),
                         si * sj * ca, si * sj * cb, zero)
    # E[g(cb Y - bt) | X = x_e] = sum_j (1 - sj bt) qy + sj cb (rho x_e qy + s dphi(zy)), (3, ...)
    kink = jnp.asarray((1.0, -2.0, 1.0)).reshape((3,) + (1,) * rho.ndim)
    my = jnp.sum((1.0 - sj * bt) * qy + sj * cb * (
        rh * x * qy + sc * (phi(zy[:, :-1]) - phi(zy[:, 1:]))), 1)
    mx = jnp.sum((1.0 - si * bt) * qx + si * ca * (
        rh * y * qx + sc * (phi(zx[:-1]) - phi(zx[1:]))), 0)
    f_a = 0.5 * beta * jnp.sum(kink * phi(x[:, 0]) * my, 0) / sa
    f_b = 0.5 * beta * jnp.sum(kink * phi(y[0]) * mx, 0) / sb
    f_r = beta * beta * s_r
    f_th = -beta * s_th
    use_gl = _use_gl(a, b, c1, beta)
    xe, ye, ca0, cb0 = x[:, 0], y[0], beta * sa, beta * sb
    sgn = (1.0, -1.0)

    def pieces(i, j, xs, ys):
        fx = 1.0 - ca0 * jnp.abs(xs - xe[1])
        fy = 1.0 - cb0 * jnp.abs(ys - ye[1])
        return (sgn[i] * sgn[j] + 0.0 * xs * ys, sgn[j] * fx + sgn[i] * fy,
                sgn[i] * xs * fy, sgn[j] * ys * fx)

    j_r, j_th, j_a, j_b = _triangle_cells_gl(xe, ye, jnp.where(use_gl, rho, 0.0), pieces)
    g_r = beta * beta * j_r
    g_a = 0.5 * beta / sa * j_a - 0.5 * rho * sb / sa * g_r
    g_b = 0.5 * beta / sb * j_b - 0.5 * rho * sa / sb * g_r
    d_a, d_b = jnp.where(use_gl, g_a, f_a), jnp.where(use_gl, g_b, f_b)
    d_r, d_th = jnp.where(use_gl, g_r, f_r), jnp.where(use_gl, -beta * j_th, f_th)
    d_beta = (2.0 * (a * d_a + b * d_b + r * d_r) + theta * d_th) / beta
    return d_a, d_b, d_r, d_th, d_beta


# Entries per compiled call of the triangular closed form and its derivatives
# (:func:`_elementwise_batched`). XLA's CPU backend (JAX 0.10.2) returned wrong values for the
# triangular cell sums (_tri_cell_sum) compiled for ~1900 or more entries at once: up to 125
# where the entry is <= gamma^2, for about half of the entries, deterministic, with or without
# HLO fusion (measured; 1800 and fewer were right on every draw; rectangular was right at
# 3600). Larger calls run in blocks of this size (lax.map);
# tests/test_lif_gram.py::test_compact_large_call_equals_small_calls. Rectangular is not
# blocked (blocks of 512 cost it 4x in the kernel: 2.5 -> 0.6 M entries/s, measured).
_BLOCK = {"triangular": 512, "rectangular": None}


def _elementwise_batched(fn, block=None):
    """``fn`` (elementwise over its array arguments, all of one shape) with a ``vmap`` rule
    that evaluates it on the batched arrays themselves: the kernel maps it over scalars
    (``lax.map(..., batch_size=)``), and the default rule would put the batch in front of the
    corner axes, the minor axis of 2-3 elements (measured: 4.3 us per rectangular entry under
    ``vmap`` of the scalar function, 1.5 us on the flat arrays). Calls of more than ``block``
    entries (if given) are evaluated in blocks of that size (:data:`_BLOCK`)."""
    inner = fn

    def blocked(*args):
        if block is None or args[0].size <= block:
            return inner(*args)
        return _quadrature.map_in_batches(inner, args, block)

    fn = jax.custom_batching.custom_vmap(blocked)

    @fn.def_vmap
    def _rule(axis_size, in_batched, *args):
        args = [x if batched else jnp.broadcast_to(x, (axis_size,) + x.shape)
                for x, batched in zip(args, in_batched)]
        out = fn(*args)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return fn


@functools.cache
def _batched_value(shape):
    """:func:`_compact_pair_value` for ``shape``, batched by :func:`_elementwise_batched`."""
    return _elementwise_batched(functools.partial(_compact_pair_value, shape), _BLOCK[shape])


@functools.cache
def _batched_partials(shape):
    """:func:`_compact_pair_partials` for ``shape``, batched by :func:`_elementwise_batched`."""
    return _elementwise_batched(functools.partial(_compact_pair_partials, shape),
                                _BLOCK[shape])


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _compact_pair(shape, a, b, r, theta, dampening, sharpness):
    return _batched_value(shape)(a, b, r, theta, dampening, sharpness)


@_compact_pair.defjvp
def _compact_pair_jvp(shape, primals, tangents):
    # Analytic partial derivatives (_compact_pair_partials), finite at correlation +-1; the
    # tangent is linear in them (transposable for reverse mode).
    a, b, r, theta, dampening, sharpness = primals
    da, db, dr, dth, ddamp, dbeta = tangents
    value = _compact_pair(shape, *primals)
    p_a, p_b, p_r, p_th, p_beta = _batched_partials(shape)(a, b, r, theta, sharpness)
    g2 = dampening * dampening
    tangent = (g2 * (p_a * da + p_b * db + p_r * dr + p_th * dth + p_beta * dbeta)
               + 2.0 * value / dampening * ddamp)
    return value, tangent


def compact_pair_closed(surrogate: _sg.Surrogate, a, b, r, theta):
    """``E[psi'(u - theta) psi'(v - theta)]``, ``(u, v) ~ N(0, [[a, r], [r, b]])``, ``a, b > 0``,
    for the triangular and rectangular profiles (:data:`COMPACT_SHAPES`), in closed form.

    Standardised (``X = u / sqrt(a)``, ``Y = v / sqrt(b)``, correlation ``rho``), ``psi'(u -
    theta) psi'(v - theta)`` is bilinear in ``(X, Y)`` on each cell of the grid cut at the
    profiles' kinks (rectangular: one cell, the constant ``gamma^2``; triangular: four, with
    ``gamma (1 +- beta sqrt(a) (X - theta / sqrt(a)))`` per side), so the expectation is a sum
    over cells of ``P``, ``E[X 1]``, ``E[Y 1]`` and ``E[X Y 1]`` on the cell. ``P`` is the
    inclusion-exclusion of four upper-orthant probabilities (:func:`._fast.bvn_upper_fast`,
    reflected to ``h, k >= 0``); the moments follow from Stein's identity ``E[X h] = E[d_x h]
    + rho E[d_y h]`` as edge densities times conditional normal interval probabilities and
    means (``phi(x_e) P(Y in J | X = x_e)`` etc.). Cost per entry: 9 (triangular) / 4
    (rectangular) orthant probabilities and ~20 / 4 normal CDFs, independent of the
    correlation; exact at ``rho = +-1``. Rounding: the cell probabilities are differences of
    orthant probabilities (abs. error ~1e-13), and the triangle's bilinear expansion about its
    apex weights them by ``beta^2 sqrt(a b)``, so for triangular the relative error grows with
    the normalised variances ``A = beta^2 a``, ``B = beta^2 b`` (measured 2.7e-9 / 2.2e-7 /
    3e-5 at ``A = 1e3 / 1e4 / 1e5``); where ``min(A, B) >= 30`` and the density's ridge is
    not narrower than a cell (``(1 - rho^2) min(A, B) >= 1``) a 6 x 6 Gauss-Legendre rule per
    cell replaces it (:func:`_triangle_cells_gl`; both are evaluated, ~5 % of the cost).
    Measured against a 1-D ``scipy`` quadrature (``B = 1.7 A``, correlations -0.5 .. 0.999,
    thresholds 0 .. 2): triangular < 2e-11 for ``A = 1e2 .. 1e5``; on the ridge (``1 - rho``
    from 1e-4 to 0) 1.1e-9 / 1.5e-9 / 4e-8 at ``A = 1e3 / 1e4 / 1e5``; rectangular < 1e-10 up
    to ``A = 1e5``. Entries far below ``gamma^2`` (rare joint events) are accurate to ~1e-12
    ``gamma^2`` absolute only. Derivatives (custom JVP): analytic, in the same cells and
    orthant probabilities (:func:`_compact_pair_partials`: Price's theorem ``dF/dr =
    E[psi'' psi'']``, the heat equation ``dF/da = E[psi''' psi'] / 2``, ``dF/dtheta``, and the
    sharpness from ``F(beta^2 a, beta^2 b, beta^2 r, beta theta; 1)``), about one value's
    cost, finite at correlation +-1 (rectangular: the derivative of the exact degenerate value
    there, as for the orthant probability) and for a tiny variance. Tests:
    ``tests/test_lif_gram.py`` (values against ``scipy.integrate.dblquad`` and the nested
    quadrature; derivatives against finite differences, the nested quadrature's ``jvp`` and
    the 1-D closed form on the diagonal).
    """
    a, b, r, theta = jnp.broadcast_arrays(*(jnp.asarray(v, dtype=float) for v in (a, b, r, theta)))
    damp = jnp.broadcast_to(jnp.asarray(surrogate.dampening, dtype=a.dtype), a.shape)
    beta = jnp.broadcast_to(jnp.asarray(surrogate.sharpness, dtype=a.dtype), a.shape)
    return _compact_pair(surrogate.shape, a, b, r, theta, damp, beta)
