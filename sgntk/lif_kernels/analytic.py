"""Infinite-width kernels of no-reset LIF networks, analytically (Gaussian membranes).

The drive of one neuron is a Gaussian process over (input, time) with covariance
``G_ss'(x, x') = sigma_w^2/n_in <x[s], x'[s']> + sigma_b^2``; without reset the membrane
``U_t(x) = sum_s k(t-s) d[s]`` (``k`` = :func:`sgntk.lif.impulse_response`) is a linear filter
of it, so with ``Y_t(x) = sum_s k(t-s) x[s]`` and ``K_t = sum_{n<=t} k(n)``::

    C_tt'(x, x') = sigma_w^2/n_in <Y_t(x), Y_t'(x')> + sigma_b^2 K_t K_t'

For ``(u, v) = (U_t(x), U_t'(x')) ~ N(0, [[a, r], [r, b]])`` (``a = C_tt(x,x)``,
``b = C_t't'(x',x')``, ``r = C_tt'(x,x')``)::

    NNGP(x, x')   = sigma_o^2 sum_{t,t'} kappa_t kappa_t' P(u > theta, v > theta)
    SG-NTK(x, x') = NNGP + sigma_o^2 sum_{t,t'} kappa_t kappa_t' C_tt' E[delta(u - theta) psi'(v - theta)]
    SG-Gram       = NNGP + sigma_o^2 sum_{t,t'} kappa_t kappa_t' C_tt' E[psi'(u - theta) psi'(v - theta)]

Derivation (reference notes section 6): ``dy/dw_i = sigma_o/sqrt(N) sum_t kappa_t S_i[t]``, so
the readout part of every kernel is ``sigma_o^2/N sum_i (kappa . S_i(x)) (kappa . S_i(x'))``
-> the NNGP (law of large numbers over iid neurons). Without reset ``dU_t/d(W_:i, b_i) =
sum_s k(t-s) (sigma_w/sqrt(n_in) x[s], sigma_b)`` is deterministic, so the input part of
neuron ``i`` is ``sigma_o^2/N w_i^2 sum_{tt'} kappa kappa' H'(U_t(x)) psi'(U_t'(x')) C_tt'``
with ``E[w_i^2] = 1``. The mixed expectation is ``p_u(theta) E[psi'(v - theta) | u = theta]``::

    E[delta(u - theta) psi'(v - theta)] = N(theta; 0, a) E_{w ~ N(r theta/a - theta, b - r^2/a)}[psi'(w)]

(``a -> a + 1/(2 m^2)`` for the smoothed delta of sharpness ``m``, exact). The orthant
probability is :func:`bvn_upper` (Genz's BVNU); ``E[psi' psi']`` :func:`surrogate_pair_expectation`.

Depth (GitHub issue 9). ``L >= 1`` hidden LIF layers of width ``N -> inf``, NTK
parameterisation, all raw weights iid ``N(0, 1)``: layer ``l`` gets the drive ``d^l[s] =
sigma_w/sqrt(N_{l-1}) W^l S^{l-1}[s] + sigma_b b^l`` (``S^0 = x``, ``N_0 = n_in``), runs the free
membrane ``U^l = K d^l`` (``K_ts = k(t - s)``) and spikes ``S^l[t] = H(U^l_t - theta)``; the
readout is ``y = sigma_o/sqrt(N_L) sum_i w_i kappa . S^L_i``. Per pair of inputs, with all
matrices over the time pair ``(t, t')``:

* Forward (NNGP). Neurons of one layer are iid given the layer below, and the drive is a sum
  of ``N_{l-1}`` iid terms, so as ``N_{l-1} -> inf`` it is a Gaussian process with covariance
  ``G^l_ss'(x, x') = sigma_w^2 E[S^{l-1}_s(x) S^{l-1}_s'(x')] + sigma_b^2`` (layer 1: ``G^1 =
  sigma_w^2/n_in <x[s], x'[s']> + sigma_b^2``). Filtered by the impulse response::

      C^l = K G^l K^T,    Q^l_tt' = P(U^l_t(x) > theta, U^l_t'(x') > theta) = orthant(C^l),
      G^{l+1} = sigma_w^2 Q^l + sigma_b^2,    NNGP = sigma_o^2 kappa^T Q^L kappa.

* SG-NTK. ``Theta^l_tt'(x, x') = sum_p dU^l_t(x)/dp dU^l_t'(x')/dp`` summed over all parameters
  ``p`` of layers ``<= l`` (true derivative on the ``x`` side, surrogate on the ``x'`` side). The
  parameters of layer ``l`` give ``K G^l K^T = C^l``; those below reach ``U^{l+1}_t`` through
  ``sum_s k(t - s) sigma_w/sqrt(N_l) sum_i W^{l+1}_i H'(U^l_i[s] - theta) dU^l_i[s]/dp``. In the
  product of the ``x`` and ``x'`` sides the terms ``i != i'`` average out and ``1/N_l sum_i
  (W_i)^2 H'_i psi'_i`` tends to ``E[H' psi']`` (the weights of layer ``l + 1`` are independent
  of layer ``l``'s membranes: the usual NTK argument), so::

      Theta^1 = C^1,    Theta^{l+1} = C^{l+1} + sigma_w^2 K (D^l o Theta^l) K^T,
      D^l_tt' = E[delta(U^l_t(x) - theta) psi'(U^l_t'(x') - theta)]    (the mixed expectation),
      SG-NTK  = NNGP + sigma_o^2 kappa^T (D^L o Theta^L) kappa,

  ``o`` the entrywise product. The surrogate Gram is the same with ``D~^l = E[psi' psi']`` on
  both sides. For ``L = 1`` this is the one-layer formula above (``Theta^1 = C``). The
  variances ``a^l_t = C^l_tt(x, x)`` come from the same recursion on the pair ``(x, x)``.

Cost. Per (input pair, time pair, layer): one orthant probability, one mixed expectation
and, below the top layer, ``O(T)`` for the two ``T x T`` products with ``K``. ``K(x, x)`` is
evaluated once per unordered input pair (the orthant probabilities and ``C`` are symmetric;
the mixed expectation is evaluated for both orientations). The mixed expectation's
conditional moment (:func:`._fast.conditional_moment_fast`) is a closed form for gaussian,
erf, straight-through, triangular, rectangular and exponential; for fast_sigmoid, sigmoid,
cauchy and q_pseudo_spike (at its default tail ``q = 2``) an 8-12-node Gauss-Hermite rule
where the Gaussian is narrow against the distance to the profile's kink or pole and a lookup
in a table of ``log E_{N(m, v)}[g]`` over ``(m^2 / v, log v)`` elsewhere (:mod:`._tables`:
built once per shape and process, ~1-4 s; 1e-8 relative to the direct quadrature). The tables
are used when every normalised membrane variance ``sharpness^2 a`` of the call is at most
``2^30`` (checked once per call); otherwise, and for q_pseudo_spike at ``q != 2``, the
32-218 term scale-mixture sum. The surrogate Gram's ``E[psi' psi']`` is a sum over the
profile's Gaussian bumps with one conditional moment each (those above) for the
scale-mixture shapes and gaussian / erf (:func:`._gram.surrogate_pair_fast`), a closed form
over the cells between the kinks for triangular and rectangular
(:func:`._gram.compact_pair_closed`, whose derivatives are analytic in the same cells:
Price's theorem for ``r``, the heat equation for ``a, b``, the kinks' densities for
``theta`` and the scaling ``F(beta^2 a, beta^2 b, beta^2 r, beta theta; 1)`` for the
sharpness, finite at correlation +-1), ``dampening^2`` for straight-through
(:func:`surrogate_pair_expectation`). Reverse mode recomputes each block of input pairs
(``jax.checkpoint``) and the taken branch of the conditional moment's ``cond``s
(:func:`._fast._cond_remat`), so ``jax.grad`` of the SG-NTK at 100 inputs x T = 100 peaks at
0.5-2.5 GB for every shape (``tests/test_lif_gradients.py``, ``-m slow``; README).
Benchmark: ``benchmarks/bench_lif_kernels.py``.

Differentiability at the boundaries (GitHub issue 13). On the diagonal (``x = x'``, ``t =
t'``) the correlation is exactly 1 and the conditional variance ``b - r^2/a`` exactly 0; the
partial derivatives of the orthant probability and of the conditional surrogate moment with
respect to that variance are infinite there, while the variance itself does not move with
sigma_w, sigma_b or the surrogate's parameters (its tangent is 0, up to rounding). Therefore

* :func:`orthant_probability` is a ``jax.custom_jvp`` with the analytic derivatives
  ``dP/dtheta = -phi_a(theta) Q_a - phi_b(theta) Q_b``, ``dP/da = theta/(2a) phi_a(theta) Q_a
  - r/(2a) p(theta, theta)`` (and ``a <-> b``), ``dP/dr = p(theta, theta)`` (Plackett's
  identity; ``Q_a = P(v > theta | u = theta)``, ``p`` the joint density), the ``p`` terms
  collected as ``p(theta, theta) (dr - r/2 (da/a + db/b)) = p sqrt(ab) d rho``; for
  ``1 - rho^2 <= 64 eps`` (degenerate up to rounding) the value and the derivative are those of
  the exact degenerate value ``P = Phi(-theta / sqrt(min(a, b)))`` (``rho = 1``; 0 for
  ``rho = -1``), so that rounding of ``rho`` does not move ``P`` by ``sqrt(1 - rho^2) ~ 1e-8``;
* the conditional moment ``E_{N(mu, c)}[psi']`` with ``c <= 64 eps b`` is ``psi'(mu)`` (its exact
  value at ``c = 0``, whose derivatives are those of psi'), and the quadrature is evaluated at a
  safe variance there (no ``inf * 0`` in reverse mode).

Tests: ``tests/test_lif_kernels.py`` (analytic == Monte Carlo == wide networks; bvn vs scipy;
mixed and pair expectations vs scipy quadrature), ``tests/test_lif_gradients.py`` (``jax.grad``
== central finite differences for every surrogate shape, diagonal included).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from .. import _quadrature
from .. import lif as _lif
from .. import surrogates as _sg
from .._util import check_int
from .._x64 import float64
from ._common import (KERNELS, UNSET, LIFKernel, check_spike_sharpness, prepare, renamed)
from ._fast import bvn_upper_fast, conditional_moment_fast, table_ok
from ._gram import COMPACT_SHAPES, PAIR_SHAPES, compact_pair_closed, surrogate_pair_fast

__all__ = ["bvn_upper", "orthant_probability", "mixed_expectation",
           "surrogate_pair_expectation", "membrane_covariance", "lif_kernel_fn", "lif_kernels"]

# Relative conditional variance below which a pair counts as perfectly correlated (rounding).
_DEGENERATE = 64.0 * float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------------------
# Bivariate normal: Genz's BVNU, vectorised.
# --------------------------------------------------------------------------------------
_GL20_X, _GL20_W = np.polynomial.legendre.leggauss(20)
_GX = 1.0 + _GL20_X   # nodes on [0, 2]


def bvn_upper(h, k, r):
    """``P(X > h, Y > k)`` for standard bivariate normal ``(X, Y)`` with correlation ``r``.

    Genz's BVNU (A. Genz, "Numerical computation of rectangular bivariate and trivariate
    normal and t probabilities", Stat. Comput. 14 (2004) 251; after Drezner & Wesolowsky
    1990): for ``|r| < 0.925`` a 20-point Gauss-Legendre rule in ``asin`` of Sheppard's
    formula ``Phi(-h) Phi(-k) + 1/(2 pi) int_0^{asin r} exp(-(h^2 + k^2 - 2 h k sin t) / (2
    cos^2 t)) dt``; for ``|r| >= 0.925`` the Drezner-Wesolowsky expansion around ``|r| = 1``
    (exact at ``r = +-1``). Absolute error ~1e-15 (``test_bvn_upper_vs_scipy``). Elementwise,
    jit/vmap-safe; finite ``h, k`` only. Values only: differentiate
    :func:`orthant_probability` (custom JVP) instead.
    """
    h, k, r = jnp.broadcast_arrays(*(jnp.asarray(v, dtype=float) for v in (h, k, r)))
    r = jnp.clip(r, -1.0, 1.0)
    tp = 2.0 * math.pi
    hk = h * k
    # |r| < 0.925
    hs = 0.5 * (h * h + k * k)
    asr = 0.5 * jnp.arcsin(jnp.where(jnp.abs(r) < 0.925, r, 0.0))
    sn = jnp.sin(asr[..., None] * _GX)
    low = (jnp.sum(jnp.exp((sn * hk[..., None] - hs[..., None]) / (1.0 - sn**2)) * _GL20_W, -1)
           * asr / tp + ndtr(-h) * ndtr(-k))
    # |r| >= 0.925
    neg = r < 0
    kk = jnp.where(neg, -k, k)
    hk2 = jnp.where(neg, -hk, hk)
    inner = jnp.abs(r) < 1.0
    as_ = jnp.where(inner, 1.0 - r * r, 1.0)
    a = jnp.sqrt(as_)
    bs = (h - kk) ** 2
    c = (4.0 - hk2) / 8.0
    d = (12.0 - hk2) / 80.0
    e1 = -(bs / as_ + hk2) / 2.0
    bvn = jnp.where(e1 > -100.0,
                    a * jnp.exp(jnp.maximum(e1, -100.0))
                    * (1.0 - c * (bs - as_) * (1.0 - d * bs) / 3.0 + c * d * as_**2), 0.0)
    b = jnp.sqrt(bs)
    sp = math.sqrt(tp) * ndtr(-b / a)
    bvn = jnp.where(hk2 > -100.0,
                    bvn - jnp.exp(-jnp.maximum(hk2, -100.0) / 2.0) * sp * b
                    * (1.0 - c * bs * (1.0 - d * bs) / 3.0), bvn)
    a2 = a / 2.0
    xs = (a2[..., None] * _GX) ** 2
    e2 = -(bs[..., None] / xs + hk2[..., None]) / 2.0
    sp2 = 1.0 + c[..., None] * xs * (1.0 + 5.0 * d[..., None] * xs)
    rs = jnp.sqrt(1.0 - xs)
    ep = jnp.exp(-(hk2[..., None] / 2.0) * xs / (1.0 + rs) ** 2) / rs
    terms = jnp.where(e2 > -100.0, jnp.exp(jnp.maximum(e2, -100.0)) * (sp2 - ep), 0.0)
    bvn = (a2 * jnp.sum(terms * _GL20_W, -1) - bvn) / tp
    bvn = jnp.where(inner, bvn, 0.0)
    lo = jnp.where(h < 0, ndtr(kk) - ndtr(h), ndtr(-h) - ndtr(-kk))
    high = jnp.where(r > 0, bvn + ndtr(-jnp.maximum(h, kk)),
                     jnp.where(h >= kk, -bvn, lo - bvn))
    return jnp.clip(jnp.where(jnp.abs(r) < 0.925, low, high), 0.0, 1.0)


def _normal_pdf(x, var):
    return jnp.exp(-0.5 * x * x / var) / jnp.sqrt(2.0 * math.pi * var)


@jax.custom_jvp
def _orthant(a, b, r, theta):
    ok = (a > 0) & (b > 0)
    sa = jnp.sqrt(jnp.where(ok, a, 1.0))
    sb = jnp.sqrt(jnp.where(ok, b, 1.0))
    rho = jnp.clip(jnp.where(ok, r / (sa * sb), 0.0), -1.0, 1.0)
    # Perfect correlation up to rounding is perfect correlation: otherwise the rounding of
    # rho (~1e-16) would move P by ~sqrt(1 - rho^2) ~ 1e-8 on the diagonal.
    rho = jnp.where(1.0 - rho * rho <= _DEGENERATE, jnp.sign(rho), rho)
    return jnp.where(ok, bvn_upper(theta / sa, theta / sb, rho), 0.0)


def _orthant_tangent(a, b, r, th, da, db, dr, dth):
    """Tangent of ``P(u > th, v > th)`` (module docstring: analytic derivatives, finite at
    correlation +-1)."""
    ok = (a > 0) & (b > 0)
    A = jnp.where(ok, a, 1.0)
    B = jnp.where(ok, b, 1.0)
    sa, sb = jnp.sqrt(A), jnp.sqrt(B)
    rho = jnp.clip(jnp.where(ok, r / (sa * sb), 0.0), -1.0, 1.0)
    c1 = 1.0 - rho * rho
    degen = c1 <= _DEGENERATE
    sc = jnp.sqrt(jnp.where(degen, 1.0, c1))
    pa, pb = _normal_pdf(th, A), _normal_pdf(th, B)
    qa = ndtr(th * (r / A - 1.0) / (sb * sc))    # P(v > theta | u = theta)
    qb = ndtr(th * (r / B - 1.0) / (sa * sc))    # P(u > theta | v = theta)
    joint = jnp.exp(-0.5 * th * th * (A + B - 2.0 * r) / (A * B * jnp.where(degen, 1.0, c1))) / (
        2.0 * math.pi * sa * sb * sc)
    general = (-(pa * qa + pb * qb) * dth + 0.5 * th / A * pa * qa * da
               + 0.5 * th / B * pb * qb * db + joint * (dr - 0.5 * r * (da / A + db / B)))
    # rho = +1: P = Phi(-theta / sqrt(min(a, b))); rho = -1: P = 0 (theta > 0).
    mn = jnp.minimum(A, B)
    wa = jnp.where(A < B, 1.0, jnp.where(B < A, 0.0, 0.5))    # d min(a, b) = wa da + wb db
    pm = _normal_pdf(th, mn)
    degenerate = (rho > 0) * pm * (0.5 * th / mn * (wa * da + (1.0 - wa) * db) - dth)
    return ok * jnp.where(degen, degenerate, general)


@_orthant.defjvp
def _orthant_jvp(primals, tangents):
    return _orthant(*primals), _orthant_tangent(*primals, *tangents)


@jax.custom_jvp
def _orthant_fast(a, b, r, theta, ph, pk):
    """:func:`_orthant` with :func:`._fast.bvn_upper_fast`; ``ph = Phi(-theta/sqrt(a))``,
    ``pk = Phi(-theta/sqrt(b))`` precomputed per row / column (functions of ``a, b, theta``,
    so their tangents are already in :func:`_orthant_tangent` and are ignored)."""
    ok = (a > 0) & (b > 0)
    sa = jnp.sqrt(jnp.where(ok, a, 1.0))
    sb = jnp.sqrt(jnp.where(ok, b, 1.0))
    rho = jnp.clip(jnp.where(ok, r / (sa * sb), 0.0), -1.0, 1.0)
    rho = jnp.where(1.0 - rho * rho <= _DEGENERATE, jnp.sign(rho), rho)
    return jnp.where(ok, bvn_upper_fast(theta / sa, theta / sb, rho, ph, pk), 0.0)


@_orthant_fast.defjvp
def _orthant_fast_jvp(primals, tangents):
    return _orthant_fast(*primals), _orthant_tangent(*primals[:4], *tangents[:4])


def orthant_probability(a, b, r, theta):
    """``P(u > theta, v > theta)`` for ``(u, v) ~ N(0, [[a, r], [r, b]])``, ``theta > 0``.

    ``= bvn_upper(theta/sqrt(a), theta/sqrt(b), r/sqrt(a b))``; 0 where ``a`` or ``b`` is 0
    (a membrane that is identically 0 never reaches ``theta > 0``). Custom JVP with the
    analytic derivatives in ``a, b, r, theta``, finite at correlation +-1 (module docstring).
    Tests: ``test_orthant_and_mixed_expectation_vs_quadrature``, ``test_lif_gradients.py``.
    """
    a, b, r, theta = jnp.broadcast_arrays(*(jnp.asarray(v, dtype=float)
                                            for v in (a, b, r, theta)))
    return _orthant(a, b, r, theta)


def _conditional_moment(surrogate, mean, var, scale, moment=_sg.gaussian_moment):
    """``E_{w ~ N(mean, var)}[psi'(w)]``; ``psi'(mean)`` where ``var <= 64 eps scale``
    (zero up to rounding), with the quadrature evaluated at a safe variance there.
    ``moment``: the route for ``var > 0`` (reference :func:`sgntk.surrogates.gaussian_moment`
    or :func:`._fast.conditional_moment_fast`)."""
    scale = jnp.where(scale > 0, scale, 1.0)
    degen = var <= _DEGENERATE * scale
    safe = jnp.where(degen, scale, var)
    return jnp.where(degen, surrogate.derivative(mean), moment(surrogate, mean, safe))


def mixed_expectation(a, b, r, theta, surrogate: _sg.Surrogate, spike_sharpness=None, *,
                      _moment=_sg.gaussian_moment):
    """``E[delta(u - theta) psi'(v - theta)] = N(theta; 0, a) E_{N(r theta/a - theta, b - r^2/a)}[psi']``.

    ``(u, v) ~ N(0, [[a, r], [r, b]])``. With finite ``spike_sharpness`` ``m`` the delta is the
    smoothed ``Theta_m'`` (:func:`true_spike_derivative`): ``a -> a + 1/(2 m^2)`` (exact). 0
    where the effective ``a`` is 0. Finite derivatives at ``b - r^2/a = 0`` (module
    docstring). Tests: ``test_orthant_and_mixed_expectation_vs_quadrature``,
    ``test_lif_gradients.py``.
    """
    a = jnp.asarray(a, dtype=float)
    if spike_sharpness is not None:
        a = a + 0.5 / jnp.asarray(spike_sharpness) ** 2
    ok = a > 0
    sa = jnp.where(ok, a, 1.0)
    dens = _normal_pdf(theta, sa)
    mean = r * theta / sa - theta
    var = jnp.maximum(b - r**2 / sa, 0.0)
    return jnp.where(ok, dens * _conditional_moment(surrogate, mean, var, b, _moment), 0.0)


def surrogate_pair_expectation(a, b, r, theta, surrogate: _sg.Surrogate, *,
                               _moment=conditional_moment_fast):
    """``E[psi'(u - theta) psi'(v - theta)]``, ``(u, v) ~ N(0, [[a, r], [r, b]])``.

    For the scale-mixture shapes and gaussian / erf (:data:`._gram.PAIR_SHAPES`) a sum over
    the profile's Gaussian bumps, each with one conditional moment
    (:func:`._gram.surrogate_pair_fast`); for triangular and rectangular a closed form over
    the cells of the profiles' kinks (:func:`._gram.compact_pair_closed`: bivariate normal
    orthant probabilities and Stein's identity); for straight-through the constant
    ``dampening^2``. Exact on the degenerate ``a = 0`` (and ``b = 0``). Tests:
    ``test_surrogate_pair_expectation_vs_dblquad`` (``scipy.integrate.dblquad``), the
    routes against each other (``test_pair_routes_agree``) and ``tests/test_lif_gram.py``.
    """
    a, b, r = jnp.broadcast_arrays(*(jnp.asarray(v, dtype=float) for v in (a, b, r)))
    if surrogate.shape == "straight_through":
        return jnp.broadcast_to(jnp.asarray(surrogate.dampening, dtype=a.dtype) ** 2, a.shape)
    if surrogate.shape in COMPACT_SHAPES:
        ok = (a > 0) & (b > 0)
        val = compact_pair_closed(surrogate, jnp.where(ok, a, 1.0), jnp.where(ok, b, 1.0),
                                  jnp.where(ok, r, 0.0), theta)
        return jnp.where(ok, val, jnp.where(a > 0, _one_sided(surrogate, theta, a, _moment),
                                            _one_sided(surrogate, theta, b, _moment)))
    if surrogate.shape not in PAIR_SHAPES:
        return _nested_pair_expectation(a, b, r, theta, surrogate)
    ok = a > 0
    sa = jnp.where(ok, a, 1.0)
    moment = functools.partial(_conditional_moment, surrogate, scale=b, moment=_moment)
    val = surrogate_pair_fast(surrogate, sa, b, jnp.where(ok, r, 0.0), theta, moment)
    return jnp.where(ok, val, _one_sided(surrogate, theta, b, _moment))


def _one_sided(surrogate, theta, var, moment):
    """The pair expectation when one membrane is identically 0 and the other has variance
    ``var``: ``psi'(-theta) E[psi'(w - theta)]``, ``w ~ N(0, var)``, the moment by the
    caller's route ``moment`` (it is evaluated for every entry of the ``where``: the
    reference quadrature here cost 64x the whole bump sum, measured)."""
    return surrogate.derivative(-theta) * _conditional_moment(surrogate, -theta, var, 1.0,
                                                              moment)


def _nested_pair_expectation(a, b, r, theta, surrogate: _sg.Surrogate):
    """:func:`surrogate_pair_expectation` by nested quadrature (every shape; the reference
    route of :func:`_reference_kernel_fn`).

    Nested quadrature: ``E_u[psi'(u - theta) E[psi'(v - theta) | u]]`` with ``v | u ~ N(r u/a,
    b - r^2/a)``; the inner moment is :func:`sgntk.surrogates.gaussian_moment` (closed form
    for triangular, rectangular, exponential, gaussian, erf, straight-through; a ~2300-node
    rule otherwise, then this costs ~5e6 evaluations per entry), the outer the multi-scale
    rule of :mod:`sgntk._quadrature` (cut at the profile's kinks). Exact on the degenerate
    diagonal. Test: ``test_surrogate_pair_expectation_vs_dblquad`` (``scipy.integrate.dblquad``).
    """
    a, b, r = jnp.broadcast_arrays(*(jnp.asarray(v, dtype=float) for v in (a, b, r)))
    beta = jnp.asarray(surrogate.sharpness)
    if surrogate.shape == "straight_through":
        beta = jnp.ones_like(beta)
    ok = a > 0
    sa = jnp.where(ok, a, 1.0)
    kap = r / sa
    cv = jnp.maximum(b - r**2 / sa, 0.0)
    e = lambda z: z[..., None, None]  # noqa: E731

    def g(om):  # om = beta (u - theta), u ~ N(0, a)  <=>  om ~ N(-beta theta, beta^2 a)
        w = om / beta
        inner = _conditional_moment(surrogate, e(kap) * (w + theta) - theta, e(cv), e(b))
        return surrogate.profile(om) * inner

    edge = {"triangular": (-1.0, 1.0), "rectangular": (-0.5, 0.5)}.get(surrogate.shape, ())
    breaks = tuple(jnp.full_like(a, t) for t in edge)
    outer = jnp.asarray(surrogate.dampening) * _quadrature.gauss_expectation(
        g, -beta * theta * jnp.ones_like(a), beta**2 * sa, breaks)
    degenerate = surrogate.derivative(-theta) * _conditional_moment(surrogate, -theta, b, 1.0)
    return jnp.where(ok, outer, degenerate)


# --------------------------------------------------------------------------------------
# Membrane covariance and the pure kernel function.
# --------------------------------------------------------------------------------------
def _filtered(x, kvec):
    """``Y_t = sum_s k(t - s) x[s]`` for a batch ``x`` ``(n, T, n_in)``; and ``K_t``."""
    T = x.shape[1]
    lag = jnp.arange(T)[:, None] - jnp.arange(T)[None, :]
    kmat = jnp.where(lag >= 0, kvec[jnp.clip(lag, 0, T - 1)], 0.0)
    return jnp.einsum("ts,nsk->ntk", kmat, x), jnp.cumsum(kvec)


def membrane_covariance(x1, x2=None, *, config: _lif.LIFConfig, sigma_w=1.0, sigma_b=0.0,
                        steps=None):
    """Free-membrane covariances ``(C, a, b)`` at the time steps ``steps`` (default all).

    ``C[p, t, q, t'] = Cov(U_t(x1_p), U_t'(x2_q))`` ``(n1, S, n2, S)``, ``a[p, t] =
    Var(U_t(x1_p))`` ``(n1, S)``, ``b[q, t'] = Var(U_t'(x2_q))`` ``(n2, S)``, from
    ``C_tt'(x, x') = sigma_w^2/n_in <Y_t(x), Y_t'(x')> + sigma_b^2 K_t K_t'`` (module
    docstring). Pure (jit/grad-able in the config and the scales); float64 when called under
    :func:`sgntk._x64.float64`. Test: ``test_membrane_covariance_matches_simulation``.
    """
    x1 = jnp.asarray(x1)
    x2 = x1 if x2 is None else jnp.asarray(x2)
    kvec = _lif.impulse_response(x1.shape[1], config)
    y1, kc = _filtered(x1, kvec)
    y2, _ = _filtered(x2, kvec)
    if steps is not None:
        idx = np.asarray(steps, dtype=int)
        y1, y2, kc = y1[:, idx], y2[:, idx], kc[idx]
    n_in = x1.shape[2]
    sw2, sb2 = sigma_w**2, sigma_b**2
    c = sw2 / n_in * jnp.einsum("ptk,qsk->ptqs", y1, y2) + sb2 * kc[:, None, None] * kc
    a = sw2 / n_in * jnp.sum(y1**2, -1) + sb2 * kc**2
    b = sw2 / n_in * jnp.sum(y2**2, -1) + sb2 * kc**2
    return c, a, b


# Shapes whose inner Gaussian moment is a closed form (the 2-D surrogate-pair term is cheap).
_CLOSED_INNER = ("triangular", "rectangular", "exponential", "gaussian", "erf",
                 "straight_through")


def _toeplitz(kvec, T):
    """``K[t, s] = k(t - s)`` (0 for ``s > t``): ``U = K d`` for the free membrane."""
    lag = np.arange(T)[:, None] - np.arange(T)[None, :]
    return jnp.where(lag >= 0, kvec[np.clip(lag, 0, T - 1)], 0.0)


def _map_flat(fn, arrays, batch):
    """``fn`` elementwise over broadcast ``arrays``, ``batch`` elements per vectorised block."""
    arrays = jnp.broadcast_arrays(*arrays)
    shape = arrays[0].shape
    flat = [t.reshape(-1) for t in arrays]
    out = jax.lax.map(lambda z: fn(*z), flat, batch_size=max(1, min(batch, flat[0].size)))
    return out.reshape(shape)


def lif_kernel_fn(*, which: Sequence[str] = UNSET, get=UNSET, steps: Sequence[int] | None = None,
                  batch_size: int = 1 << 16, depth: int = 1) -> Callable:
    """Pure kernel function of the no-reset LIF network with ``depth`` hidden LIF layers.

    Returns ``kernel_fn(x1, x2, config, readout_weights, sigma_w, sigma_b, sigma_o=1.0,
    spike_sharpness=None) -> LIFKernel`` with ``x1: (n1, T, n_in)``, ``x2: (n2, T, n_in)`` or
    None (then ``K(x1, x1)``, computed once per unordered input pair: the orthant
    probabilities and membrane covariances are symmetric under ``(x, t) <-> (x', t')``),
    ``config`` a :class:`sgntk.lif.LIFConfig` pytree (time constants, threshold and surrogate
    as array leaves; ``reset`` is ignored: the formulas are the no-reset ones),
    ``readout_weights`` ``(T,)`` and the scales arrays. The recursion over layers is the
    module docstring's; it runs per input pair on ``(T, T)`` time-pair blocks (``lax.map``
    over blocks of pairs). No validation; jit/vmap/grad over the config (surrogate sharpness,
    dampening, tail, time constants, threshold) and the scales, with finite derivatives on the
    diagonal (``tests/test_lif_gradients.py``). Enable float64 yourself. Static: ``which``
    (``nngp`` is always computed), ``steps`` (the time steps with nonzero readout weight;
    default all), ``batch_size`` (time-pair entries per vectorised block, memory) and
    ``depth`` (number of hidden LIF layers, >= 1).
    """
    get = renamed("which", which, "get", get, KERNELS)   # get= is the old name
    get = tuple(get)
    steps = None if steps is None else tuple(int(s) for s in steps)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    depth = check_int("depth", depth, minimum=1)

    def kernel_fn(x1, x2, config, readout_weights, sigma_w, sigma_b, sigma_o=1.0,
                  spike_sharpness=None) -> LIFKernel:
        sym = x2 is None
        x1 = jnp.asarray(x1)
        x2 = x1 if sym else jnp.asarray(x2)
        n1, T, n_in = x1.shape
        n2 = x2.shape[0]
        kvec = _lif.impulse_response(T, config)
        kmat = _toeplitz(kvec, T)
        y1 = jnp.einsum("ts,nsk->ntk", kmat, x1)
        y2 = y1 if sym else jnp.einsum("ts,nsk->ntk", kmat, x2)
        kc = jnp.cumsum(kvec)
        idx = np.arange(T) if steps is None else np.asarray(steps, dtype=int)
        kw = jnp.asarray(readout_weights)[idx]
        theta = config.threshold
        sur = config.surrogate
        sw2, sb2, so2 = sigma_w**2, sigma_b**2, sigma_o**2
        cw = sw2 / n_in
        # Layer-1 time steps: the readout steps at depth 1, all steps below a deeper layer.
        first = idx if depth == 1 else np.arange(T)

        def layer1(yp, yq):
            return (cw * jnp.einsum("...tk,...sk->...ts", yp[..., first, :], yq[..., first, :])
                    + sb2 * kc[first][:, None] * kc[first][None, :])

        def variances(y):
            """Membrane variances of one input at every layer, ``(depth, T)`` (last: ``first``
            steps at depth 1)."""
            a = cw * jnp.sum(y[first] ** 2, -1) + sb2 * kc[first] ** 2
            out = [a]
            c = layer1(y, y)
            for _ in range(depth - 1):
                p = _orthant_rows(a, a, c)
                c = kmat @ (sw2 * p + sb2) @ kmat.T
                a = jnp.diagonal(c)
                out.append(a)
            return jnp.stack(out)

        def _orthant_rows(a, b, c):
            sa = jnp.sqrt(jnp.where(a > 0, a, 1.0))
            sb = jnp.sqrt(jnp.where(b > 0, b, 1.0))
            ph, pk = ndtr(-theta / sa), ndtr(-theta / sb)
            return _orthant_fast(a[..., :, None], b[..., None, :], c, theta,
                                 ph[..., :, None], pk[..., None, :])

        def mixed(a, b, c):      # E[delta(u_t - theta) psi'(v_t' - theta)], (..., Ta, Tb)
            return mixed_expectation(a[..., :, None], b[..., None, :], c, theta, sur,
                                     spike_sharpness, _moment=moment)

        def mixed_t(a, b, c):    # the same with the sides swapped, in the (t, t') layout
            return mixed_expectation(b[..., None, :], a[..., :, None], c, theta, sur,
                                     spike_sharpness, _moment=moment)

        # Entries per vectorised step of the surrogate Gram: 256 for every current shape (closed
        # forms, bump sums: a few values per entry); 2 for a shape that falls back to the nested
        # quadrature (~5e3 values per entry).
        small = 256 if sur.shape in _CLOSED_INNER + PAIR_SHAPES else 2

        def gram(a, b, c):       # E[psi'(u_t - theta) psi'(v_t' - theta)]
            return _map_flat(lambda a_, b_, r_: surrogate_pair_expectation(
                a_, b_, r_, theta, sur, _moment=moment), (a[..., :, None], b[..., None, :], c),
                small)

        def contract(m):
            return so2 * jnp.einsum("...ts,t,s->...", m, kw, kw)

        def pair(ip, iq):
            """Kernels of the input pair ``(x1[ip], x2[iq])`` (``lax.map`` vmaps it over blocks)."""
            yp, yq = y1[ip], y2[iq]
            ap, bq = var1[ip], var2[iq]
            c = layer1(yp, yq)
            th = {"pq": c, "qp": c, "gram": c}     # layer-wise NTKs in the (t, t') layout
            for layer in range(depth):
                a, b = ap[layer], bq[layer]
                if layer == depth - 1 and depth > 1 and steps is not None:
                    a, b, c = a[idx], b[idx], c[idx][:, idx]
                    th = {k: v[idx][:, idx] for k, v in th.items()}
                p = _orthant_rows(a, b, c)
                d = {}
                if "sgntk" in get:
                    d["pq"] = mixed(a, b, c)
                    if sym:
                        d["qp"] = mixed_t(a, b, c)
                if "sg_gram" in get:
                    d["gram"] = gram(a, b, c)
                if layer == depth - 1:
                    out = {"nngp": contract(p)}
                    for k, v in d.items():
                        out[k] = out["nngp"] + contract(v * th[k])
                    return out
                c = kmat @ (sw2 * p + sb2) @ kmat.T
                th = {k: c + sw2 * kmat @ (v * th[k]) @ kmat.T for k, v in d.items()}

        var1 = jax.vmap(variances)(y1)
        var2 = var1 if sym else jax.vmap(variances)(y2)
        # Every conditional variance of the call (SG-NTK and surrogate Gram) is at most a
        # membrane variance: one check decides whether the moment tables cover them all.
        moment = functools.partial(conditional_moment_fast, table_ok=table_ok(
            sur, jnp.maximum(jnp.max(var1), jnp.max(var2))))
        if sym:
            ip, iq = np.triu_indices(n1)
        else:
            ip, iq = (g.reshape(-1) for g in np.meshgrid(np.arange(n1), np.arange(n2),
                                                         indexing="ij"))
        per_pair = (len(first) if depth > 1 else len(idx)) ** 2
        # jax.checkpoint: reverse mode keeps only each block's pair indices and recomputes the
        # block's forward pass, instead of ~0.5-1 kB of residuals per (input pair, time pair)
        # entry (tens of GB for jax.grad at 100 inputs x T = 100).
        vals = jax.lax.map(jax.checkpoint(lambda z: pair(*z)),
                           (jnp.asarray(ip), jnp.asarray(iq)),
                           batch_size=max(1, min(len(ip), batch_size // per_pair)))
        res = {}
        if sym:
            def place(v_pq, v_qp):
                return jnp.zeros((n1, n1), v_pq.dtype).at[ip, iq].set(v_pq).at[iq, ip].set(v_qp)
            res["nngp"] = place(vals["nngp"], vals["nngp"])
            if "sgntk" in get:
                res["sgntk"] = place(vals["pq"], vals["qp"])
            if "sg_gram" in get:
                res["sg_gram"] = place(vals["gram"], vals["gram"])
        else:
            res["nngp"] = vals["nngp"].reshape(n1, n2)
            if "sgntk" in get:
                res["sgntk"] = vals["pq"].reshape(n1, n2)
            if "sg_gram" in get:
                res["sg_gram"] = vals["gram"].reshape(n1, n2)
        return LIFKernel(**{k: res[k] for k in get})

    return kernel_fn

def _reference_kernel_fn(*, which: Sequence[str] = UNSET, get=UNSET, steps: Sequence[int] | None = None,
                         batch_size: int = 2048) -> Callable:
    """The one-layer kernel function as it was before issue 9 (flat entry lists, reference
    orthant and moment routes): kept as the reference :func:`lif_kernel_fn` is tested against
    (``tests/test_lif_kernels_deep.py``). Same signature as :func:`lif_kernel_fn` at depth 1."""
    get = renamed("which", which, "get", get, KERNELS)   # get= is the old name
    get = tuple(get)
    steps = None if steps is None else tuple(int(s) for s in steps)
    batch_size = check_int("batch_size", batch_size, minimum=1)

    def kernel_fn(x1, x2, config, readout_weights, sigma_w, sigma_b, sigma_o=1.0,
                  spike_sharpness=None) -> LIFKernel:
        c, a, b = membrane_covariance(x1, x2, config=config, sigma_w=sigma_w, sigma_b=sigma_b,
                                      steps=steps)
        kw = jnp.asarray(readout_weights)
        if steps is not None:
            kw = kw[np.asarray(steps, dtype=int)]
        theta = config.threshold
        sur = config.surrogate
        shape = c.shape
        n1, s1, n2, s2 = shape
        # Entry lists by gather. (Not broadcast_to(...).reshape(-1): under jit(jax.jacrev) on
        # the XLA CPU backend of JAX 0.10 that layout lost the cotangent of `a` on the
        # diagonal entries, a factor-2 error caught by tests/test_lif_gradients.py.)
        ia = np.broadcast_to(np.arange(n1 * s1).reshape(n1, s1, 1, 1), shape).reshape(-1)
        ib = np.broadcast_to(np.arange(n2 * s2).reshape(1, 1, n2, s2), shape).reshape(-1)
        flat = (a.reshape(-1)[ia], b.reshape(-1)[ib], c.reshape(-1))

        def contract(fn, size):
            vals = jax.lax.map(lambda abr: fn(*abr), flat, batch_size=min(size, flat[0].size))
            return sigma_o**2 * jnp.einsum("ptqs,t,s->pq", vals.reshape(shape), kw, kw)

        p = contract(lambda a_, b_, r_: orthant_probability(a_, b_, r_, theta), batch_size)
        out = {"nngp": p}
        if "sgntk" in get:
            out["sgntk"] = p + contract(
                lambda a_, b_, r_: r_ * mixed_expectation(a_, b_, r_, theta, sur,
                                                          spike_sharpness), batch_size)
        if "sg_gram" in get:
            small = 256 if sur.shape in _CLOSED_INNER else 2
            out["sg_gram"] = p + contract(
                lambda a_, b_, r_: r_ * _nested_pair_expectation(a_, b_, r_, theta, sur),
                max(1, min(batch_size, small)))
        return LIFKernel(**{k: out[k] for k in get})

    return kernel_fn


@functools.lru_cache(maxsize=64)
def _jitted_kernel_fn(get, steps, batch_size, depth=1):
    return jax.jit(lif_kernel_fn(which=get, steps=steps, batch_size=batch_size, depth=depth))


@float64
def lif_kernels(x1, x2=None, *, config: _lif.LIFConfig, readout_weights=UNSET, sigma_w=1.0,
                sigma_b=0.0, sigma_o=1.0, spike_sharpness=UNSET, which: Sequence[str] = UNSET, get=UNSET,
                chunk: int = 1 << 16, depth: int = 1, mesh=None, tiles=None,
                tile_size: int = 256, progress: bool | None = None, kappa=UNSET,
                m=UNSET) -> LIFKernel:
    """Infinite-width NNGP, SG-NTK and surrogate Gram of the no-reset LIF network (analytic).

    Formulas and derivation: module docstring. Only ``config.reset == "none"`` has a
    Gaussian membrane; for a reset use :func:`sgntk.lif_kernels.lif_kernels_mc`. The pure,
    differentiable function underneath is :func:`lif_kernel_fn`.

    Args:
      x1: spike trains ``(n1, T, n_in)`` (or one ``(T, n_in)``); x2: ``(n2, T, n_in)``, default x1.
      config: :class:`sgntk.lif.LIFConfig` (tau_mem, tau_syn, dt, threshold, surrogate, reset).
      readout_weights: temporal readout weights ``kappa``: ``"sum"``, ``"last"`` or ``(T,)``;
        default ``config.readout`` (``"max"`` raises). Old name ``kappa=`` (deprecated).
      sigma_w > 0, sigma_b >= 0, sigma_o > 0: NTK scales of input weights, bias, readout.
      spike_sharpness: None for the exact Dirac true derivative, or the sharpness ``m`` of
        :func:`true_spike_derivative` (to compare with finite networks / Monte Carlo).
        Old name ``m=`` (deprecated).
      get: subset of :data:`KERNELS`. ``sg_gram`` costs per (t, t') entry one conditional
        moment per Gaussian bump of the profile (1 for gaussian / erf, 32-218 for the
        scale-mixture shapes, each moment 1-218 terms), a nested 1-D quadrature for
        triangular and rectangular.
      chunk: time-pair entries per vectorised block (memory).
      depth: number of hidden LIF layers (>= 1; recursion in the module docstring).
      mesh: None (default: one device, one call) or a ``jax.sharding.Mesh`` / ``"all"``: input
        pairs computed tile by tile on every device, rows of the result sharded over them
        (:func:`sgntk.sharding.map_tiles`; entries identical to the one-device route).
      tiles: None or a folder: stream each kernel tile by tile to ``<tiles>/<name>.npy``
        (resumable; read-only memory maps come back), on ``mesh``'s devices (default all).
      tile_size: input rows (and columns) per tile when ``mesh`` or ``tiles`` is given.
      progress: tqdm bar over tiles (default: more than 16 tile steps).
    Returns:
      :class:`LIFKernel` of float64 ``(n1, n2)`` arrays (sharded ``jax.Array`` / memory maps
      with ``mesh`` / ``tiles``). Only time steps with
      ``kappa_t != 0`` are evaluated (``"last"``: one entry per pair).
    Tests: ``test_analytic_vs_mc_vs_networks[_grid]``, ``test_surrogate_pair_expectation_vs_dblquad``,
    ``test_analytic_exact_delta_is_large_m_limit``, ``tests/test_lif_gradients.py``.
    """
    get = renamed("which", which, "get", get, KERNELS)   # get= is the old name
    weights = renamed("readout_weights", readout_weights, "kappa", kappa, None)
    sharp = renamed("spike_sharpness", spike_sharpness, "m", m, None)
    sym = x2 is None
    depth = check_int("depth", depth, minimum=1)
    x1, x2, cfg, kap, get, sw, sb, so = prepare(x1, x2, config, weights, get, sigma_w,
                                                sigma_b, sigma_o)
    sharp = check_spike_sharpness(sharp, allow_none=True)
    chunk = check_int("chunk", chunk, minimum=1)
    if config.reset != "none":
        raise ValueError(f"the analytic kernel needs reset='none' (Gaussian membrane); got "
                         f"reset={config.reset!r}: use lif_kernels_mc for the reset network")
    idx = tuple(int(i) for i in np.flatnonzero(kap))
    if not idx:
        z = jnp.zeros((x1.shape[0], x2.shape[0]))
        return LIFKernel(**{k: z for k in get})
    fn = _jitted_kernel_fn(get, idx, chunk, depth)
    if mesh is not None or tiles is not None:   # sharded / on disk (sgntk.sharding)
        from .. import sharding
        tile_size = check_int("tile_size", tile_size, minimum=1)
        return LIFKernel(**sharding.map_tiles(
            fn, x1, x1 if sym else x2, args=(cfg, jnp.asarray(kap), sw, sb, so, sharp),
            mesh=mesh, tile=tile_size, out=tiles, progress=progress))
    return fn(jnp.asarray(x1), None if sym else jnp.asarray(x2), cfg, jnp.asarray(kap), sw, sb,
              so, sharp)
