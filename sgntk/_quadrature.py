"""One-dimensional Gaussian expectations: closed forms and a fixed multi-scale quadrature.

All functions work in "normalised units": ``u ~ N(m, v)`` (``sigma = sqrt(v)``) and a profile
``g(u)`` whose features live at scale 1 around ``u = 0``. Everything is elementwise and
broadcasts over ``m`` and ``v``, so kernels call them on whole tiles of input pairs.

Quadrature rule (:func:`gauss_expectation`). The integrand ``g(u) N(u; m, v)`` has two feature
points, ``0`` (the surrogate's peak or kink) and ``m`` (the Gaussian's centre), with widths 1
and ``sigma`` that may differ by many orders of magnitude (sharpness up to 1e4). The real
line is cut at ``lo = min(0, m)`` and ``hi = max(0, m)`` into four pieces, each written as an
integral over the *log-distance* ``s = log r`` from one feature point
(``(-inf, lo]``, ``[lo, mid]``, ``[mid, hi]``, ``[hi, inf)``). In ``s`` every feature is O(1)
wide whatever its scale, the integrand decays like ``e^s`` to the left, and a composite
Gauss-Legendre rule (``_PANELS`` panels of ``_NODES`` nodes over a window of ~45 e-folds)
integrates it to ~1e-12 relative. The cost is fixed, so it runs under ``jit``/``vmap``.
Verified against ``scipy.integrate.quad`` with breakpoints in ``tests/test_surrogates.py``.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erfcx as _jax_erfcx, log_ndtr, ndtr

_SQRT_2PI = float(np.sqrt(2.0 * np.pi))
_SQRT_PI = float(np.sqrt(np.pi))
_TINY = 1e-300

_PANELS = 48
_NODES = 12
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_NODES)
_GL24_X, _GL24_W = np.polynomial.legendre.leggauss(24)


def _phi(z):
    return jnp.exp(-0.5 * z**2) / _SQRT_2PI


_SQRT_HALF = float(np.sqrt(0.5))
_ERFCX_ASYMPTOTIC = 25.0


def erfcx(x):
    """``exp(x^2) erfc(x)``: ``jax.scipy.special.erfcx``, except for ``x > 25``, where the
    asymptotic series ``1/(x sqrt pi) sum_k (-1)^k (2k-1)!! / (2 x^2)^k`` (9 terms, error
    < 1e-17 relative there) is used. JAX 0.10.2's float64 ``erfcx`` returns 0 for
    ``x in [26.5433, 26.6417]`` (checked against ``scipy.special.erfcx``;
    ``tests/test_quadrature_primitives.py``), which made the exponential surrogate's moments
    0 for normalised standard deviations near 18.8."""
    x = jnp.asarray(x)
    big = x > _ERFCX_ASYMPTOTIC
    xb = jnp.where(big, x, _ERFCX_ASYMPTOTIC + 1.0)
    inv2 = 1.0 / (2.0 * xb * xb)
    term, total = jnp.ones_like(xb), jnp.ones_like(xb)
    for k in range(1, 9):
        term = -term * (2 * k - 1) * inv2
        total = total + term
    return jnp.where(big, total / (xb * _SQRT_PI), _jax_erfcx(jnp.where(big, 0.0, x)))


# Taylor coefficients of sin(x) = x sum_n (-1)^n x^(2n) / (2n + 1)!, n = 0 .. 10.
_SIN_C = np.array([(-1.0) ** n / math.factorial(2 * n + 1) for n in range(11)])


def sin_poly(x):
    """``sin(x)`` for ``|x| <= 1.19`` (Horner in ``x^2``; truncation error < 2e-21). XLA's
    float64 ``sin`` costs ~6 ``exp`` on the CPU backend (measured 39 vs 6.5 ns per element);
    this polynomial ~1/2 ``exp``. Used by Sheppard-type integrals over ``theta`` in
    ``[0, asin(0.925)]`` (:mod:`sgntk.lif_kernels._fast`)."""
    x2 = x * x
    acc = jnp.full_like(x, _SIN_C[-1])
    for c in _SIN_C[-2::-1]:
        acc = acc * x2 + c
    return x * acc


def norm_cdf(z):
    """``Phi(z) = erfc(-z / sqrt 2) / 2``: one ``erfc`` (``jax.scipy.special.ndtr`` evaluates
    ``erf`` and ``erfc`` and selects; 5-7x slower on XLA's CPU backend). Relative error
    < 5e-13 down to the underflow at z = -37.5 (against ``scipy.special.ndtr``)."""
    return 0.5 * jax.lax.erfc(-_SQRT_HALF * z)


# Taylor coefficients of erf(x) sqrt(pi) / 2 = sum_n (-1)^n x^(2n+1) / (n! (2n + 1)), n = 0 .. 13.
_ERF_C = np.array([(-1.0) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(14)])


def erf_fast(x):
    """``erf(x)``: Taylor series for ``|x| < 0.5`` (truncation error < 1e-19 relative), ``1 -
    erfc(|x|)`` (sign restored) beyond. Same values as ``jax.lax.erf`` to 2e-16 relative, but
    ``lax.erf`` inside a large fused loop stops XLA's CPU backend from vectorising the whole
    loop (measured: a 16-node theta rule went from 140 to 610 ms per 1e6 elements when one
    ``erf`` was added to it; ``erfc`` and this function leave it at 140 ms)."""
    ax = jnp.abs(x)
    xs = jnp.where(ax < 0.5, x, 0.0)          # no overflow (nor inf * 0 derivatives) beyond
    x2 = xs * xs
    acc = jnp.full_like(x, _ERF_C[-1])
    for c in _ERF_C[-2::-1]:
        acc = acc * x2 + c
    small = (2.0 / _SQRT_PI) * xs * acc
    big = jnp.sign(x) * (1.0 - jax.lax.erfc(jnp.where(ax < 0.5, 1.0, ax)))
    return jnp.where(ax < 0.5, small, big)


def _interval_prob(za, zb):
    """P(za < Z < zb) for standard normal Z, computed in the tail that keeps precision
    (two ``erfc``: ``Phi(-za) - Phi(-zb)`` for ``za > 0``, else ``Phi(zb) - Phi(za)``)."""
    upper = za > 0
    p = jnp.where(upper, za, -zb)
    q = jnp.where(upper, zb, -za)
    return 0.5 * (jax.lax.erfc(_SQRT_HALF * p) - jax.lax.erfc(_SQRT_HALF * q))


def _fixed_node_sum(c, a, b, m, inv_sig, xs, ws):
    """``sum_k (b - a)/2 w_k P(u_k) exp(-((u_k - m) / sigma)^2 / 2)`` with Gauss-Legendre nodes
    ``u_k`` on the fixed interval ``[a, b]`` (Python floats) and ``P(u) = c0 + c1 u + c2 u^2``:
    scalar nodes, so no ``(..., nodes)`` temporaries; times ``1/(sqrt(2 pi) sigma)`` it is
    ``int_a^b P(u) N(u; m, sigma^2) du``."""
    out = jnp.zeros_like(m * inv_sig)
    for xk, wk in zip(xs, ws):
        u = 0.5 * (a + b) + 0.5 * (b - a) * float(xk)
        pu = c[0] + c[1] * u + c[2] * u * u
        out = out + (0.5 * (b - a) * float(wk) * pu) * jnp.exp(-0.5 * ((u - m) * inv_sig) ** 2)
    return out


def poly_gauss_integral(coeffs, a, b, m, sigma):
    """``int_a^b P(u) N(u; m, sigma^2) du`` for a polynomial ``P(u) = sum_k c_k u^k``, k <= 2.

    With ``z = (u - m)/sigma``: the truncated moments of the standard normal,
    ``I0 = Phi(zb) - Phi(za)``, ``I1 = phi(za) - phi(zb)``, ``I2 = I0 + za phi(za) - zb phi(zb)``.
    When the interval is shorter than ``sigma`` these cancel, and a 24-point Gauss-Legendre
    rule on ``[a, b]`` (the Gaussian is smooth there) is used instead. ``sigma = 0`` gives
    ``P(m) [a < m < b]``.
    """
    c = tuple(coeffs) + (0.0,) * (3 - len(coeffs))
    sig = jnp.maximum(sigma, _TINY)
    za, zb = (a - m) / sig, (b - m) / sig
    i0 = _interval_prob(za, zb)
    pa, pb = _phi(za), _phi(zb)
    i1 = pa - pb
    # z*phi(z) -> 0 for |z| -> inf; guard inf * 0.
    zpa = jnp.where(jnp.isfinite(za), za * pa, 0.0)
    zpb = jnp.where(jnp.isfinite(zb), zb * pb, 0.0)
    i2 = i0 + zpa - zpb
    closed = (c[0] * i0 + c[1] * (m * i0 + sigma * i1)
              + c[2] * (m**2 * i0 + 2.0 * m * sigma * i1 + sigma**2 * i2))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        # fixed limits (the surrogate moments): scalar nodes, no (..., 24) temporaries
        inv = 1.0 / sig
        short = _fixed_node_sum(c, a, b, m, inv, _GL24_X, _GL24_W) * inv / _SQRT_2PI
    else:
        u = 0.5 * (a + b) + 0.5 * (b - a) * _GL24_X
        mm, ss = jnp.asarray(m)[..., None], sig[..., None]
        dens = jnp.exp(-0.5 * ((u - mm) / ss) ** 2) / (_SQRT_2PI * ss)
        short = 0.5 * (b - a) * jnp.sum((c[0] + c[1] * u + c[2] * u**2) * dens * _GL24_W, axis=-1)
    return jnp.where(sigma > (b - a), short, closed)


def exp_abs_gauss(k, m, sigma):
    """``E_{u~N(m, sigma^2)}[exp(-k |u|)]``, k > 0.

    ``= e^{k^2 s^2/2 - k m} Phi(m/s - k s) + e^{k^2 s^2/2 + k m} Phi(-m/s - k s)``. Each term
    is evaluated as ``e^{-m^2/(2 s^2)} erfcx(x/sqrt 2)/2`` with ``x = k s -+ m/s`` when
    ``x > 0`` (no cancellation for large ``k s``), and through ``log Phi`` otherwise.
    """
    sig = jnp.maximum(sigma, _TINY)
    a = 0.5 * (k * sigma) ** 2

    def term(sgn):
        x = k * sigma - sgn * m / sig
        via_erfcx = jnp.exp(-0.5 * (m / sig) ** 2) * erfcx(jnp.maximum(x, 0.0) / np.sqrt(2.0)) / 2
        via_logphi = jnp.exp(a - sgn * k * m + log_ndtr(-x))
        return jnp.where(x > 0, via_erfcx, via_logphi)

    return term(1.0) + term(-1.0)


def exp_abs_gauss_centred(k, sigma):
    """``E_{u~N(0, sigma^2)}[exp(-k |u|)] = 2 e^{k^2 s^2/2} Phi(-k s) = erfcx(k s / sqrt 2)``
    (:func:`exp_abs_gauss` at ``m = 0``, where only its ``erfcx`` branch is taken: one
    ``erfcx``, ~30x cheaper than evaluating both branches)."""
    return erfcx(k * sigma * _SQRT_HALF)


def cauchy_gauss_centered(power, m, sigma):
    """``E_{u~N(0, sigma^2)}[(1 + (pi u)^2)^(-power)]`` for power 1, 2 (``m`` must be 0).

    With ``b = 1/pi``, ``x = b / (sigma sqrt 2)`` and ``e = erfcx(x)`` (Voigt profile at 0):
    power 1: ``sqrt(pi) x e``; power 2: ``sqrt(pi) x e (1/2 - x^2) + x^2`` (from
    ``-(b^3/2) d/db E[1/(b^2+u^2)]``), switched to its asymptotic series
    ``sum_n (-1)^n (n+1) (2n-1)!! (2x^2)^-n`` for x > 20 where the closed form cancels.
    """
    del m  # callers guarantee a zero mean
    x = jnp.minimum((1.0 / jnp.pi) / (jnp.maximum(sigma, _TINY) * np.sqrt(2.0)), 1e150)
    e = erfcx(x)
    if power == 1:
        return _SQRT_PI * x * e
    direct = _SQRT_PI * x * e * (0.5 - x**2) + x**2
    y = 1.0 / (2.0 * jnp.maximum(x, 20.0) ** 2)
    series, dfact = jnp.zeros_like(y), 1.0
    for n in range(9):
        series = series + ((-1) ** n) * (n + 1) * dfact * y**n
        dfact *= 2 * n + 1
    return jnp.where(x > 20.0, series, direct)


def _log_panel_rule(f_of_r, r_lo, r_hi):
    """``int_{r_lo}^{r_hi} f(r) dr`` by composite Gauss-Legendre in ``s = log r``.

    ``r_lo, r_hi`` are arrays (> 0); ``f_of_r`` maps an array of shape ``(..., P, K)`` to the
    same shape. Panels are equal in ``s``; a piece with ``r_hi <= r_lo`` contributes 0.
    """
    s0, s1 = jnp.log(r_lo), jnp.log(jnp.maximum(r_hi, r_lo))
    width = (s1 - s0) / _PANELS
    starts = s0[..., None] + width[..., None] * jnp.arange(_PANELS)
    nodes = starts[..., None] + (0.5 * width)[..., None, None] * (_GL_X + 1.0)
    r = jnp.exp(nodes)
    vals = f_of_r(r) * r
    return 0.5 * width * jnp.sum(vals * _GL_W, axis=(-2, -1))


def gauss_expectation(g, m, v, breaks=()):
    """``E_{u ~ N(m, v)}[g(u)]`` for a profile ``g`` with features at scale 1 around 0.

    See the module docstring for the rule. ``breaks``: extra points where ``g`` has a kink
    or a jump (arrays broadcastable with ``m``); the line is cut there too, so such points
    cost no accuracy. ``v = 0`` returns ``g(m)``.
    """
    m = jnp.asarray(m, dtype=float)
    v = jnp.asarray(v, dtype=float)
    m, v, *brk = jnp.broadcast_arrays(m, v, *[jnp.asarray(b, dtype=float) for b in breaks])
    sigma = jnp.sqrt(v)
    sig = jnp.maximum(sigma, _TINY)
    pts = jnp.sort(jnp.stack([jnp.zeros_like(m), m, *brk], axis=-1), axis=-1)
    # Smallest resolved distance: 1e-16 of the smaller feature width; largest: 40 sigma
    # beyond the outer feature point (Gaussian weight < e^-800 further out).
    r_min = 1e-16 * jnp.minimum(1.0, sig)
    r_far = 40.0 * sig + 1e-300

    def density(u):
        z = (u - m[..., None, None]) / sig[..., None, None]
        return g(u) * jnp.exp(-0.5 * z**2) / (_SQRT_2PI * sig[..., None, None])

    e = lambda a: a[..., None, None]  # noqa: E731
    first, last = pts[..., 0], pts[..., -1]
    total = (_log_panel_rule(lambda r: density(e(last) + r), r_min, r_far)
             + _log_panel_rule(lambda r: density(e(first) - r), r_min, r_far))
    for i in range(pts.shape[-1] - 1):
        lo, hi = pts[..., i], pts[..., i + 1]
        half = jnp.maximum(0.5 * (hi - lo), r_min)
        total = (total + _log_panel_rule(lambda r: density(e(lo) + r), r_min, half)
                 + _log_panel_rule(lambda r: density(e(hi) - r), r_min, half))
    point = g(m[..., None, None])[..., 0, 0]
    return jnp.where(sigma < 1e-14 * jnp.maximum(1.0, jnp.abs(m)), point, total)


def even_expectation(g, v, breaks=()):
    """``E_{u ~ N(0, v)}[g(u)]`` for an *even* integrand ``g``: ``2 int_0^inf g(r) N(r; 0, v) dr``.

    One quarter of the work of :func:`gauss_expectation` with mean 0; ``breaks`` are the
    positive kink points of ``g`` (arrays broadcastable with ``v``).
    """
    v = jnp.asarray(v, dtype=float)
    v, *brk = jnp.broadcast_arrays(v, *[jnp.abs(jnp.asarray(b, dtype=float)) for b in breaks])
    sig = jnp.sqrt(v)
    sig_safe = jnp.maximum(sig, _TINY)
    e = lambda a: a[..., None, None]  # noqa: E731

    def density(u):
        return g(u) * jnp.exp(-0.5 * (u / e(sig_safe)) ** 2) / (_SQRT_2PI * e(sig_safe))

    r_min = 1e-16 * jnp.minimum(1.0, sig_safe)
    pts = jnp.sort(jnp.stack([jnp.zeros_like(v), *brk], axis=-1), axis=-1)
    total = _log_panel_rule(lambda r: density(e(pts[..., -1]) + r), r_min, 40.0 * sig_safe)
    for i in range(pts.shape[-1] - 1):
        lo, hi = pts[..., i], pts[..., i + 1]
        half = jnp.maximum(0.5 * (hi - lo), r_min)
        total = (total + _log_panel_rule(lambda r: density(e(lo) + r), r_min, half)
                 + _log_panel_rule(lambda r: density(e(hi) - r), r_min, half))
    point = g(jnp.zeros_like(v)[..., None, None])[..., 0, 0]
    return jnp.where(sig < 1e-300, point, 2.0 * total)


# --------------------------------------------------------------------------------------
# Fast path for centred moments: table in log-variance + cubic Hermite interpolation.
# --------------------------------------------------------------------------------------
_TABLE_STEP = 0.05
_TABLE_X = np.arange(-50.0 - 3 * _TABLE_STEP, 50.0 + 3.5 * _TABLE_STEP, _TABLE_STEP)
# 6th-order central first derivative (the table has 3 guard nodes on each side).
_FD6 = np.array([-1.0, 9.0, -45.0, 0.0, 45.0, -9.0, 1.0]) / 60.0


def snapped_det(a, b, r):
    """``a b - r^2``, snapped to 0 where it is at rounding level (the diagonal, x' = c x).

    ``a`` and ``r`` come from different sums, so on the diagonal ``a b - r^2`` is a few ulp of
    ``a b`` instead of 0; below ``64 eps a b`` it is taken as 0.
    """
    det = a * b - r**2
    return jnp.where(det <= 64 * np.finfo(np.float64).eps * a * b, 0.0, det)


def safe_sqrt(x):
    """``sqrt(max(x, 0))`` whose derivative is 0 (not inf) at ``x = 0``.

    Kernel maps take square roots of quantities that are exactly 0 on the diagonal (the
    conditional variance ``b - r^2/a``, ``a b - r^2``); there the quantity is 0 *identically*
    in the parameters, so the chain rule's ``inf * 0`` is really 0. Same idea as
    neural-tangents' ``_sqrt`` in ``stax/elementwise.py``.
    """
    return _safe_sqrt(jnp.maximum(x, 0.0))


@jax.custom_jvp
def _safe_sqrt(x):
    return jnp.sqrt(x)


@_safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    pos = x > 0
    y_safe = jnp.sqrt(jnp.where(pos, x, 1.0))   # differentiable again (second derivatives)
    # the primal through _safe_sqrt itself: a plain sqrt here would be differentiated as such
    # by the next order (inf * 0 = NaN at x = 0)
    return _safe_sqrt(x), jnp.where(pos, dx / (2.0 * y_safe), 0.0)


def zero_variance_safe(fn):
    """Wrap ``fn(v, *params)`` (a Gaussian moment in the variance ``v >= 0``) so that its
    derivative at ``v = 0`` is 0 instead of ``inf * 0 = NaN``.

    Valid for moments of a normalised profile: at ``v = 0`` the value ``g(0)^power`` does
    not depend on ``v`` along the diagonal (where ``v`` is identically 0) nor on the profile's
    shape parameters. Elsewhere the derivative is ``fn``'s own.
    """
    @jax.custom_jvp
    def wrapped(v, *params):
        return fn(v, *params)

    @wrapped.defjvp
    def _jvp(primals, tangents):
        v, *params = primals
        dv, *dparams = tangents
        pos = v > 0
        vs = jnp.where(pos, v, 1.0)
        _, dy = jax.jvp(fn, (vs, *params), (jnp.where(pos, dv, 0.0), *dparams))
        # the primal through ``wrapped`` (not ``fn``), so that higher orders use this rule too
        return wrapped(v, *params), jnp.where(pos, dy, 0.0)

    return wrapped


def _hermite_coefficients(vals):
    """Cubic Hermite coefficients ``(n - 7, 4)`` per interval of equally spaced samples ``vals``
    with 3 guard nodes on each side (derivatives from 6th-order central differences)."""
    n = vals.shape[0]
    d = sum(c * vals[k:n - 6 + k] for k, c in enumerate(_FD6))  # f' * step at nodes 3..n-4
    h = vals[3:n - 3]
    h0, h1, d0, d1 = h[:-1], h[1:], d[:-1], d[1:]
    return jnp.stack([h0, d0, 3 * (h1 - h0) - 2 * d0 - d1, 2 * (h0 - h1) + d0 + d1], -1)


def centered_table(g):
    """Hermite coefficients ``(n, 4)`` of ``h(x) = E_{N(0, e^x)}[g] sqrt(1 + e^x)`` per grid
    interval of the log-variance grid (see :func:`centered_expectation`). Build once, look
    up many times with :func:`centered_lookup`."""
    vt = jnp.exp(jnp.asarray(_TABLE_X))
    return _hermite_coefficients(even_expectation(g, vt) * jnp.sqrt(1.0 + vt))


_X0 = float(_TABLE_X[3])
_V_MIN = float(np.exp(_X0))


_LN2 = float(np.log(2.0))
_ATANH_TERMS = tuple(1.0 / k for k in range(23, 0, -2))


def fast_log(v):
    """``log(v)`` for normal floats ``v >= 2.3e-308`` (not subnormals: XLA's ``frexp`` is
    off by one octave there; the callers clamp ``v`` far above). Float64, |error| <
    2e-16 |log v| + 1.2e-16, about 2x faster than ``jnp.log`` on XLA's CPU backend, where float64 ``log`` is not vectorised (measured
    24 vs 12 ns per element): ``v = m 2^e`` by ``frexp`` (bit operations), ``m`` moved into
    ``[1/sqrt 2, sqrt 2)``, ``log m = 2 atanh(z)``, ``z = (m - 1)/(m + 1)``, ``|z| < 0.172``,
    by its series to ``z^23``."""
    m, e = jnp.frexp(v)
    low = m < 0.7071067811865476
    m = jnp.where(low, 2.0 * m, m)
    e = jnp.where(low, e - 1, e)
    z = (m - 1.0) / (m + 1.0)
    z2 = z * z
    p = _ATANH_TERMS[0]
    for c in _ATANH_TERMS[1:]:
        p = p * z2 + c
    return e * _LN2 + 2.0 * z * p


def centered_lookup(coef, g0, v):
    """``E_{N(0, v)}[g]`` from a table of :func:`centered_table` (``g0 = g(0)``); elementwise
    over ``v >= 0``, with a finite derivative at ``v = 0`` (it is 0 there)."""
    # where(), not maximum(): the second derivative of log(max(v, tiny)) is inf * 0 at v = 0.
    pos = (jnp.clip(fast_log(jnp.where(v > _V_MIN, v, _V_MIN)), _X0, -_X0) - _X0) / _TABLE_STEP
    i = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, coef.shape[0] - 1)
    t = pos - i
    c0, c1, c2, c3 = coef.T            # four 1-D gathers: half the cost of one row gather
    h = c0[i] + t * (c1[i] + t * (c2[i] + t * c3[i]))
    # Below the grid: E -> g(0) like sqrt(v) (kinked profiles) or faster (smooth ones).
    below = g0 + (coef[0, 0] - g0) * safe_sqrt(v / _V_MIN)
    return jnp.where(v < _V_MIN, below, h / jnp.sqrt(1.0 + jnp.maximum(v, 0.0)))


def centered_expectation(g, v):
    """``E_{u ~ N(0, v)}[g(u)]`` for an even profile ``g`` and many ``v``, by table lookup.

    ``h(x) = E_{N(0, e^x)}[g] sqrt(1 + e^x)`` is smooth and bounded in ``x = log v`` (it tends
    to ``g(0)`` for ``v -> 0`` and to ``int g / sqrt(2 pi)`` for ``v -> inf``), so it is
    tabulated once per call with :func:`even_expectation` on a grid of step 0.05
    over ``x in [-50, 50]`` and interpolated by cubic Hermite polynomials (derivatives from
    6th-order differences; error ~1e-9, ``tests/test_surrogates.py`` checks 1e-8 against
    scipy). Below the grid the value goes to ``g(0)`` like ``sqrt(v)``; above it the end
    value of ``h`` is used (relative error below 1e-10 there). The kernels call this for
    every input pair: one log, one gather and a cubic per pair. The derivative in ``v`` is
    finite everywhere (0 at ``v = 0``).
    """
    v = jnp.asarray(v, dtype=float)
    return centered_lookup(centered_table(g), g(jnp.zeros(())), v)


# --------------------------------------------------------------------------------------
# Pair expectations E[g(U) g(V)] of Gaussian scale mixtures.
# --------------------------------------------------------------------------------------
# A profile is a Gaussian scale mixture (GSM) when g(u) = int exp(-u^2 / (2 s)) mu(ds) for a
# positive measure mu (mass g(0) = 1). For (U, V) ~ N(0, [[a, r], [r, b]]), integrating U
# against each Gaussian bump analytically leaves a *centred* moment of g:
#
#   E[exp(-U^2/(2s)) g(V)] = sqrt(s / (s + a)) E_{N(0, c(s))}[g],  c(s) = (b s + a b - r^2)/(s + a)
#
# (complete the square in U | V, then in V), so
#
#   E[g(U) g(V)] = int mu(ds) sqrt(s / (s + a)) G(c(s)),  G(c) = E_{N(0, c)}[g]  (table lookup)
#
# a one-level integral with the inner expectation in closed form / table: no two-level
# quadrature, O(nodes) work per pair. mu on a trapezoid grid in x = log s (the integrand is
# analytic in x, so the trapezoid rule converges geometrically); the mass beyond the last
# node (algebraic tails) sits at s = inf, where the integrand is G(b).
#
# Mixing measures (in x = log s, mu~(x) = s mu(s)), all with total mass g(0) = 1:
# * exponential exp(-2|u|): Laplace = normal variance mixture with exponential mixing,
#   mu~ = 2 sqrt(s) exp(-2 s) / sqrt(2 pi).
# * q_pseudo_spike (1 + 2|u|/(q-1))^-q = E_{t ~ Gamma(q, 1)} exp(-lam t |u|), lam = 2/(q-1)
#   (fast_sigmoid is q = 2): mu~ = lam sqrt(s) / (Gamma(q) sqrt(2 pi)) int t^q exp(-t - lam^2 s t^2/2) dt.
# * cauchy 1/(1 + (pi u)^2) = int_0^inf exp(-t) exp(-t pi^2 u^2) dt, s = 1/(2 pi^2 t):
#   mu~ = exp(-1/(2 pi^2 s)) / (2 pi^2 s).
# * sigmoid 1/cosh^2(2u): the logistic density is a normal scale mixture with Kolmogorov-
#   Smirnov mixing (Andrews & Mallows 1974, J. R. Stat. Soc. B 36:99): here s = V^2/4,
#   mu~ = k_KS(2 sqrt(s)) / sqrt(2 pi).
# Triangular and rectangular profiles have compact support and are not GSMs.
GSM_SHAPES = ("exponential", "fast_sigmoid", "q_pseudo_spike", "cauchy", "sigmoid")
# Window (x_lo, x_hi) and trapezoid step in x = log s per shape: the smallest step count that
# keeps the error below ~4e-9 against scipy (tests/test_surrogate_gram.py) -> 125 (fast_sigmoid),
# 218 (q_pseudo_spike: its mixing narrows as q grows; step 0.4 holds 1e-8 up to q = 20),
# 148 (exponential), 92 (cauchy), 32 (sigmoid) nodes (60 / 52 / 89 / 59 for exponential,
# fast_sigmoid, q_pseudo_spike, cauchy with the tails merged, see _GSM_MERGE).
# The left end matters although little mass lies there: the mass the window misses is put at
# s = inf (w_inf = 1 - sum w), where it weighs G(b), which can be 100x the pair expectation
# when a, b >> 1; e^-62 leaves < 1e-13 of it (e^-46 gave 3e-8 relative errors at a, b ~ 1e3).
_GSM_WINDOW = {"exponential": (-62.0, 4.5, 0.45), "fast_sigmoid": (-62.0, 25.0, 0.7),
               "q_pseudo_spike": (-62.0, 25.0, 0.4), "cauchy": (-7.0, 25.0, 0.35),
               "sigmoid": (-7.0, 4.0, 0.35)}
_GSM_CHUNK = 4
# (x, a_min): with every larger variance >= a_min, the nodes below s = e^x are merged into one
# (gsm_nodes(merge_below=x)). Measured against the full window on 20 000 random (a, b, rho),
# a in [1e-6, 1e6], 1 - rho down to 1e-12: largest relative difference 5e-12 (exponential),
# 2e-11 (fast_sigmoid), 4e-11 (q_pseudo_spike, q = 1.5 ... 20), at a ~ 1e-6; the error falls
# like a^-3/2 (tests/test_surrogate_gram.py::test_gsm_merged_left_tail).
# (x_hi, a_max): with every larger variance <= a_max, the nodes above s = e^x_hi are merged too
# (mass and 1/s-moment kept). Measured on 20 000 random pairs with a in [1e-6, 1e3]: x_hi = 12
# gave 6e-10 (q_pseudo_spike q = 1.5), 8e-11 (fast_sigmoid), 2e-11 (cauchy), x_hi = 14 gave
# 2e-12; the error falls like (a e^-x_hi)^2: x_hi = 13 keeps it near 5e-11.
_GSM_MERGE = (-22.0, 1e-6, 13.0, 1e3)
# Per-row variances (gsm_pair_expectation integrates against a without swapping, so b may
# exceed a): the same merges, with b_max <= 1e4 a_min added for the left one and b_max <= 1e3
# for the right one. Measured against the full window on 60 x 60 structured pairs per range
# (a, b log-uniform in [1e-6, 1e3], [1e-4, 1], [1e-3, 1], [1e-2, 5], [1, 100], [1e3, 1e5],
# correlations uniform and 1 - 1e-12 .. 0): worst 1.3e-9 (exponential, fast_sigmoid,
# q_pseudo_spike q = 1.5), the table's own error; without the bound on b, 1e-6 at a ~ 1e-6.
_ROWS_B_RATIO = 1e4
_Q_COARSE = (1.25, 2.0)
# t-grid (log-spaced) for the Gamma mixing integral of q_pseudo_spike / fast_sigmoid.
_T_LOG = np.linspace(-34.0, 7.0, 700)
_T_W = np.full(_T_LOG.shape, _T_LOG[1] - _T_LOG[0])
_T_W[[0, -1]] *= 0.5


def _kolmogorov_pdf(v):
    """Density of the Kolmogorov-Smirnov distribution (two series, each used where it converges fast)."""
    v = np.asarray(v, float)
    k = np.arange(1, 13)[:, None]
    c = (2 * k - 1) ** 2 * np.pi**2 / 8.0
    vs = np.minimum(v, 1.0)
    vl = np.maximum(v, 1.0)
    small = np.sqrt(2 * np.pi) * np.sum(np.exp(-c / vs**2) * (2 * c / vs**4 - 1 / vs**2), 0)
    large = 8 * vl * np.sum((-1.0) ** (k - 1) * k**2 * np.exp(-2 * k**2 * vl**2), 0)
    return np.where(v < 1.0, small, large)


def gsm_nodes(shape, tail=2.0, *, merge_below=None, merge_above=None, window=None):
    """Nodes ``s_j`` and weights ``w_j`` (and the mass ``w_inf`` at ``s = inf``) with
    ``g(u) = sum_j w_j exp(-u^2/(2 s_j)) + w_inf`` for a profile in :data:`GSM_SHAPES`.

    ``tail`` (q of ``q_pseudo_spike``) may be traced: its weights are computed in JAX.
    ``merge_below`` (a log-scale ``x``): the nodes with ``log s_j < x`` are merged into one
    that keeps their mass and ``sqrt(s)``-moment, exact to ``O((e^x / a)^2)`` relative in a
    pair expectation with variance ``a`` (see :data:`_GSM_MERGE`). ``merge_above``: the nodes
    with ``log s_j > x`` are merged into one that keeps their mass and ``1/s``-moment (the
    first term of ``sqrt(s/(s+a)) G(c(s))`` in ``a/s``), exact to ``O((a e^-x)^2)``.
    """
    if shape not in _GSM_WINDOW:
        raise ValueError(f"{shape!r} is not a Gaussian scale mixture; GSM_SHAPES = {GSM_SHAPES}")
    lo, hi, step = _GSM_WINDOW[shape] if window is None else window
    x = np.arange(lo, hi + 1e-9, step)
    s = np.exp(x)
    if shape == "exponential":
        mt = 2.0 * np.sqrt(s) * np.exp(-2.0 * s) / np.sqrt(2 * np.pi)
    elif shape == "cauchy":
        mt = np.exp(-1.0 / (2 * np.pi**2 * s)) / (2 * np.pi**2 * s)
    elif shape == "sigmoid":
        mt = _kolmogorov_pdf(2.0 * np.sqrt(s)) / np.sqrt(2 * np.pi)
    elif shape in ("fast_sigmoid", "q_pseudo_spike"):
        q = jnp.asarray(2.0 if shape == "fast_sigmoid" else tail, dtype=float)
        lam = 2.0 / (q - 1.0)
        t = jnp.exp(jnp.asarray(_T_LOG))
        expo = ((q + 1.0) * jnp.asarray(_T_LOG)[None, :] - t[None, :]
                - 0.5 * lam**2 * jnp.asarray(s)[:, None] * t[None, :] ** 2)
        integral = jnp.exp(expo) @ jnp.asarray(_T_W)
        mt = lam * jnp.sqrt(jnp.asarray(s)) * integral / (
            jnp.exp(jax.scipy.special.gammaln(q)) * np.sqrt(2 * np.pi))
    w = step * jnp.asarray(mt)
    if window is not None:
        return jnp.asarray(s), w, 1.0 - jnp.sum(w)
    return merge_tails(shape, jnp.asarray(s), w, 1.0 - jnp.sum(w), merge_below=merge_below,
                       merge_above=merge_above)


def merge_tails(shape, s, w, w_inf, *, merge_below=None, merge_above=None):
    """The nodes ``(s, w, w_inf)`` of :func:`gsm_nodes` (full window of ``shape``) with their
    tails merged (see there); ``w_inf`` is unchanged."""
    lo, hi, step = _GSM_WINDOW[shape]
    x = np.arange(lo, hi + 1e-9, step)
    if merge_below is not None and x[0] < merge_below:
        # One node for the left tail: its mass W and its sqrt(s)-moment M are kept, at
        # s* = (M / W)^2, which is the first term of sqrt(s / (s + a)) ~ sqrt(s / a).
        left = x < merge_below
        w_left = jnp.sum(w[left])
        s_left = (jnp.sum(w[left] * jnp.sqrt(s[left])) / w_left) ** 2
        s = jnp.concatenate([s_left[None], s[~left]])
        w = jnp.concatenate([w_left[None], w[~left]])
        x = np.concatenate([[merge_below], x[~left]])
    if merge_above is not None and x[-1] > merge_above:
        right = x > merge_above
        w_right = jnp.sum(w[right])
        s_right = w_right / jnp.sum(w[right] / s[right])
        s = jnp.concatenate([s[~right], s_right[None]])
        w = jnp.concatenate([w[~right], w_right[None]])
    return s, w, w_inf


# Table of the centred moment for the pair sums below, indexed by the float's own exponent and
# mantissa instead of a logarithm: ``v = (1 + z) 2^E``, ``z in [0, 1)`` (bit operations),
# ``_OCT_SUB`` cubic Hermite intervals per octave, uniform in ``y = z (1 + B) / (1 + B z)``
# (B = sqrt 2 - 1: dy/dz falls by 2 over the octave, as d log2(1 + z)/dz does, so the
# intervals are ~0.035 wide in log-variance; the inverse map's pole, y = 3.4, is far from the
# octave, so the 6th-order differences over the guard nodes stay accurate). Interpolated:
# ``G(v) sqrt(1 + v)``, as in :func:`centered_table`. Octaves E = -72 .. 71 (v from 2.1e-22
# to 4.7e21). Measured 6.4e-10 (exponential) to 9.1e-10 (sigmoid) relative against
# :func:`even_expectation` on 3000 log-uniform v in [1e-21, 1e21] (``centered_table``: 7e-10
# to 1.3e-9; a quadratic map or 16 intervals: 2e-9 to 1e-8); the lookup costs ~60 % of
# :func:`centered_lookup`'s (no logarithm), the table 1.9x to build (3888 moments).
_OCT_SUB = 20
_OCT_E = (-72, 72)
_OCT_B = float(np.sqrt(2.0) - 1.0)
_OCT_V = (2.0 ** _OCT_E[0], 2.0 ** _OCT_E[1])


def octave_table(g):
    """Hermite coefficients ``(144 * 20, 4)`` of ``G(v) sqrt(1 + v)``, ``G(v) = E_{N(0, v)}[g]``,
    for :func:`octave_lookup` (see the comment above :data:`_OCT_SUB`)."""
    e = np.arange(*_OCT_E)
    y = np.arange(-3, _OCT_SUB + 4) / _OCT_SUB
    z = y / (1.0 + _OCT_B - _OCT_B * y)                               # inverse of y(z)
    v = ((1.0 + z)[None, :] * 2.0 ** e[:, None]).reshape(-1)
    vals = (even_expectation(g, jnp.asarray(v)) * jnp.sqrt(1.0 + jnp.asarray(v))).reshape(
        e.size, y.size)
    n = y.size
    d = sum(c * vals[:, k:n - 6 + k] for k, c in enumerate(_FD6))   # dG~/dy * step, nodes 0..SUB
    h = vals[:, 3:n - 3]
    h0, h1, d0, d1 = h[:, :-1], h[:, 1:], d[:, :-1], d[:, 1:]
    coef = jnp.stack([h0, d0, 3 * (h1 - h0) - 2 * d0 - d1, 2 * (h0 - h1) + d0 + d1], -1)
    return coef.reshape(-1, 4)


def octave_lookup(coef, g0, v):
    """``E_{N(0, v)}[g]`` from :func:`octave_table` (``g0 = g(0)``); elementwise over ``v >= 0``,
    derivative finite everywhere (0 at ``v = 0``). Below ``2^-72``: ``g0`` plus a ``sqrt(v)``
    term (as :func:`centered_lookup`); above ``2^72``: the end value of ``G sqrt(1 + v)``."""
    v_min, v_max = _OCT_V
    vc = jnp.clip(v, v_min, v_max * (1.0 - 2.0 ** -52))
    bits = jax.lax.bitcast_convert_type(vc, jnp.int64)
    e_raw = bits >> 52                                  # biased exponent (vc > 0, normal)
    z = vc * jax.lax.bitcast_convert_type((2046 - e_raw) << 52, jnp.float64) - 1.0
    pos = z * ((1.0 + _OCT_B) * _OCT_SUB) / (1.0 + _OCT_B * z)
    k = jnp.floor(pos)
    t = pos - k
    i = (e_raw - (1023 + _OCT_E[0])) * _OCT_SUB + k.astype(jnp.int64)
    c0, c1, c2, c3 = coef.T            # four 1-D gathers: half the cost of one row gather
    h = c0[i] + t * (c1[i] + t * (c2[i] + t * c3[i]))
    below = g0 + (coef[0, 0] - g0) * safe_sqrt(v / v_min)
    return jnp.where(v < v_min, below, h / jnp.sqrt(1.0 + jnp.maximum(v, 0.0)))


def _gsm_node_sum(coef, s, w, w_inf, a, b, det, active=None):
    """``w_inf G(b) + sum_j w_j sqrt(s_j / (s_j + a)) G((b s_j + det) / (s_j + a))`` (``coef``
    from :func:`octave_table`), the nodes summed in chunks of ``_GSM_CHUNK`` inside
    ``lax.scan`` (a working set of a few arrays of the broadcast shape whatever the number of
    nodes). ``active`` (optional, one bool per chunk): chunks to skip (``lax.cond``; their
    weights must be 0). When ``a`` has fewer elements than ``det`` (per-row variances,
    e.g. ``(n, 1)`` against ``(n, m)`` pairs), ``sqrt(s_j / (s_j + a))`` and ``1 / (s_j + a)``
    are computed once per row and node, outside the pair loop."""
    n = s.shape[0]
    pad = (-n) % _GSM_CHUNK
    s_p = jnp.concatenate([s, jnp.ones((pad,))]).reshape(-1, _GSM_CHUNK)
    w_p = jnp.concatenate([w, jnp.zeros((pad,))]).reshape(-1, _GSM_CHUNK)
    if active is None:
        active = jnp.ones((s_p.shape[0],), bool)
    a = jnp.asarray(a, dtype=float)
    rows = a.size < jnp.size(det)
    if rows:            # per (row, node): (chunks, CHUNK) + a.shape, small
        inv = 1.0 / (s_p.reshape(s_p.shape + (1,) * a.ndim) + a)
        amp = w_p.reshape(inv.shape[:2] + (1,) * a.ndim) * jnp.sqrt(
            s_p.reshape(inv.shape[:2] + (1,) * a.ndim) * inv)
    else:
        inv = amp = jnp.zeros((s_p.shape[0], _GSM_CHUNK))

    def chunk(total, sj, wj, invj, ampj):
        for k in range(_GSM_CHUNK):
            if rows:
                inv_k, amp_k = invj[k], ampj[k]
            else:
                inv_k = 1.0 / (sj[k] + a)
                amp_k = wj[k] * jnp.sqrt(sj[k] * inv_k)
            total = total + amp_k * octave_lookup(coef, 1.0, (b * sj[k] + det) * inv_k)
        return total

    def body(acc, xs):
        sj, wj, invj, ampj, on = xs
        return jax.lax.cond(on, lambda t: chunk(t, sj, wj, invj, ampj), lambda t: t, acc), None

    shape = jnp.broadcast_shapes(jnp.shape(a), jnp.shape(b), jnp.shape(det))
    acc = jnp.broadcast_to(w_inf * octave_lookup(coef, 1.0, b), shape)
    acc, _ = jax.lax.scan(body, acc, (s_p, w_p, inv, amp, active))
    return acc


def pair_nodes(shape, tail, window):
    """:func:`gsm_nodes` over ``window`` (unmerged) for the pair route, with the mass at
    ``s = inf`` set to the mixing measure's true mass beyond the window instead of
    ``1 - sum(w)``: that difference also holds the trapezoid rule's own mass error (-5.9e-10
    exponential, -2.8e-10 sigmoid, -1.1e-11 cauchy), which at ``s = inf`` weighs ``G(b) ~ 1``
    while the pair expectation falls like ``a^-1/2``: 1.5e-6 relative at ``(a, b) = (1e6,
    1e-4)`` against scipy. exponential and sigmoid: 0 (their mixing densities decay faster
    than exponentially in ``s`` to the right; the mass left of the window is < 1e-13);
    cauchy: ``1 - exp(-1/(2 pi^2 S))`` beyond ``S = e^(x_hi + step/2)`` (its mixing density in
    ``t = 1/(2 pi^2 s)`` is ``e^-t``); fast_sigmoid / q_pseudo_spike (power-law tails):
    ``1 - sum(w)`` (1.6e-12 at q = 2)."""
    s, w, w_inf = gsm_nodes(shape, tail, window=window)
    if shape in ("exponential", "sigmoid"):
        w_inf = jnp.zeros_like(w_inf)
    elif shape == "cauchy":
        w_inf = -jnp.expm1(-1.0 / (2.0 * np.pi**2 * np.exp(window[1] + 0.5 * window[2])))
    return s, w, w_inf


def _adaptive_merge(window, nodes, log_lo, log_hi):
    """The full node set ``nodes = (s, w, w_inf)`` of ``shape`` with the nodes below
    ``log s = log_lo`` merged into one (mass and ``sqrt(s)``-moment kept) and those above
    ``log_hi`` into another (mass and ``1/s``-moment kept), as :func:`merge_tails` does, but at
    traced merge points: returns ``(s, w, w_inf, active)`` with the two merged nodes first,
    the merged-away nodes' weights 0 and ``active`` false for chunks of ``_GSM_CHUNK`` nodes
    that hold no weight (skipped by :func:`_gsm_node_sum`)."""
    s, w, w_inf = nodes
    lo, hi, step = window
    x = jnp.asarray(np.arange(lo, hi + 1e-9, step))
    left, right = x < log_lo, x > log_hi
    w_l = jnp.sum(jnp.where(left, w, 0.0))
    w_r = jnp.sum(jnp.where(right, w, 0.0))
    s_l = (jnp.sum(jnp.where(left, w * jnp.sqrt(s), 0.0)) / jnp.where(w_l > 0, w_l, 1.0)) ** 2
    s_r = w_r / jnp.where(w_r > 0, jnp.sum(jnp.where(right, w / s, 0.0)), 1.0)
    s_all = jnp.concatenate([jnp.stack([jnp.where(w_l > 0, s_l, 1.0),
                                        jnp.where(w_r > 0, s_r, 1.0)]), s])
    w_all = jnp.concatenate([jnp.stack([w_l, w_r]), jnp.where(left | right, 0.0, w)])
    pad = (-s_all.shape[0]) % _GSM_CHUNK
    keep = jnp.concatenate([jnp.ones((2,), bool), ~(left | right), jnp.zeros((pad,), bool)])
    active = jnp.any(keep.reshape(-1, _GSM_CHUNK), axis=1)
    s_all = jnp.concatenate([s_all, jnp.ones((pad,))])
    w_all = jnp.concatenate([w_all, jnp.zeros((pad,))])
    return s_all, w_all, w_inf, active


def gsm_pair_expectation(coef, shape, tail, a, b, r):
    """``E[g(U) g(V)]``, ``(U, V) ~ N(0, [[a, r], [r, b]])`` for the GSM profile ``g`` of
    ``shape`` (nodes from :func:`gsm_nodes`) with the centred table ``coef`` of
    :func:`octave_table`.

    Elementwise over broadcast ``a, b, r`` (normalised units, ``a, b >= 0``). The nodes are
    integrated against the variance ``a``: the larger of the two per pair (swapped) when ``a``
    or ``b`` has the pairs' shape; ``a`` itself when both have fewer elements than the pairs
    (per-row / per-column variances, e.g. ``(n, 1)`` and ``(1, m)``: a kernel's first layer),
    and then ``sqrt(s_j / (s_j + a))`` and ``1 / (s_j + a)`` are computed once per row and node,
    outside the pair loop. Tail nodes are merged (:data:`_GSM_MERGE`; merge points applied as
    weights, the merged-away chunks skipped by ``lax.cond``): both tails when every ``a`` lies
    in ``[1e-6, 1e3]`` (normalised units), the left one when only the lower bound holds; with
    per-row variances also ``b_max <= 1e4 a_min`` (left) and ``b_max <= 1e3`` (right)
    (:data:`_ROWS_B_RATIO`). q_pseudo_spike with ``q`` in [1.25, 2] takes fast_sigmoid's
    step (:data:`_Q_COARSE`). Cost per element: one table lookup per node (rounded up to chunks
    of 4): 60 (exponential), 52 (fast_sigmoid; q_pseudo_spike, q in [1.25, 2]), 89
    (q_pseudo_spike otherwise), 59 (cauchy), 32 (sigmoid) with both merges; 68 / 118 / 92 for
    fast_sigmoid / q_pseudo_spike / cauchy with the left one only; 148 / 125 / 218 for the
    first three with none.
    """
    a, b, r = (jnp.asarray(t, dtype=float) for t in (a, b, r))
    shape_all = jnp.broadcast_shapes(a.shape, b.shape, r.shape)
    if a.size == int(np.prod(shape_all)) or b.size == int(np.prod(shape_all)):
        a, b, r = jnp.broadcast_arrays(a, b, r)
        swap = b > a
        a, b = jnp.where(swap, b, a), jnp.where(swap, a, b)
        swapped = True
    else:
        swapped = False
    det = snapped_det(a, b, r)
    x_lo, a_lo, x_hi, a_hi = _GSM_MERGE
    a_min, a_max = jnp.min(a), jnp.max(a)
    lo_ok, hi_ok = a_min >= a_lo, a_max <= a_hi
    if not swapped:     # b may exceed a: also bound b (measured, see the comment at _GSM_MERGE)
        b_max = jnp.max(b)
        lo_ok = lo_ok & (b_max <= _ROWS_B_RATIO * a_min)
        hi_ok = hi_ok & (b_max <= a_hi)
    x_lo = jnp.where(lo_ok, x_lo, -jnp.inf)
    x_hi = jnp.where(hi_ok, x_hi, jnp.inf)
    x_lo, x_hi = jax.lax.stop_gradient(x_lo), jax.lax.stop_gradient(x_hi)
    window = _GSM_WINDOW[shape]
    s, w, w_inf, active = _adaptive_merge(window, pair_nodes(shape, tail, window), x_lo, x_hi)
    if shape == "q_pseudo_spike":
        # Two node sets, one of them skipped: fast_sigmoid's step (0.7) for q in [1.25, 2]
        # (measured: 1.4e-9 at q = 1.5 and 2, as step 0.4; 8.5e-9 at q = 1.1), 0.4 otherwise.
        coarse = _GSM_WINDOW["fast_sigmoid"]
        s_c, w_c, w_inf_c, active_c = _adaptive_merge(
            coarse, pair_nodes(shape, tail, coarse), x_lo, x_hi)
        use_c = (jnp.asarray(tail) >= _Q_COARSE[0]) & (jnp.asarray(tail) <= _Q_COARSE[1])
        s = jnp.concatenate([s_c, s])
        w = jnp.concatenate([jnp.where(use_c, w_c, 0.0), jnp.where(use_c, 0.0, w)])
        w_inf = jnp.where(use_c, w_inf_c, w_inf)
        active = jnp.concatenate([active_c & use_c, active & ~use_c])
    return _gsm_node_sum(coef, s, w, w_inf, a, b, det, active=active)


def correlation_table(pair_fn, a, b, *, step=0.01, y_max=40.0):
    """Tabulate ``F(rho) = pair_fn(a, b, rho sqrt(a b))`` for *scalar* ``a, b`` as a function of
    ``y = -log(1 - |rho|)`` (``F`` is even in ``rho`` for even profiles; in ``y`` it is smooth
    at ``rho = 0`` and tends to ``F(1)`` like ``e^{-y/2}``; step 0.01 keeps the cubic Hermite
    error below 1e-9 relative). Returns the Hermite coefficients
    and ``F(1)``; look up with :func:`correlation_lookup`.
    """
    y = np.arange(-3 * step, y_max + 3.5 * step, step)
    rho = -np.expm1(-y)              # rho = 1 - e^-y (the guard nodes y < 0 have rho < 0)
    root = jnp.sqrt(a * b)
    vals = pair_fn(a, b, jnp.asarray(rho) * root)
    f1 = pair_fn(a, b, root)
    return _hermite_coefficients(vals), f1, (step, y_max)


def correlation_lookup(table, a, b, r):
    """``F(a, b, r)`` from :func:`correlation_table` (``a``, ``b`` the table's scalars)."""
    coef, f1, (step, y_max) = table
    ab = a * b
    det = snapped_det(a, b, r)
    rho_abs = jnp.abs(r) / jnp.sqrt(ab)
    one_minus = (det / ab) / (1.0 + jnp.minimum(rho_abs, 1.0))     # 1 - |rho|, no cancellation
    tiny = np.exp(-y_max)
    y = jnp.where(one_minus > tiny, -jnp.log(jnp.where(one_minus > tiny, one_minus, 1.0)), y_max)
    pos = jnp.clip(y, 0.0, y_max) / step
    i = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, coef.shape[0] - 1)
    t = pos - i
    c = coef[i]
    h = c[..., 0] + t * (c[..., 1] + t * (c[..., 2] + t * c[..., 3]))
    # Beyond the grid (1 - |rho| < e^-40, in practice the diagonal): F(1); F approaches it like
    # sqrt(1 - |rho|), so the error there is below |F(e^-40) - F(1)| ~ e^-20 F ~ 2e-9 F.
    return jnp.where(y >= y_max, f1, h)


# --------------------------------------------------------------------------------------
# Pair expectations of compactly supported, piecewise-linear profiles (triangular, rectangular).
# --------------------------------------------------------------------------------------
# Closed form (one-level integral over the correlation), for |rho| <= 0.925. With U = sqrt(a) X,
# V = sqrt(b) Y, (X, Y) standard bivariate normal with correlation rho, H = L / sqrt(a),
# K = L / sqrt(b) (L the half-width of the support):
#   rectangular: E[g(U) g(V)] = R(H, K, rho) = P(|X| < H, |Y| < K),
#   triangular:  E[g(U) g(V)] = sqrt(a b) T(H, K, rho),  T = E[(H - |X|)_+ (K - |Y|)_+].
# Plackett's identity d/drho E[f(X) g(Y)] = E[f'(X) g'(Y)] (Plackett 1954, Biometrika 41:351),
# applied once (R) or twice (T, whose first derivative vanishes at rho = 0 because f' is odd),
# turns the distributional derivatives (f' = delta(x + H) - delta(x - H) for the box,
# f'' = delta(x + H) - 2 delta(x) + delta(x - H) for the ramp) into sums of bivariate normal
# densities phi_2(+-H, +-K; t). Summed, with t = sin(theta), c = cos(theta), hs = (H^2 + K^2)/2:
#   R = erf(H/sqrt 2) erf(K/sqrt 2)
#       + (1/pi) int_0^asin|rho| exp(-(hs - H K t)/c^2) (1 - exp(-2 H K t / c^2)) dtheta,
#   T = T1(H) T1(K) + (1/pi) int_0^asin|rho| (|rho| - t) [2 (1 - e^{-H^2/2c^2})(1 - e^{-K^2/2c^2})
#       + exp(-(hs - H K t)/c^2) (1 - exp(-H K t / c^2))^2] dtheta,
#   T1(H) = E[(H - |X|)_+] = H erf(H/sqrt 2) - sqrt(2/pi) (1 - e^{-H^2/2})
# (the first terms are the independent case rho = 0; R for rho = 1 and the box is Sheppard's
# formula, as in Genz's BVNU). Every term is positive (expm1 where it matters), so the forms
# keep full relative precision for any H, K, from variances -> 0 to -> inf. The theta integral
# is taken in the half angle u = tan(theta/2) (t = sin(theta) = 2u/(1+u^2), 1/c^2 = ((1+u^2) /
# (1-u^2))^2, dtheta = 2 du/(1+u^2): rational, one division per node, no sine): the
# integrand's essential singularity at theta = pi/2 is u = 1, relatively farther from
# [0, tan(asin(0.925)/2)] = [0, 0.669] than pi/2 is from [0, asin(0.925)] (Bernstein ellipse
# 3.7 instead of 3.0). A 13-node Gauss-Legendre rule in u: 1.3e-11 (triangular) / 1.9e-11
# (rectangular) relative for |rho| <= 0.925 against the quadrature route below (20 000 random
# pairs, variances 1e-4 .. 1e4, half of them in |rho| in [0.895, 0.925]; 14 nodes: 6e-12 /
# 3e-12; the 16-node rule in theta it replaced: 7e-12 at ~1.4x the cost of 13 nodes in u);
# beyond 0.925 the singularity comes too close (6e-11 at 0.95, 1e-9 at 0.97 with 14 nodes),
# and those pairs (the diagonal, ~1 % of random 5-d inputs) take the quadrature route,
# gathered (:func:`patch_where`) so that they cost only their own share.
#
# Quadrature route (any rho):
# E[g(U) g(V)] = 2 int_0^L g(u) N(u; 0, a) H(kappa u, c) du with kappa = r/a, c = b - r^2/a and
# H(m, c) = E_{N(m, c)}[g] in closed form (normal CDFs), L the half-width of the support.
# The integrand is smooth except at u = 0, at the kink/jump points u = k/|kappa| of
# H(kappa u, 0) = g(kappa u) (smoothed over w = sqrt(c)/|kappa|), at L, and it varies on the
# Gaussian's scale sqrt(a): the interval [0, L] is cut at all of these and at geometric
# multiples of sqrt(a) and w around them, and each piece gets an n-point Gauss-Legendre rule.
PIECEWISE_SHAPES = ("triangular", "rectangular")
_PW_NODES = 8
_PW_BATCH = 1 << 16
_PW_X, _PW_W = np.polynomial.legendre.leggauss(_PW_NODES)
_PW_MULT = np.array([0.5, 2.0, 8.0])                      # around kinks (widths w)
_PW_GAUSS = np.array([0.5, 1.0, 2.0, 3.0, 4.5, 7.0, 10.0])   # Gaussian scale sqrt(a)
_RHO_MAX = 0.925                         # closed form up to here, quadrature route beyond
_TH_X, _TH_W = np.polynomial.legendre.leggauss(13)   # nodes in u = tan(theta/2)
_PATCH_CHUNK = 2048                       # patch_where: masked elements per gathered chunk


_TRI_GL_X, _TRI_GL_W = np.polynomial.legendre.leggauss(4)


def _ramp_moment(d, sigma):
    """E[(V - k)_+] for V ~ N(k + d, sigma^2): ``d Phi(d/sigma) + sigma phi(d/sigma)``."""
    pos = sigma > 0
    sig = jnp.where(pos, sigma, 1.0)               # no inf * 0 in the untaken branch's derivative
    z = d / sig
    return jnp.where(pos, d * norm_cdf(z) + sig * _phi(z), jnp.maximum(d, 0.0))


def _triangle_moment(m, sigma, wide_branch=True):
    """E[(1 - |V|)_+], V ~ N(m, sigma^2) (elementwise; sigma >= 0).

    ``(1 - |v|)_+ = ramp(v + 1) - 2 ramp(v) + ramp(v - 1)``, so the moment is a second
    difference of ramp moments; for sigma > 4 that difference cancels (relative error
    ~ sigma^2 eps), and the Gaussian is smooth on the support [-1, 1]: a 4-point
    Gauss-Legendre rule per half is used there (error < 1e-12 for sigma > 4).
    """
    closed = _ramp_moment(m + 1.0, sigma) - 2.0 * _ramp_moment(m, sigma) + _ramp_moment(m - 1.0, sigma)
    if not wide_branch:               # the caller knows that sigma <= 4 everywhere
        return closed
    inv_sig = 1.0 / jnp.maximum(sigma, 4.0)
    wide = (_fixed_node_sum((1.0, 1.0, 0.0), -1.0, 0.0, m, inv_sig, _TRI_GL_X, _TRI_GL_W)
            + _fixed_node_sum((1.0, -1.0, 0.0), 0.0, 1.0, m, inv_sig, _TRI_GL_X, _TRI_GL_W))
    wide = wide * inv_sig / _SQRT_2PI
    return jnp.where(sigma > 4.0, wide, closed)


def _rect_moment(m, sigma):
    """P(|V| < 1/2), V ~ N(m, sigma^2)."""
    pos = sigma > 0
    sig = jnp.where(pos, sigma, 1.0)
    inside = jnp.where(jnp.abs(m) < 0.5, 1.0, 0.0)
    return jnp.where(pos, _interval_prob((-0.5 - m) / sig, (0.5 - m) / sig), inside)


def map_in_batches(fn, arrays, batch):
    """``fn(*arrays)`` for an elementwise ``fn`` (same-shape arrays in, an array or a pytree of
    arrays of that shape out), applied to flat batches of ``batch`` elements one after another
    (``lax.map`` over whole batches; the last one padded with copies of the last element).
    Unlike ``lax.map(..., batch_size=)``, which ``vmap``s a per-element function, ``fn`` sees a
    batch array, so a ``lax.cond`` on the batch inside it stays a branch rather than becoming a
    select of both sides."""
    shape = arrays[0].shape
    flat = [x.reshape(-1) for x in arrays]
    n = flat[0].shape[0]
    pad = (-n) % batch
    flat = [jnp.concatenate([x, jnp.broadcast_to(x[-1:], (pad,))]).reshape(-1, batch)
            for x in flat]
    out = jax.lax.map(lambda xs: fn(*xs), tuple(flat))
    return jax.tree_util.tree_map(lambda o: o.reshape(-1)[:n].reshape(shape), out)


def _batcher_pairs(n):
    """Comparators ``(i, j)`` of Batcher's odd-even merge sort for ``n`` items (the network for
    the next power of two, minus the comparators that touch the padding, which would hold
    ``+inf`` and never swap)."""
    size = 1 << max(n - 1, 1).bit_length()

    def merge(lo, hi, r):
        step = r * 2
        if step < hi - lo:
            yield from merge(lo, hi, step)
            yield from merge(lo + r, hi, step)
            yield from ((i, i + r) for i in range(lo + r, hi - r, step))
        else:
            yield (lo, lo + r)

    def sort(lo, hi):
        if hi - lo >= 1:
            mid = lo + (hi - lo) // 2
            yield from sort(lo, mid)
            yield from sort(mid + 1, hi)
            yield from merge(lo, hi, 1)

    return [(i, j) for i, j in sort(0, size - 1) if j < n]


def sorting_network(rows):
    """Sort a short list of equally shaped arrays elementwise (returns a list, ascending).

    Elementwise ``minimum``/``maximum`` over Batcher's network: for ~20 rows this is ~50x
    faster than ``jnp.sort(jnp.stack(rows), axis=0)`` on XLA's CPU backend (measured 2.5 us per
    column for 19 rows), and differentiable."""
    rows = list(rows)
    for i, j in _batcher_pairs(len(rows)):
        rows[i], rows[j] = jnp.minimum(rows[i], rows[j]), jnp.maximum(rows[i], rows[j])
    return rows


def piecewise_pair_quadrature(shape, a, b, r, *, compact=False):
    """``E[g(U) g(V)]`` for ``shape`` in :data:`PIECEWISE_SHAPES` (normalised units), by the
    quadrature route (any correlation; see the comment above :data:`PIECEWISE_SHAPES`).

    Elementwise over broadcast ``a, b, r``; elements in batches of 65536 (``lax.map``), pieces
    and nodes one at a time (``lax.scan``): the working set is bounded whatever the tile. Cost: ``pieces x 8`` closed-
    form conditional moments per element (triangular: 18 pieces; rectangular: 15). The cut
    points are constants for differentiation (see the comment at the sort below).
    ``compact=True`` (the derivative route of :func:`piecewise_pair_expectation`): one branch
    instead of a ``lax.cond`` between two (triangular: the wide-Gaussian moment by a select),
    half the program to differentiate.
    """
    a, b, r = jnp.broadcast_arrays(*(jnp.asarray(t, dtype=float) for t in (a, b, r)))
    if a.size > _PW_BATCH:   # ~20 piece boundaries per element: map over batches of elements
        return map_in_batches(lambda *abr: piecewise_pair_quadrature(shape, *abr, compact=compact),
                              (a, b, r), _PW_BATCH)
    # integrate against the larger variance: the same float for (a, b) and (b, a)
    a, b = jnp.where(b > a, b, a), jnp.where(b > a, a, b)
    half = 1.0 if shape == "triangular" else 0.5
    kink = 1.0 if shape == "triangular" else 0.5
    profile = ((lambda u: jnp.maximum(1.0 - jnp.abs(u), 0.0)) if shape == "triangular"
               else (lambda u: jnp.where(jnp.abs(u) < 0.5, 1.0, 0.0)))
    moment = _triangle_moment if shape == "triangular" else _rect_moment
    det = snapped_det(a, b, r)
    kap = r / a
    c = det / a
    sd = safe_sqrt(c)
    akap = jnp.maximum(jnp.abs(kap), 1e-300)
    bp = jnp.minimum(kink / akap, half)               # kink of H(kappa u, 0) in u
    w = jnp.minimum(sd / akap, half)                   # its smoothing width in u
    sa = jnp.sqrt(a)
    cand = [jnp.zeros_like(a), jnp.full_like(a, half), bp]
    cand += [sa * k for k in _PW_GAUSS]
    cand += [bp + w * k for k in _PW_MULT] + [bp - w * k for k in _PW_MULT]
    if shape == "triangular":                          # H(kappa u, c) has a kink at u = 0 too
        cand += [w * k for k in _PW_MULT]
    # The cut points are held fixed under differentiation: the integral does not depend on
    # where it is cut, so its derivative is the same rule applied to the integrand's
    # derivative (the features of which sit at the same points with the same widths), and the
    # sorting network stays out of the derivative's program.
    pts = jax.lax.stop_gradient(
        jnp.stack(sorting_network([jnp.clip(c_, 0.0, half) for c_ in cand]), 0))
    lo, hi = pts[:-1], pts[1:]

    inv_a = 1.0 / a
    norm = 1.0 / jnp.sqrt(2.0 * jnp.pi * a)

    def integrate(moment_fn):
        def piece(acc, seg):
            mid, rad = 0.5 * (seg[0] + seg[1]), 0.5 * (seg[1] - seg[0])

            def node(acc_, xw):            # a rolled loop keeps the compiled program small
                u = mid + rad * xw[0]
                dens = jnp.exp(-0.5 * u**2 * inv_a) * norm
                return acc_ + (xw[1] * rad) * profile(u) * dens * moment_fn(kap * u, sd), None

            return jax.lax.scan(node, acc, (jnp.asarray(_PW_X), jnp.asarray(_PW_W)))[0], None

        return 2.0 * jax.lax.scan(piece, jnp.zeros_like(a), (lo, hi))[0]

    if shape == "triangular" and not compact:   # the wide-Gaussian branch only when needed
        return jax.lax.cond(jnp.any(sd > 4.0), lambda: integrate(moment),
                            lambda: integrate(lambda m, s: moment(m, s, wide_branch=False)))
    return integrate(moment)


def masked_positions(mask, size, *, block=1024):
    """``jnp.nonzero(mask, size=size, fill_value=mask.size)[0]`` for a 1-D boolean ``mask``
    (``size >= mask.size``): the positions where ``mask`` holds, ascending, then the fill.

    Two-level prefix sum (within blocks of ``block`` elements, then over the block totals) and
    one scatter: 2.7x faster than ``jnp.nonzero`` on XLA's CPU backend (measured 21 vs 56 ms
    for 1e6 elements, load 6), whose cumulative sum over the whole array dominates."""
    n = mask.shape[0]
    pad = (-n) % block
    mb = jnp.concatenate([mask, jnp.zeros((pad,), bool)]).reshape(-1, block)
    within = jnp.cumsum(mb.astype(jnp.int32), axis=1)
    totals = within[:, -1]
    offset = jnp.cumsum(totals) - totals
    slot = jnp.where(mb, within - 1 + offset[:, None], size).reshape(-1)
    out = jnp.full((size,), n, jnp.int32)
    return out.at[slot].set(jnp.arange(n + pad, dtype=jnp.int32), mode="drop")


def patch_where(mask, base, fn, args, *, chunk=_PATCH_CHUNK, differentiable=True):
    """``where(mask, fn(*args), base)`` for 1-D arrays, evaluating ``fn`` only where ``mask``
    holds.

    The masked positions are listed first (:func:`masked_positions`), in chunks of ``chunk``; each
    non-empty chunk is gathered, ``fn`` runs on it and the results are scattered into ``base``.
    ``differentiable=True``: a ``lax.scan`` over all chunks (``lax.cond`` skips the empty ones)
    that carries nothing, and one scatter at the end (reverse-mode differentiable; measured at
    1e6 elements with 1 % masked, load 8: 230 ms, of which ~60-130 ms the masked work and ~50 ms
    the listing, the rest the scan's per-chunk overhead). ``differentiable=False``: a ``lax.fori_loop`` over the non-empty chunks only (a dynamic
    trip count: forward-mode only; the primal of a ``custom_jvp``). Cost: ``fn`` on the masked
    elements rounded up to a chunk, plus an index sort of the mask. ``fn`` is elementwise; its
    values and derivatives must be finite on every element of ``args``. Under ``vmap`` the
    ``cond`` becomes a select and every chunk is computed.
    """
    n = base.shape[0]
    if n <= chunk:
        return jnp.where(mask, fn(*args), base)
    n_chunks = -(-n // chunk)
    flat = masked_positions(mask, n_chunks * chunk)
    idx = flat.reshape(n_chunks, chunk)

    def patch(ids):
        take = jnp.minimum(ids, n - 1)
        return fn(*(x[take] for x in args)).astype(base.dtype)

    if not differentiable:
        def step(i, out):
            ids = jax.lax.dynamic_index_in_dim(idx, i, keepdims=False)
            return out.at[ids].set(patch(ids), mode="drop")

        n_active = (jnp.sum(mask, dtype=jnp.int32) + chunk - 1) // chunk
        return jax.lax.fori_loop(0, n_active, step, base)

    def body(_, ids):
        vals = jax.lax.cond(ids[0] < n, patch, lambda _: jnp.zeros((chunk,), base.dtype), ids)
        return None, vals

    vals = jax.lax.scan(body, None, idx)[1]
    return base.at[flat].set(vals.reshape(-1), mode="drop")


def _theta_rule(shape, a, b, u1, *, rolled=False):
    """The closed forms above (``R`` or ``sqrt(a b) T``) for ``|rho| <= 0.925``, by the
    13-node Gauss-Legendre rule in the half angle ``u = tan(theta/2)`` over ``[0, u1]``,
    ``u1 = tan(asin|rho| / 2) = |rho| / (1 + sqrt(1 - rho^2))``; ``a, b > 0`` (clamped at
    1e-250).

    ``rolled=False``: the nodes unrolled into one fused elementwise loop (the fast primal);
    ``rolled=True``: the same sum as a ``lax.scan`` over the nodes (slower, but its
    derivatives compile to a program several times smaller: the derivative route of
    :func:`piecewise_pair_expectation`)."""
    a = jnp.maximum(a, 1e-250)
    b = jnp.maximum(b, 1e-250)
    half = 0.5 if shape == "rectangular" else 1.0
    hh, kk = half / jnp.sqrt(a), half / jnp.sqrt(b)
    hk = hh * kk
    # (H^2 + K^2)/2 written symmetrically in (H, K): hh * hh + kk * kk may be contracted to
    # an FMA on one of the two products, a different float for (a, b) and (b, a)
    hs = 0.5 * (hh - kk) ** 2 + hk
    h2, k2 = 0.5 * hh * hh, 0.5 * kk * kk
    rho = 2.0 * u1 / (1.0 + u1 * u1)           # |rho|, consistent with the last node's t

    def node(acc, xk, wk):
        u = u1 * (0.5 * (1.0 + xk))
        q = u * u
        d, e = 1.0 + q, 1.0 - q
        rde = 1.0 / (d * e)
        sn = 2.0 * u * e * rde                   # sin(theta)
        inv = (d * d * rde) ** 2                 # 1 / cos(theta)^2
        wj = wk * 2.0 * e * rde                  # dtheta / du = 2 / (1 + u^2)
        hkt = hk * sn * inv
        core = jnp.exp(-(hs - hk * sn) * inv)
        if shape == "rectangular":
            return acc - wj * core * jnp.expm1(-2.0 * hkt)
        return acc + wj * (rho - sn) * (2.0 * jnp.expm1(-h2 * inv) * jnp.expm1(-k2 * inv)
                                        + core * jnp.expm1(-hkt) ** 2)

    acc = jnp.zeros_like(hk)
    if rolled:
        acc = jax.lax.scan(lambda c, xw: (node(c, xw[0], xw[1]), None), acc,
                           (jnp.asarray(_TH_X), jnp.asarray(_TH_W)))[0]
    else:
        for xk, wk in zip(_TH_X, _TH_W):
            acc = node(acc, float(xk), float(wk))
    acc = acc * (0.5 * u1 / np.pi)
    erf_h, erf_k = erf_fast(hh * _SQRT_HALF), erf_fast(kk * _SQRT_HALF)
    if shape == "rectangular":
        return erf_h * erf_k + acc
    sq = float(np.sqrt(2.0 / np.pi))
    t1h = hh * erf_h + sq * jnp.expm1(-h2)
    t1k = kk * erf_k + sq * jnp.expm1(-k2)
    return jnp.sqrt(a * b) * (t1h * t1k + acc)


def piecewise_pair_expectation(shape, a, b, r):
    """``E[g(U) g(V)]``, ``(U, V) ~ N(0, [[a, r], [r, b]])``, for ``shape`` in
    :data:`PIECEWISE_SHAPES` (normalised units; elementwise over broadcast ``a, b, r``).

    Pairs with ``|rho| <= 0.925``: the closed forms in the comment above (a one-level integral
    over ``theta = asin(rho)``, 13 nodes in ``tan(theta/2)``; per pair 13 ``exp`` + 13
    ``expm1`` (rectangular) or 13 ``exp`` + 39 ``expm1`` (triangular), 2e-11 relative). The
    rest (the diagonal, nearly parallel inputs): :func:`piecewise_pair_quadrature` (``pieces x 8`` conditional moments),
    gathered by :func:`patch_where` (their own cost only, in chunks of 2048). The closed
    form is one fused elementwise loop (working set: the inputs and the output); the
    quadrature route runs in batches of 65536.

    Derivatives (``jax.custom_jvp``): the tangent is the exact derivative of the same two
    formulas, taken through their compact forms -- the theta nodes as a ``lax.scan`` instead
    of unrolled, the quadrature route's cut points held fixed (the integral does not depend on
    where it is cut, so the derivative is the rule applied to the integrand's derivative;
    :func:`piecewise_pair_quadrature`). The fused primal is never differentiated, so first and
    second derivatives (``grad``, ``jacfwd``, ``hessian``) compile to small programs. They are
    finite everywhere, also on the diagonal (``a b = r^2``, where the conditional variance is
    snapped to 0 and its tangent with it: the diagonal stays the diagonal along any change of
    the network's parameters). Checked against central differences in
    ``tests/test_surrogate_gram.py`` and ``tests/test_kernel_gradients.py``.
    """
    a, b, r = jnp.broadcast_arrays(*(jnp.asarray(t, dtype=float) for t in (a, b, r)))
    shp = a.shape
    out = _piecewise_pair(shape, a.reshape(-1), b.reshape(-1), r.reshape(-1))
    return out.reshape(shp)


def _piecewise_pair_flat(shape, a, b, r, *, rolled):
    """:func:`piecewise_pair_expectation` on flat arrays (``rolled``: see :func:`_theta_rule`)."""
    det = snapped_det(a, b, r)
    high = r * r >= (_RHO_MAX ** 2) * (a * b)
    # u1 = tan(asin|rho| / 2) = |r| / (sqrt(a b) + sqrt(det))
    den = jnp.sqrt(a) * jnp.sqrt(b) + safe_sqrt(jnp.where(high, 1.0, det))
    u1 = jnp.abs(r) / jnp.where(den > 0, den, 1.0)
    u1 = jnp.where(high, 0.25, u1)                 # a harmless value; replaced below
    out = _theta_rule(shape, a, b, u1, rolled=rolled)
    return patch_where(high, out, lambda *abr: piecewise_pair_quadrature(shape, *abr, compact=rolled),
                       (a, b, r), differentiable=rolled)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _piecewise_pair(shape, a, b, r):
    return _piecewise_pair_flat(shape, a, b, r, rolled=False)


@_piecewise_pair.defjvp
def _piecewise_pair_jvp(shape, primals, tangents):
    # Primal through the custom function itself (higher orders use this rule again); the
    # tangent is the forward derivative of the compact form of the same formulas.
    _, tangent = jax.jvp(lambda *abr: _piecewise_pair_flat(shape, *abr, rolled=True),
                         primals, tangents)
    return _piecewise_pair(shape, *primals), tangent
