"""Fast elementwise pieces of the analytic LIF kernels (GitHub issue 9).

The analytic no-reset kernel evaluates, for every (input pair) x (time pair) entry, one
bivariate-normal orthant probability and one density x conditional surrogate moment. The
reference routes (:func:`sgntk.lif_kernels.bvn_upper`, :func:`sgntk.lif_kernels.mixed_expectation`)
stay as they are; this module has the same quantities, restructured for throughput:

* :func:`bvn_upper_fast` -- Genz's BVNU for thresholds ``h, k >= 0`` with the marginal
  probabilities ``Phi(-h)``, ``Phi(-k)`` passed in (they depend on one side of the pair only,
  so the kernel computes them once per (input, time) row instead of 6-8 ``ndtr`` calls per
  entry: ``ndtr`` is ~15x an ``exp`` on the XLA CPU backend), ``sin`` replaced by its Taylor
  polynomial on ``|x| <= asin(0.925)`` (XLA's float64 ``sin`` costs ~10 ``exp``; the
  polynomial's truncation error is < 2e-21), ``asin`` by :func:`_asin_poly` (~7x cheaper),
  and 16 / 12 Gauss-Legendre nodes in the two
  branches instead of 20 / 20. Absolute error against :func:`bvn_upper` below 1e-13
  (``tests/test_lif_kernels_deep.py::test_fast_bvn_and_moments_vs_reference``).
* :func:`conditional_moment_fast` -- ``E_{w ~ N(mean, var)}[psi'(w)]`` for every surrogate
  shape: closed forms where they exist (exponential with two ``erfcx``,
  :func:`_exponential_moment`); for the Gaussian-scale-mixture shapes
  (:data:`sgntk._quadrature.GSM_SHAPES`: fast_sigmoid, q_pseudo_spike, cauchy, sigmoid) a
  Gauss-Hermite rule where the Gaussian is narrow against the distance to the profile's kink
  or pole, and elsewhere either the tables of :mod:`._tables` (``table_ok``: one lookup, 1e-8
  relative; q_pseudo_spike at ``q = 2`` only; Gauss-Hermite with 8 / 12 nodes where
  ``sqrt(v) <= R / 12`` / ``R / 16``, see ``_TABLE_GH``) or, with 20 nodes where ``sqrt(v) <=
  R / 8``, the mixture sum ``sum_j w_j sqrt(s_j / (s_j + v)) exp(-m^2 / (2 (s_j + v))) +
  w_inf`` (each Gaussian bump of the profile integrated against ``N(m, v)`` in closed form;
  nodes from :func:`sgntk._quadrature.gsm_nodes`), 32-218 terms instead of the ~2300-node
  log-distance rule of :func:`sgntk._quadrature.gauss_expectation`. The mixture sum's error
  against the log-distance rule is below 4e-8 of the peak ``psi'(0)`` for fast_sigmoid
  (its trapezoid rule in ``log s`` near ``sqrt(v) = R / 8``) and 1e-9 for the other shapes
  (``tests/test_lif_kernels_deep.py``); the kernels built from it stay within 1e-8 of the
  reference route.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erfc

from .. import _quadrature
from .. import surrogates as _sg
from . import _tables

__all__ = ["bvn_upper_fast", "conditional_moment_fast", "table_ok"]

_LOW_X, _LOW_W = np.polynomial.legendre.leggauss(16)
_HIGH_X, _HIGH_W = np.polynomial.legendre.leggauss(12)
_LOW_GX = 1.0 + _LOW_X
_HIGH_GX = 1.0 + _HIGH_X
_sin_poly = _quadrature.sin_poly    # sin(x) for |x| <= 1.19 (one definition, in _quadrature)
# Maclaurin coefficients of asin(z) = sum_k (2k)! / (4^k (k!)^2 (2k + 1)) z^(2k+1), k <= 22.
_ASIN_C = tuple(math.factorial(2 * k) / (4**k * math.factorial(k) ** 2 * (2 * k + 1))
                for k in range(23))


def _asin_poly(x):
    """``asin(x)`` for ``|x| <= 1``: the Maclaurin series for ``|x| <= 1/2`` and ``asin|x| =
    pi/2 - 2 asin(sqrt((1 - |x|)/2))`` above (argument <= 1/2 again); 23 terms in ``z^2 <=
    1/4`` leave < 3e-17. XLA's float64 ``asin`` costs ~7x this on the CPU backend (measured
    29.7 vs 4.3 ns per element, N = 65536, load 2.2); max difference 4.4e-16 on |x| <= 0.925."""
    ax = jnp.abs(x)
    big = ax > 0.5
    z = jnp.where(big, jnp.sqrt(0.5 * (1.0 - ax)), ax)
    z2 = z * z
    p = jnp.full_like(z, _ASIN_C[-1])
    for c in _ASIN_C[-2::-1]:
        p = p * z2 + c
    a = z * p
    return jnp.sign(x) * jnp.where(big, 0.5 * math.pi - 2.0 * a, a)


def bvn_upper_fast(h, k, r, ph, pk):
    """``P(X > h, Y > k)``, standard bivariate normal with correlation ``r``, for ``h, k >= 0``.

    ``ph = Phi(-h)``, ``pk = Phi(-k)`` (precomputed by the caller). Genz's BVNU (see
    :func:`sgntk.lif_kernels.bvn_upper`): Sheppard's integral in ``asin`` with 16
    Gauss-Legendre nodes for ``|r| < 0.925``, the Drezner-Wesolowsky expansion with 12
    nodes otherwise; for ``h, k >= 0`` the final case analysis needs no further normal CDF
    but ``Phi(-|h - k'| / sqrt(1 - r^2))``. Values only (the kernel wraps it in the custom
    JVP of :func:`sgntk.lif_kernels.orthant_probability`).
    """
    tp = 2.0 * math.pi
    hk = h * k
    absr = jnp.abs(r)
    is_low = absr < 0.925
    # |r| < 0.925: Sheppard's formula.
    hs = 0.5 * (h * h + k * k)
    asr = 0.5 * _asin_poly(jnp.where(is_low, r, 0.0))
    # Nodes unrolled over arrays of the entries' shape (no (..., nodes) intermediates: the
    # XLA CPU backend runs this ~2.6x faster than the broadcast-and-sum form).
    acc = jnp.zeros_like(hk)
    for gx, gw in zip(_LOW_GX, _LOW_W):
        sn = _sin_poly(asr * gx)
        acc = acc + gw * jnp.exp((sn * hk - hs) / (1.0 - sn * sn))
    low = acc * asr / tp + ph * pk
    # |r| >= 0.925: Drezner-Wesolowsky around |r| = 1.
    neg = r < 0
    kk = jnp.where(neg, -k, k)
    hk2 = jnp.where(neg, -hk, hk)
    inner = absr < 1.0
    as_ = jnp.where(inner & ~is_low, 1.0 - r * r, 1.0)
    a = jnp.sqrt(as_)
    bs = (h - kk) ** 2
    c = (4.0 - hk2) / 8.0
    d = (12.0 - hk2) / 80.0
    e1 = -(bs / as_ + hk2) / 2.0
    bvn = jnp.where(e1 > -100.0,
                    a * jnp.exp(jnp.maximum(e1, -100.0))
                    * (1.0 - c * (bs - as_) * (1.0 - d * bs) / 3.0 + c * d * as_**2), 0.0)
    b = jnp.sqrt(bs)
    sp = math.sqrt(tp) * 0.5 * erfc(b / (a * math.sqrt(2.0)))    # Phi(-b/a), b/a >= 0
    bvn = jnp.where(hk2 > -100.0,
                    bvn - jnp.exp(-jnp.maximum(hk2, -100.0) / 2.0) * sp * b
                    * (1.0 - c * bs * (1.0 - d * bs) / 3.0), bvn)
    a2 = a / 2.0
    acc = jnp.zeros_like(hk)
    for gx, gw in zip(_HIGH_GX, _HIGH_W):
        xs = (a2 * gx) ** 2
        e2 = -(bs / xs + hk2) / 2.0
        sp2 = 1.0 + c * xs * (1.0 + 5.0 * d * xs)
        rs = jnp.sqrt(1.0 - xs)
        ep = jnp.exp(-(hk2 / 2.0) * xs / (1.0 + rs) ** 2) / rs
        acc = acc + gw * jnp.where(e2 > -100.0, jnp.exp(jnp.maximum(e2, -100.0)) * (sp2 - ep), 0.0)
    bvn = (a2 * acc - bvn) / tp
    bvn = jnp.where(inner, bvn, 0.0)
    # h, k >= 0: r > 0 adds Phi(-max(h, k)) = min(Phi(-h), Phi(-k)); r < 0 has h >= -k.
    high = jnp.where(r > 0, bvn + jnp.minimum(ph, pk), -bvn)
    return jnp.clip(jnp.where(is_low, low, high), 0.0, 1.0)


def _gsm_moment(shape, tail, m, v):
    """``E_{u ~ N(m, v)}[g(u)]`` (normalised units) from the scale-mixture nodes of ``g``."""
    s, w, w_inf = _quadrature.gsm_nodes(shape, tail)

    half_m2 = 0.5 * m * m

    def body(acc, sw):
        inv_s, wj = sw
        q = 1.0 / (1.0 + v * inv_s)            # s / (s + v)
        return acc + wj * jnp.sqrt(q) * jnp.exp(-half_m2 * inv_s * q), None

    # The body is rematerialised: reverse mode keeps the accumulator per node instead of its
    # ~3 intermediates per node (32-218 nodes x every entry of a block).
    acc, _ = jax.lax.scan(jax.checkpoint(body, prevent_cse=False),
                          jnp.zeros_like(m + v) + w_inf, (1.0 / s, w), unroll=16)
    return acc


_GH_X, _GH_W = np.polynomial.hermite.hermgauss(20)
# Distance from the real axis of the nearest complex singularity of the profile (the kinked
# shapes fast_sigmoid and q_pseudo_spike have their kink at 0 instead: 0 here).
_POLE = {"sigmoid": math.pi / 4.0, "cauchy": 1.0 / math.pi}


# Where the tables serve the rest, the Gauss-Hermite region starts further out
# (``sqrt(v) <= R / _tables.GH_RATIO``: 12 for fast_sigmoid and cauchy, 16 for sigmoid) and
# fewer nodes suffice (measured against a 60-node rule, 4e5 points of the region, relative
# where M > 1e-12): 8 nodes for fast_sigmoid and cauchy (6.7e-12), 12 for sigmoid (2.4e-9).
_GH12_X, _GH12_W = np.polynomial.hermite.hermgauss(12)
_TABLE_GH = {"sigmoid": (_GH12_X, _GH12_W),
             "fast_sigmoid": tuple(np.polynomial.hermite.hermgauss(8)),
             "cauchy": tuple(np.polynomial.hermite.hermgauss(8))}


def _gauss_hermite(profile, m, sd, nodes=(_GH_X, _GH_W)):
    """``E[profile(m + sd z)]``, ``z ~ N(0, 1)``, by a Gauss-Hermite rule (default 20 nodes)."""
    prof = jnp.zeros_like(m + sd)
    for xi, wi in zip(*nodes):
        prof = prof + wi * profile(m + math.sqrt(2.0) * xi * sd)
    return prof / math.sqrt(math.pi)


def _exponential_moment(m, v):
    """``E_{u ~ N(m, v)}[exp(-2 |u|)]`` (exponential's normalised moment), ``v > 0``.

    ``= e^{2v} [e^{-2|m|} Phi(x - 2s) + e^{2|m|} Phi(-x - 2s)]``, ``s = sqrt(v)``, ``x = |m|/s``
    (:func:`sgntk._quadrature.exp_abs_gauss`), each term with one ``erfcx``: with ``E =
    e^{-x^2/2}`` and ``z_-+ = (2s -+ x)/sqrt 2``, the second is ``E erfcx(z_+) / 2`` (``z_+ >=
    0``), the first ``E erfcx(z_-) / 2`` for ``z_- >= 0`` and ``e^{2v - 2|m|} - E erfcx(-z_-) /
    2`` otherwise (``Phi >= 1/2`` there: no cancellation). Two ``erfcx`` and two ``exp``
    instead of ``exp_abs_gauss``'s both branches per term (~13x faster, same values to
    ~1e-15 relative: ``tests/test_lif_kernels_deep.py``).
    """
    s = jnp.sqrt(v)
    am = jnp.abs(m)
    x = am / s
    e = jnp.exp(-0.5 * x * x)
    z1 = (2.0 * s - x) * _quadrature._SQRT_HALF
    z2 = (2.0 * s + x) * _quadrature._SQRT_HALF
    t1 = 0.5 * e * _quadrature.erfcx(jnp.abs(z1))
    # exponent clamped at 0: it is <= -2v where taken, and must not overflow where not taken
    t1 = jnp.where(z1 < 0, jnp.exp(jnp.minimum(2.0 * v - 2.0 * am, 0.0)) - t1, t1)
    return t1 + 0.5 * e * _quadrature.erfcx(z2)


def _gh_or(profile, m, v, pole, ratio, nodes, rest):
    """Gauss-Hermite (``nodes``) on ``profile`` where the Gaussian is narrow against the
    distance from ``m`` to the profile's kink at 0 (``pole = 0``) or complex pole at ``+-i
    pole``: ``sqrt(v) <= sqrt(m^2 + pole^2) / ratio``; ``rest()`` elsewhere (see
    :func:`conditional_moment_fast`)."""
    sd = jnp.sqrt(v)
    return jnp.where(sd <= jnp.sqrt(m * m + pole**2) / ratio,
                     _gauss_hermite(profile, m, sd, nodes), rest())


def _exact_route(shape, tail, m, v):
    """The normalised moment of ``shape`` (tail ``tail``) without tables: 20-node
    Gauss-Hermite where ``sqrt(v) <= R / 8``, the scale-mixture sum elsewhere."""
    profile = _sg.Surrogate(shape, 1.0, 1.0, tail).profile
    return _gh_or(profile, m, v, _POLE.get(shape, 0.0), 8.0, (_GH_X, _GH_W),
                  lambda: _gsm_moment(shape, tail, m, v))


def _tabulated_route(shape, m, v):
    """The normalised moment of a tabulated ``shape`` (:data:`_tables.TABLE_SHAPES`, no tail):
    Gauss-Hermite (:data:`_TABLE_GH`) where ``sqrt(v) <= R / GH_RATIO``, a table lookup
    elsewhere."""
    return _gh_or(_sg.get(shape).profile, m, v, _POLE.get(shape, 0.0), _tables.gh_ratio(shape),
                  _TABLE_GH[shape], lambda: _tables.table_moment(shape, m, v))


def _cond_remat(pred, true_fn, false_fn, *operands):
    """``lax.cond`` whose branches are rematerialised (``jax.checkpoint``). Reverse mode
    through a ``cond`` allocates the residuals of *both* branches (the untaken one's as
    zeros); checkpointed, a branch's residuals are its operands, and the taken branch is
    recomputed on the way back. Without it ``jax.grad`` of q_pseudo_spike's SG-NTK at 100
    inputs x T = 100 asked for a 2.4 GB buffer (the scale-mixture sum's, untaken at q = 2)."""
    return jax.lax.cond(pred, jax.checkpoint(true_fn), jax.checkpoint(false_fn), *operands)


def _qps_table_route(m, v):
    """q_pseudo_spike's normalised moment at its tail ``q = 2``: fast_sigmoid's tabulated
    route (the same profile)."""
    return _tabulated_route("fast_sigmoid", m, v)


def _qps_exact_route(m, v, q):
    """q_pseudo_spike's normalised moment for any tail ``q`` without tables."""
    return _exact_route("q_pseudo_spike", q, m, v)


@jax.custom_jvp
def _qps_tabulated(m, v, q):
    """q_pseudo_spike's normalised moment with the tables: :func:`_qps_table_route` where
    ``q = 2``, :func:`_qps_exact_route` otherwise (one ``cond`` for the whole moment); the
    derivative in ``q`` always from the scale-mixture sum."""
    return jax.lax.cond(q == 2.0, lambda m, v, q: _qps_table_route(m, v), _qps_exact_route,
                        m, v, q)


@_qps_tabulated.defjvp
def _qps_tabulated_jvp(primals, tangents):
    m, v, q = primals
    dm, dv, dq = tangents

    def table(m, v, q, dm, dv, dq):
        val, dval = jax.jvp(_qps_table_route, (m, v), (dm, dv))
        return val, dval + jax.jvp(lambda t: _gsm_moment("q_pseudo_spike", t, m, v), (q,),
                                   (dq,))[1]

    def exact(m, v, q, dm, dv, dq):
        return jax.jvp(_qps_exact_route, (m, v, q), (dm, dv, dq))

    return _cond_remat(q == 2.0, table, exact, m, v, q, dm, dv, dq)


def conditional_moment_fast(surrogate: _sg.Surrogate, mean, var, table_ok=None):
    """``E_{w ~ N(mean, var)}[psi'(w)]``, ``var > 0`` (elementwise; the caller treats ``var = 0``).

    Closed forms for triangular and rectangular (ramp / interval moments of
    :mod:`sgntk._quadrature`), exponential (:func:`_exponential_moment`), gaussian, erf and
    straight-through (:func:`sgntk.surrogates.gaussian_moment`); for fast_sigmoid,
    q_pseudo_spike, cauchy and sigmoid Gauss-Hermite where the Gaussian is narrow against the
    distance to the profile's kink or pole, elsewhere the tables of :mod:`._tables` when
    ``table_ok`` (a scalar bool, e.g. traced: every normalised variance of the call within the
    table, see :func:`table_ok`; q_pseudo_spike only at its tail ``q = 2``, otherwise its
    scale-mixture sum) and the Gaussian-scale-mixture sum when ``table_ok`` is None or false
    (module docstring).
    """
    shape = surrogate.shape
    beta = jnp.asarray(surrogate.sharpness)
    if shape in ("triangular", "rectangular"):
        # Ramp / interval moments (3 and 2 normal CDFs) instead of the polynomial route of
        # gaussian_moment, whose 24-node short-interval branch is evaluated for every entry.
        moment = _quadrature._triangle_moment if shape == "triangular" else _quadrature._rect_moment
        return jnp.asarray(surrogate.dampening) * moment(beta * mean, beta * jnp.sqrt(var))
    if shape == "exponential":
        return jnp.asarray(surrogate.dampening) * _exponential_moment(beta * mean, beta**2 * var)
    if shape not in _quadrature.GSM_SHAPES:
        return _sg.gaussian_moment(surrogate, mean, var)
    m = beta * mean
    v = beta**2 * var
    # The mixture sum is a trapezoid rule in log s; pointwise (v -> 0) its error is ~3e-7 for
    # fast_sigmoid, because exp(-m^2 / (2 s)) has a sharp edge in log s. Where the Gaussian is
    # narrow against the distance R from m to the profile's nearest singularity (kink or
    # complex pole), sqrt(v) <= R / 8, a 20-node Gauss-Hermite rule on the profile is exact to
    # ~1e-13 instead (its nodes reach 7.6 sqrt(v) < R from m). Measured against the
    # log-distance rule (normalised |m| <= 30, v in 1e-8 .. 1e3): GH part 2e-13; sum part
    # 3.3e-8 of the peak for fast_sigmoid (near sqrt(v) = R / 8), < 4e-10 for the others.
    # With the tables (``tabulated``) the Gauss-Hermite region shrinks to sqrt(v) <= R / 12
    # (sigmoid: R / 16) and the tables cover its complement, m^2 / v < 144 (256): see
    # _tables.GH_RATIO and _TABLE_GH.
    tail = jnp.asarray(surrogate.tail, dtype=m.dtype)

    def exact(m, v, tail):
        return _exact_route(shape, tail, m, v)

    if table_ok is None:
        return jnp.asarray(surrogate.dampening) * exact(m, v, tail)

    def tabulated(m, v, tail):
        if shape == "q_pseudo_spike":     # the table at q = 2, the mixture sum otherwise
            return _qps_tabulated(m, v, tail)
        return _tabulated_route(shape, m, v)

    out = _cond_remat(table_ok, tabulated, exact, m, v, tail)
    return jnp.asarray(surrogate.dampening) * out


def table_ok(surrogate: _sg.Surrogate, max_var):
    """Whether :func:`conditional_moment_fast` may use the tables for every conditional
    moment whose variance is at most ``max_var`` (a scalar; the kernel passes the largest
    membrane variance of the call): ``sharpness^2 max_var`` within the tables' range."""
    return _tables.in_range(jnp.asarray(surrogate.sharpness) ** 2 * max_var)
