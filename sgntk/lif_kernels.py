"""Kernels of one-hidden-layer LIF networks: empirical, infinite-width (no reset), Monte Carlo.

Network (NTK parameterisation; GitHub issue 4). ``P`` input spike trains ``x[s]`` in
``R^{n_in}``, ``s = 0 .. T-1``, one hidden layer of ``N`` LIF neurons with the dynamics of
:mod:`sgntk.lif` (same ``_step``: synaptic current, leaky membrane, reset variants,
``H(0) = 0``), all raw parameters iid ``N(0, 1)``::

    d_i[s]  = sigma_w / sqrt(n_in) sum_k W_ki x_k[s] + sigma_b b_i          (input current drive)
    I[s+1]  = b_syn I[s] + d[s] (+ sigma_rec / sqrt(N) S[s] @ V)           (optional recurrence)
    U[s+1]  = b_mem U[s] + (1 - b_mem) I[s]   (reset: none / to zero / by subtraction)
    S[t]    = H(U[t] - theta)
    y(x)    = sum_t kappa_t  sigma_o / sqrt(N)  sum_i w_i S_i[t]

with trained ``w`` (readout), ``W`` (input), ``b`` (bias, if ``sigma_b > 0``) and ``V`` (if
recurrent). The readout must be LINEAR in the per-step spikes: ``kappa`` = ones ("sum"),
one-hot at ``T - 1`` ("last") or any fixed vector (:func:`readout_weights`, which also
turns :func:`sgntk.lif.readout_layer`'s leaky readout into a ``kappa``). Max-over-time is not
kernel-compatible: the winning step depends on the random initialisation, so the
infinite-width kernel is not deterministic; asking for it raises ``ValueError``.

Kernels (``LIFKernel``), all ``(n1, n2)`` between ``x1`` and ``x2``:

* ``nngp``    -- output covariance ``E[y(x) y(x')]`` (empirical: one sample ``y(x) y(x')``);
* ``sgntk``   -- ``J(x) J~(x')^T``: *true* spike derivative at ``x`` (evaluation point) and
  surrogate ``psi'`` at ``x'`` (training point); asymmetric;
* ``sg_gram`` -- ``J~(x) J~(x')^T`` (surrogate on both sides).

The true derivative of the Heaviside spike is a Dirac delta; finite networks and Monte Carlo
use the smoothed ``Theta_m(z) = (1 + erf(m z)) / 2``, ``Theta_m'(z) = m / sqrt(pi)
exp(-m^2 z^2)`` (a Gaussian of std ``1 / (sqrt(2) m)``), with a custom JVP so that autodiff
gives exactly ``J`` and ``J~`` (forward values are the exact Heaviside in both). The
analytic kernel takes ``m = None`` (the delta itself) or the same finite ``m`` (exact:
smoothing the delta by a Gaussian adds ``1 / (2 m^2)`` to the variance of ``u``), so the
three routes can be compared without smoothing bias. The smoothing error of ``m`` against
the exact delta is O(1/m^2) off the diagonal but O(sharpness/m) on it (``x = x'``, ``t = t'``:
the delta puts ``v`` exactly at the surrogate's kink for kinked shapes such as fast_sigmoid).

**Impulse response** (:func:`impulse_response`, derived from the discrete dynamics, checked
against :func:`sgntk.lif.lif_layer` in ``tests/test_lif_kernels.py``). Without reset
``U[t] = sum_s k(t - s) d[s]`` with ``k(0) = k(1) = 0`` (an input at step ``s`` reaches
``I[s+1]`` and first moves ``U[s+2]``) and, for ``n >= 2``::

    k(n) = (1 - b_mem) sum_{p=0}^{n-2} b_mem^(n-2-p) b_syn^p
         = (1 - b_mem) (b_mem^(n-1) - b_syn^(n-1)) / (b_mem - b_syn)     ((1-b)(n-1) b^(n-2) if equal)

**Infinite width, no reset** (:func:`lif_kernels`). The drive of one neuron is a Gaussian
process over (input, time) with covariance ``G_ss'(x, x') = sigma_w^2/n_in <x[s], x'[s']> +
sigma_b^2``; the membrane ``U_t(x)`` is a linear filter of it, so with ``Y_t(x) = sum_s
k(t-s) x[s]`` and ``K_t = sum_{n<=t} k(n)``::

    C_tt'(x, x') = sigma_w^2/n_in <Y_t(x), Y_t'(x')> + sigma_b^2 K_t K_t'

For ``(u, v) = (U_t(x), U_t'(x')) ~ N(0, [[a, r], [r, b]])`` (``a = C_tt(x,x)``,
``b = C_t't'(x',x')``, ``r = C_tt'(x,x')``)::

    NNGP(x, x')   = sigma_o^2 sum_{t,t'} kappa_t kappa_t' P(u > theta, v > theta)
    SG-NTK(x, x') = NNGP + sigma_o^2 sum_{t,t'} kappa_t kappa_t' C_tt' E[delta(u - theta) psi'(v - theta)]
    SG-Gram       = NNGP + sigma_o^2 sum_{t,t'} kappa_t kappa_t' C_tt' E[psi'(u - theta) psi'(v - theta)]

Derivation: ``dy/dw_i = sigma_o/sqrt(N) sum_t kappa_t S_i[t]``, so the readout part of any of
the kernels is ``sigma_o^2/N sum_i (kappa . S_i(x)) (kappa . S_i(x'))`` -> the NNGP (law of
large numbers over iid neurons). Without reset ``dU_t/d(W_:i, b_i) = sum_s k(t-s)
(sigma_w/sqrt(n_in) x[s], sigma_b)`` is deterministic, so the input part of neuron ``i`` is
``sigma_o^2/N w_i^2 sum_{tt'} kappa kappa' H'(U_t(x)) psi'(U_t'(x')) C_tt'``; ``E[w_i^2] = 1``.
The mixed expectation is ``p_u(theta) E[psi'(v - theta) | u = theta]``::

    E[delta(u - theta) psi'(v - theta)] = N(theta; 0, a) E_{w ~ N(r theta/a - theta, b - r^2/a)}[psi'(w)]

(with ``a -> a + 1/(2 m^2)`` for the smoothed delta). The orthant probability is
:func:`bvn_upper` (Genz's BVNU algorithm, checked against ``scipy.stats.multivariate_normal``)
and ``E[psi' psi']`` a nested 1-D quadrature (checked against ``scipy.integrate.dblquad``).

**Monte Carlo, any reset** (:func:`lif_kernels_mc`, mean field). Neurons of the infinite
feed-forward layer are iid: sample single-neuron drive trajectories ``d = F z`` (``z ~ N(0,
I)``, ``F F^T = G`` over all inputs and times jointly), run the neuron with :mod:`sgntk.lif`'s
dynamics, and average ``(kappa . S(x)) (kappa . S(x'))`` (readout part) and the input part.
The neuron's gradient w.r.t. its input weights and bias is ``g(x) = sum_s lambda_s(x)
(sigma_w/sqrt(n_in) x[s], sigma_b)`` with the backpropagated sensitivity ``lambda_s(x) =
d(kappa . S(x))/d d[s]`` (through the reset, detached or not), so::

    g(x) . g~(x') = sum_{s,s'} lambda_s(x) lambda~_s'(x') G_ss'(x, x') = (F_x^T lambda(x)) . (F_x'^T lambda~(x'))

Without reset ``lambda_s = sum_t kappa_t H'(U_t - theta) k(t - s)`` and the estimator's mean is
exactly the analytic kernel above (cross-check). Recurrent networks
(:func:`lif_kernels_networks`): average of :func:`lif_empirical` over finite networks.

Tests: ``tests/test_lif_kernels.py``. Demonstration: ``experiments/lif_kernels.py``.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from . import _quadrature
from . import lif as _lif
from . import monte_carlo as _mc
from . import surrogates as _sg
from ._x64 import float64
from .kernels import _positive

__all__ = [
    "KERNELS",
    "LIFKernel",
    "LIFNetParams",
    "DEFAULT_M",
    "true_spike_derivative",
    "impulse_response",
    "readout_weights",
    "membrane_covariance",
    "bvn_upper",
    "orthant_probability",
    "mixed_expectation",
    "surrogate_pair_expectation",
    "init_lif_net",
    "lif_net_apply",
    "lif_empirical",
    "lif_kernels",
    "lif_kernels_mc",
    "lif_kernels_networks",
]

KERNELS = ("nngp", "sgntk", "sg_gram")
DEFAULT_M = 10.0
_SQRT_2PI = math.sqrt(2.0 * math.pi)


class LIFKernel(NamedTuple):
    """Kernels between ``x1`` (n1 examples) and ``x2`` (n2); each ``(n1, n2)`` or None.

    nngp: output covariance (empirical: the sample ``y(x1) y(x2)^T``).
    sgntk: ``J(x1) J~(x2)^T`` (true/smoothed derivative at x1, surrogate at x2).
    sg_gram: ``J~(x1) J~(x2)^T``.
    """

    nngp: jax.Array | None = None
    sgntk: jax.Array | None = None
    sg_gram: jax.Array | None = None


class LIFNetParams(NamedTuple):
    """Raw ``N(0, 1)`` parameters of the NTK-parameterised LIF network (module docstring).

    w_in ``(n_in, N)``, bias ``(N,)``, w_rec ``(N, N)`` or None, w_out ``(N,)``.
    """

    w_in: jax.Array
    bias: jax.Array
    w_rec: Optional[jax.Array]
    w_out: jax.Array


# --------------------------------------------------------------------------------------
# Small pieces: true derivative, impulse response, readout weights.
# --------------------------------------------------------------------------------------
def true_spike_derivative(m) -> _sg.Surrogate:
    """``Theta_m'(z) = m/sqrt(pi) exp(-m^2 z^2)`` (unit area, std ``1/(sqrt(2) m)``) as a Surrogate.

    It is ``surrogates.get("gaussian", sharpness=m/sqrt(pi), dampening=m/sqrt(pi))``, the
    derivative of ``(1 + erf(m z))/2`` -> Heaviside as ``m -> inf`` (half of ``erf_m'``,
    the Heaviside having jump 1 where sign has 2).
    """
    c = jnp.asarray(m) / math.sqrt(math.pi)
    return _sg.Surrogate("gaussian", c, c)


def impulse_response(T: int, config: _lif.LIFConfig, *, mem_decay=None):
    """Free-membrane response ``k(n)``, ``n = 0 .. T-1``, to a unit drive at step 0.

    ``k(0) = k(1) = 0`` and ``k(n) = (1 - b_m)(b_m^(n-1) - b_s^(n-1)) / (b_m - b_s)`` for
    ``n >= 2`` (limit ``(1 - b)(n - 1) b^(n-2)`` for equal decays); module docstring for the
    derivation. ``mem_decay`` replaces ``b_m`` (the leaky readout uses ``b_ro``).
    Checked against :func:`sgntk.lif.lif_layer` (reset="none") and against
    :func:`sgntk.lif.psp_moments` (``sum_n k(n) = 1 / (1 - b_s)``) in the tests.
    """
    bm = _lif.decay(config.tau_mem, config.dt) if mem_decay is None else jnp.asarray(mem_decay)
    bs = _lif.decay(config.tau_syn, config.dt)
    n = jnp.arange(T, dtype=jnp.result_type(bm, float))
    e = jnp.maximum(n - 1.0, 0.0)
    diff = bm - bs
    close = jnp.abs(diff) < 1e-6
    general = (bm**e - bs**e) / jnp.where(close, 1.0, diff)
    bmid = 0.5 * (bm + bs)
    equal = e * bmid ** jnp.maximum(e - 1.0, 0.0)
    return jnp.where(n >= 2, (1.0 - bm) * jnp.where(close, equal, general), 0.0)


def readout_weights(T: int, mode="sum", *, config: _lif.LIFConfig | None = None):
    """Temporal readout weights ``kappa`` ``(T,)`` of a linear readout ``y = sum_t kappa_t (...)[t]``.

    Args:
      T: number of steps. mode: ``"sum"`` (ones), ``"last"`` (one-hot at ``T - 1``) or an
        array ``(T,)``. ``"max"`` raises: max-over-time is not kernel-compatible.
      config: if given, fold in :func:`sgntk.lif.readout_layer`'s leaky readout, so that
        ``reduce_readout(readout_layer(W_o, S), mode) == kappa @ S @ W_o``:
        ``kappa_s = sum_n c_n k_ro(n + 1 - s)`` with ``k_ro`` the impulse response with
        ``b_ro`` as membrane decay (trace[n] is ``U_o[n+1]``).
    """
    if isinstance(mode, str):
        if mode == "max":
            raise ValueError(
                "readout 'max' (max over time) is not kernel-compatible: the winning time step "
                "depends on the random initialisation, so the infinite-width kernel is not "
                "deterministic. Use 'sum', 'last' or a fixed weight vector (you may still train "
                "with 'max')")
        if mode == "sum":
            c = np.ones(T)
        elif mode == "last":
            c = np.zeros(T)
            c[-1] = 1.0
        else:
            raise ValueError(f"kappa must be 'sum', 'last' or an array of shape (T,) = ({T},); "
                             f"got {mode!r}")
    else:
        c = np.asarray(mode, dtype=np.float64)
        if c.shape != (T,) or not np.all(np.isfinite(c)):
            raise ValueError(f"kappa must have shape (T,) = ({T},) with finite entries; "
                             f"got shape {c.shape}")
    if config is None:
        return c
    b_ro = np.asarray(_lif.decay(config.tau_readout, config.dt), dtype=np.float64)
    k = np.asarray(impulse_response(T + 1, config, mem_decay=b_ro), dtype=np.float64)
    n = np.arange(T)
    lag = n[:, None] + 1 - n[None, :]          # [n, s] -> n + 1 - s
    kmat = np.where(lag >= 0, k[np.clip(lag, 0, T)], 0.0)
    return c @ kmat


def _kappa(kappa, config, T):
    if kappa is None:
        kappa = config.readout
    return readout_weights(T, kappa)


# --------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------
def _spike_batch(name, x, n_in=None, T=None):
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"{name} must be spike trains of shape (n, T, n_in) (or one train "
                         f"(T, n_in)) with all sizes >= 1; got shape {np.shape(x)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf entries")
    if T is not None and arr.shape[1] != T:
        raise ValueError(f"{name} has T = {arr.shape[1]} time steps but x1 has {T}")
    if n_in is not None and arr.shape[2] != n_in:
        raise ValueError(f"{name} has n_in = {arr.shape[2]} input channels but "
                         f"{n_in} were expected")
    return arr


def _check_m(m, allow_none):
    if m is None:
        if allow_none:
            return None
        raise ValueError("m (sharpness of the smoothed true spike derivative) must be a finite "
                         "number > 0 for finite networks and Monte Carlo")
    return _positive("m", m)


def _check_get(get):
    get = tuple(get)
    bad = [k for k in get if k not in KERNELS]
    if bad or not get:
        raise ValueError(f"get must be a non-empty subset of {KERNELS}; got {get!r}")
    return get


def _check_config(config):
    if not isinstance(config, _lif.LIFConfig):
        raise ValueError(f"config must be a sgntk.lif.LIFConfig; got {type(config).__name__}")
    config.validate()
    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), config)


def _prepare(x1, x2, config, kappa, get, sigma_w, sigma_b, sigma_o):
    x1 = _spike_batch("x1", x1)
    x2 = x1 if x2 is None else _spike_batch("x2", x2, x1.shape[2], x1.shape[1])
    cfg = _check_config(config)
    kap = _kappa(kappa, config, x1.shape[1])
    return (x1, x2, cfg, kap, _check_get(get), _positive("sigma_w", sigma_w),
            _positive("sigma_b", sigma_b, allow_zero=True), _positive("sigma_o", sigma_o))


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
    (exact at ``r = +-1``). Absolute error ~1e-15 (test: scipy). Elementwise, jit/vmap-safe;
    finite ``h, k`` only.
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


def orthant_probability(a, b, r, theta):
    """``P(u > theta, v > theta)`` for ``(u, v) ~ N(0, [[a, r], [r, b]])``, ``theta > 0``.

    ``= bvn_upper(theta/sqrt(a), theta/sqrt(b), r/sqrt(a b))``; 0 where ``a`` or ``b`` is 0
    (a membrane that is identically 0 never reaches ``theta > 0``).
    """
    a, b, r = jnp.broadcast_arrays(*(jnp.asarray(v, dtype=float) for v in (a, b, r)))
    ok = (a > 0) & (b > 0)
    sa = jnp.sqrt(jnp.where(ok, a, 1.0))
    sb = jnp.sqrt(jnp.where(ok, b, 1.0))
    p = bvn_upper(theta / sa, theta / sb, jnp.where(ok, r / (sa * sb), 0.0))
    return jnp.where(ok, p, 0.0)


def mixed_expectation(a, b, r, theta, surrogate: _sg.Surrogate, m=None):
    """``E[delta(u - theta) psi'(v - theta)] = N(theta; 0, a) E_{N(r theta/a - theta, b - r^2/a)}[psi']``.

    ``(u, v) ~ N(0, [[a, r], [r, b]])``. With finite ``m`` the delta is the smoothed
    ``Theta_m'`` (:func:`true_spike_derivative`): ``a -> a + 1/(2 m^2)`` (exact). 0 where the
    effective ``a`` is 0.
    """
    a = jnp.asarray(a, dtype=float)
    if m is not None:
        a = a + 0.5 / jnp.asarray(m) ** 2
    ok = a > 0
    sa = jnp.where(ok, a, 1.0)
    dens = jnp.exp(-0.5 * theta**2 / sa) / jnp.sqrt(2.0 * jnp.pi * sa)
    mean = r * theta / sa - theta
    var = jnp.maximum(b - r**2 / sa, 0.0)
    return jnp.where(ok, dens * _sg.gaussian_moment(surrogate, mean, var), 0.0)


def surrogate_pair_expectation(a, b, r, theta, surrogate: _sg.Surrogate):
    """``E[psi'(u - theta) psi'(v - theta)]``, ``(u, v) ~ N(0, [[a, r], [r, b]])``.

    Nested quadrature: ``E_u[psi'(u - theta) E[psi'(v - theta) | u]]`` with ``v | u ~ N(r u/a,
    b - r^2/a)``; the inner moment is :func:`sgntk.surrogates.gaussian_moment` (closed form
    for triangular, rectangular, exponential, gaussian, erf, straight-through; a ~2300-node
    rule otherwise, then this costs ~5e6 evaluations per entry), the outer the multi-scale
    rule of :mod:`sgntk._quadrature` (cut at the profile's kinks). Exact on the degenerate
    diagonal. Checked against ``scipy.integrate.dblquad``.
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
        inner = _sg.gaussian_moment(surrogate, e(kap) * (w + theta) - theta, e(cv))
        return surrogate.profile(om) * inner

    edge = {"triangular": (-1.0, 1.0), "rectangular": (-0.5, 0.5)}.get(surrogate.shape, ())
    breaks = tuple(jnp.full_like(a, t) for t in edge)
    outer = jnp.asarray(surrogate.dampening) * _quadrature.gauss_expectation(
        g, -beta * theta * jnp.ones_like(a), beta**2 * sa, breaks)
    degenerate = surrogate.derivative(-theta) * _sg.gaussian_moment(surrogate, -theta, b)
    return jnp.where(ok, outer, degenerate)


# --------------------------------------------------------------------------------------
# Infinite width, no reset.
# --------------------------------------------------------------------------------------
def _filtered(x, kvec):
    """``Y_t = sum_s k(t - s) x[s]`` for a batch ``x`` ``(n, T, n_in)``."""
    T = x.shape[1]
    lag = jnp.arange(T)[:, None] - jnp.arange(T)[None, :]
    kmat = jnp.where(lag >= 0, kvec[jnp.clip(lag, 0, T - 1)], 0.0)
    return jnp.einsum("ts,nsk->ntk", kmat, x), jnp.cumsum(kvec)


def membrane_covariance(x1, x2=None, *, config: _lif.LIFConfig, sigma_w=1.0, sigma_b=0.0):
    """Free-membrane covariance ``C[p, t, q, t'] = Cov(U_t(x1_p), U_t'(x2_q))`` ``(n1, T, n2, T)``.

    ``C_tt'(x, x') = sigma_w^2/n_in <Y_t(x), Y_t'(x')> + sigma_b^2 K_t K_t'`` (module
    docstring); float64 when called under :func:`sgntk._x64.float64`.
    """
    x1 = jnp.asarray(x1)
    x2 = x1 if x2 is None else jnp.asarray(x2)
    kvec = impulse_response(x1.shape[1], config)
    y1, kc = _filtered(x1, kvec)
    y2, _ = _filtered(x2, kvec)
    n_in = x1.shape[2]
    return (sigma_w**2 / n_in * jnp.einsum("ptk,qsk->ptqs", y1, y2)
            + sigma_b**2 * kc[None, :, None, None] * kc[None, None, None, :])


def _entry_map(fn, args, chunk):
    """Apply an elementwise ``fn(*args)`` over flat arrays in chunks (bounded memory)."""
    n = args[0].shape[0]
    chunk = max(1, min(chunk, n))
    pad = (-n) % chunk
    padded = [jnp.concatenate([a, jnp.repeat(a[:1], pad, 0)]) if pad else a for a in args]
    blocks = [p.reshape(-1, chunk) for p in padded]
    out = jax.lax.map(lambda xs: fn(*xs), tuple(blocks))
    return out.reshape(-1)[:n]


@float64
def lif_kernels(x1, x2=None, *, config: _lif.LIFConfig, kappa=None, sigma_w=1.0,
                sigma_b=0.0, sigma_o=1.0, m=None, get: Sequence[str] = KERNELS,
                chunk: int = 2048) -> LIFKernel:
    """Infinite-width NNGP, SG-NTK and surrogate Gram of the no-reset LIF layer (analytic).

    Formulas and derivation: module docstring. Only ``config.reset == "none"`` has a
    Gaussian membrane; for a reset use :func:`lif_kernels_mc`.

    Args:
      x1: spike trains ``(n1, T, n_in)`` (or one ``(T, n_in)``); x2: ``(n2, T, n_in)``, default x1.
      config: :class:`sgntk.lif.LIFConfig` (tau_mem, tau_syn, dt, threshold, surrogate, reset).
      kappa: temporal readout weights, ``"sum"``, ``"last"`` or ``(T,)``; default
        ``config.readout`` (``"max"`` raises).
      sigma_w > 0, sigma_b >= 0, sigma_o > 0: NTK scales of input weights, bias, readout.
      m: None for the exact Dirac true derivative, or the smoothing of
        :func:`true_spike_derivative` (to compare with finite networks / Monte Carlo).
      get: subset of :data:`KERNELS`. ``sg_gram`` costs a 2-D quadrature per (t, t') entry
        (slow for surrogates without closed-form Gaussian moments, e.g. fast_sigmoid).
      chunk: entries per vectorised block (memory).
    Returns:
      :class:`LIFKernel` of float64 ``(n1, n2)`` arrays. Only time steps with
      ``kappa_t != 0`` are evaluated (``"last"``: one entry per pair).
    Tests: ``test_analytic_vs_mc_vs_networks[_grid]``, ``test_surrogate_pair_expectation_vs_dblquad``,
    ``test_analytic_exact_delta_is_large_m_limit``.
    """
    x1, x2, cfg, kap, get, sw, sb, so = _prepare(x1, x2, config, kappa, get, sigma_w,
                                                 sigma_b, sigma_o)
    m = _check_m(m, allow_none=True)
    if config.reset != "none":
        raise ValueError(f"the analytic kernel needs reset='none' (Gaussian membrane); got "
                         f"reset={config.reset!r}: use lif_kernels_mc for the reset network")
    theta = cfg.threshold
    sur = cfg.surrogate
    idx = np.flatnonzero(kap)
    if idx.size == 0:
        z = jnp.zeros((x1.shape[0], x2.shape[0]))
        return LIFKernel(**{k: z for k in get})
    kw = jnp.asarray(kap[idx])
    kvec = impulse_response(x1.shape[1], cfg)
    y1, kc = _filtered(jnp.asarray(x1), kvec)
    y2, _ = _filtered(jnp.asarray(x2), kvec)
    n_in = x1.shape[2]
    y1, y2, kc = y1[:, idx], y2[:, idx], kc[idx]
    c = sw**2 / n_in * jnp.einsum("ptk,qsk->ptqs", y1, y2) + sb**2 * kc[:, None, None] * kc
    a = sw**2 / n_in * jnp.sum(y1**2, -1) + sb**2 * kc**2      # (n1, t)
    b = sw**2 / n_in * jnp.sum(y2**2, -1) + sb**2 * kc**2      # (n2, t')
    res = _analytic_jit(a, b, c, kw, theta, sur, so, m=m, get=get, chunk=int(chunk))
    return LIFKernel(**{k: res[k] for k in get})


_CLOSED_INNER = ("triangular", "rectangular", "exponential", "gaussian", "erf",
                 "straight_through")


def _analytic_impl(a, b, c, kw, theta, sur, so, *, m, get, chunk):
    shape = c.shape
    A = jnp.broadcast_to(a[:, :, None, None], shape).reshape(-1)
    B = jnp.broadcast_to(b[None, None, :, :], shape).reshape(-1)
    R = c.reshape(-1)

    def contract(vals):
        return so**2 * jnp.einsum("ptqs,t,s->pq", vals.reshape(shape), kw, kw)

    p = contract(_entry_map(lambda a_, b_, r_: orthant_probability(a_, b_, r_, theta),
                            (A, B, R), chunk))
    out = {"nngp": p}
    if "sgntk" in get:
        mix = _entry_map(lambda a_, b_, r_: r_ * mixed_expectation(a_, b_, r_, theta, sur, m),
                         (A, B, R), chunk)
        out["sgntk"] = p + contract(mix)
    if "sg_gram" in get:
        small = 256 if sur.shape in _CLOSED_INNER else 2
        pair = _entry_map(
            lambda a_, b_, r_: r_ * surrogate_pair_expectation(a_, b_, r_, theta, sur),
            (A, B, R), max(1, min(chunk, small)))
        out["sg_gram"] = p + contract(pair)
    return out


_analytic_jit = jax.jit(_analytic_impl, static_argnames=("m", "get", "chunk"))


# --------------------------------------------------------------------------------------
# Finite networks.
# --------------------------------------------------------------------------------------
def init_lif_net(key, n_in: int, width: int, *, recurrent: bool = False) -> LIFNetParams:
    """All raw parameters iid ``N(0, 1)`` (NTK parameterisation; scales are applied in
    :func:`lif_net_apply`). ``w_rec`` is None unless ``recurrent``."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return LIFNetParams(jax.random.normal(k1, (n_in, width)), jax.random.normal(k2, (width,)),
                        jax.random.normal(k3, (width, width)) if recurrent else None,
                        jax.random.normal(k4, (width,)))


def _run_from_drive(drive, w_rec, config):
    """Hidden spikes ``(T, N)`` for a drive ``(T, N)`` with :mod:`sgntk.lif`'s step."""
    n = drive.shape[1]
    s0 = _lif.LIFState(jnp.zeros((n,), drive.dtype), jnp.zeros((n,), drive.dtype))
    _, (s, _) = jax.lax.scan(lambda st, d: _lif._step(st, d, w_rec, config), s0, drive)
    return s


def _effective(params, n_in, sw, sb, srec):
    width = params.w_in.shape[1]
    w_in = sw / math.sqrt(n_in) * params.w_in
    bias = sb * params.bias
    w_rec = None if params.w_rec is None else srec / math.sqrt(width) * params.w_rec
    return w_in, bias, w_rec


def lif_net_apply(params: LIFNetParams, x, *, config: _lif.LIFConfig, kappa, sigma_w=1.0,
                  sigma_b=0.0, sigma_rec=1.0, sigma_o=1.0):
    """Scalar output ``y(x)`` of one network for one spike train ``x`` ``(T, n_in)``.

    ``kappa`` is a concrete ``(T,)`` array (:func:`readout_weights`). Autodiff uses
    ``config.surrogate`` for the spike derivative (pass ``config.replace(surrogate=
    true_spike_derivative(m))`` for the true Jacobian). Not validated (see
    :func:`lif_empirical`).
    """
    n_in, width = params.w_in.shape
    w_in, bias, w_rec = _effective(params, n_in, sigma_w, sigma_b, sigma_rec)
    s = _run_from_drive(x @ w_in + bias, w_rec, config)
    return sigma_o / math.sqrt(width) * (kappa @ s) @ params.w_out


def _features(params, x, config, kappa, sw, sb, srec, so, m):
    """Per-example outputs and parameter gradients in structured form (true and surrogate)."""
    n_in, width = params.w_in.shape
    w_in, bias, w_rec = _effective(params, n_in, sw, sb, srec)
    drive = x @ w_in + bias
    scale = so / math.sqrt(width)

    def y_of(d, cfg):
        return scale * (kappa @ _run_from_drive(d, w_rec, cfg)) @ params.w_out

    spikes = _run_from_drive(drive, w_rec, config)
    cfg_true = config.replace(surrogate=true_spike_derivative(m))
    lam_t = jax.grad(y_of)(drive, cfg_true)        # dy/d drive, (T, N)
    lam_s = jax.grad(y_of)(drive, config)
    out = scale * (kappa @ spikes) @ params.w_out
    ro = scale * (kappa @ spikes)                  # dy/dw_out, (N,)

    def grads(lam):
        g = {"w_out": ro, "w_in": sw / math.sqrt(n_in) * x.T @ lam,   # (n_in, N)
             "bias": sb * jnp.sum(lam, 0)}
        if w_rec is not None:
            g["w_rec"] = srec / math.sqrt(width) * spikes.T @ lam     # (N, N)
        return g

    return out, grads(lam_t), grads(lam_s)


def _gram(g1, g2):
    return sum(jnp.einsum("p...,q...->pq", g1[k], g2[k]) for k in g1)


def _empirical_impl(params, x1, x2, config, kappa, sw, sb, srec, so, m, get):
    f = jax.vmap(lambda x: _features(params, x, config, kappa, sw, sb, srec, so, m))
    y1, gt1, gs1 = f(x1)
    y2, _, gs2 = f(x2)
    out = {}
    if "nngp" in get:
        out["nngp"] = y1[:, None] * y2[None, :]
    if "sgntk" in get:
        out["sgntk"] = _gram(gt1, gs2)
    if "sg_gram" in get:
        out["sg_gram"] = _gram(gs1, gs2)
    return LIFKernel(**out)


_empirical_jit = jax.jit(_empirical_impl, static_argnames=("get",))


@float64
def lif_empirical(params: LIFNetParams, x1, x2=None, *, config: _lif.LIFConfig, kappa=None,
                  sigma_w=1.0, sigma_b=0.0, sigma_rec=1.0, sigma_o=1.0, m=DEFAULT_M,
                  get: Sequence[str] = KERNELS) -> LIFKernel:
    """Empirical kernels of one finite LIF network (all parameters trained).

    Structured route: one backward pass per example gives ``Lambda = dy/d drive`` ``(T, N)``
    (through the reset and the recurrence, with the smoothed true derivative
    ``Theta_m'`` or the surrogate), and every parameter gradient is a contraction of it:
    ``dy/dW = sigma_w/sqrt(n_in) x^T Lambda``, ``dy/db = sigma_b sum_t Lambda_t``,
    ``dy/dV = sigma_rec/sqrt(N) S^T Lambda`` (the recurrent input ``S[n] V`` enters where
    ``d[n]`` does), ``dy/dw = sigma_o/sqrt(N) S^T kappa``. Kernels are the sums of the
    per-parameter Gram matrices. Checked against the generic
    :func:`sgntk.empirical.empirical_kernel` on :func:`sgntk.lif.lif_layer`
    (``test_empirical_structured_vs_generic``).

    Args:
      params: :class:`LIFNetParams` (:func:`init_lif_net`). x1, x2: spike trains as in
        :func:`lif_kernels`. config: :class:`sgntk.lif.LIFConfig` (any reset, detached or
        not). kappa: as in :func:`lif_kernels`. sigma_*: NTK scales (``sigma_rec`` only
        used if ``params.w_rec`` is not None). m: sharpness of the true derivative.
    Returns:
      :class:`LIFKernel`; ``nngp`` is the sample ``y(x1) y(x2)^T``.
    """
    x1, x2, cfg, kap, get, sw, sb, so = _prepare(x1, x2, config, kappa, get, sigma_w,
                                                 sigma_b, sigma_o)
    srec = _positive("sigma_rec", sigma_rec, allow_zero=True)
    m = _check_m(m, allow_none=False)
    if params.w_in.shape[0] != x1.shape[2]:
        raise ValueError(f"params.w_in has {params.w_in.shape[0]} inputs but the spike trains "
                         f"have n_in = {x1.shape[2]}")
    p64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), params)
    return _empirical_jit(p64, jnp.asarray(x1), jnp.asarray(x2), cfg, jnp.asarray(kap), sw, sb, srec, so,
              m, get=get)


@float64
def lif_kernels_networks(x1, x2=None, *, config: _lif.LIFConfig, width: int, n_networks: int,
                         kappa=None, recurrent: bool = False, sigma_w=1.0, sigma_b=0.0,
                         sigma_rec=1.0, sigma_o=1.0, m=DEFAULT_M, seed: int = 0,
                         batch_size: int = 4, get: Sequence[str] = KERNELS,
                         progress: bool | None = None) -> _mc.MCEstimate:
    """Monte-Carlo average of :func:`lif_empirical` over ``n_networks`` networks of ``width``.

    The estimator of the infinite-width kernels for recurrent networks (bias O(1/width));
    for feed-forward networks its mean equals the mean-field kernel at every width (neurons
    are iid and ``E[w_i w_j] = delta_ij``), so it cross-checks :func:`lif_kernels_mc`.
    Returns :class:`sgntk.monte_carlo.MCEstimate` of :class:`LIFKernel` s.
    """
    x1, x2, cfg, kap, get, sw, sb, so = _prepare(x1, x2, config, kappa, get, sigma_w,
                                                 sigma_b, sigma_o)
    srec = _positive("sigma_rec", sigma_rec, allow_zero=True)
    m = _check_m(m, allow_none=False)
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be an integer >= 1; got {width!r}")
    n_in = x1.shape[2]
    x1j, x2j, kj = jnp.asarray(x1), jnp.asarray(x2), jnp.asarray(kap)

    def sample(key):
        params = init_lif_net(key, n_in, width, recurrent=recurrent)
        return _empirical_impl(params, x1j, x2j, cfg, kj, sw, sb, srec, so, m, get)

    return _mc.estimate(sample, jax.random.PRNGKey(seed), n_networks, batch_size=batch_size,
                        progress=progress)


# --------------------------------------------------------------------------------------
# Mean-field Monte Carlo (feed-forward, any reset).
# --------------------------------------------------------------------------------------
def _drive_factor(x, sw, sb):
    """``F`` ``(P, T, r)`` with ``F F^T = G`` (drive covariance over inputs and times)."""
    P, T, n_in = x.shape
    f = np.concatenate([sw / math.sqrt(n_in) * x, np.full((P, T, 1), sb)], axis=2)
    if sb == 0:
        f = f[..., :-1]
    if f.shape[2] > P * T:   # compress: same covariance, fewer Gaussian variables
        u, s, _ = np.linalg.svd(f.reshape(P * T, -1), full_matrices=False)
        f = (u * s).reshape(P, T, -1)
    return f


def _mf_block(key, factor, kappa, config, m, block, n1):
    """Mean over ``block`` sampled neurons of the per-neuron kernel contributions."""
    P, T, r = factor.shape
    z = jax.random.normal(key, (block, r), factor.dtype)
    drive = jnp.einsum("ptr,br->tbp", factor, z).reshape(T, block * P)   # neurons x inputs
    cfg_true = config.replace(surrogate=true_spike_derivative(m))

    def out(d, cfg):
        return jnp.sum(kappa @ _run_from_drive(d, None, cfg))

    spikes = _run_from_drive(drive, None, config)
    o = (kappa @ spikes).reshape(block, P)
    lt = jax.grad(out)(drive, cfg_true).reshape(T, block, P)
    ls = jax.grad(out)(drive, config).reshape(T, block, P)
    at = jnp.einsum("tbp,ptr->bpr", lt, factor)
    as_ = jnp.einsum("tbp,ptr->bpr", ls, factor)
    ro = jnp.einsum("bp,bq->pq", o[:, :n1], o[:, n1:]) / block
    return LIFKernel(ro,
                     ro + jnp.einsum("bpr,bqr->pq", at[:, :n1], as_[:, n1:]) / block,
                     ro + jnp.einsum("bpr,bqr->pq", as_[:, :n1], as_[:, n1:]) / block)


@float64
def lif_kernels_mc(x1, x2=None, *, config: _lif.LIFConfig, kappa=None, sigma_w=1.0,
                   sigma_b=0.0, sigma_o=1.0, m=DEFAULT_M, n_neurons: int = 100_000,
                   block: int = 256, batch_size: int = 16, seed: int = 0,
                   recurrent: bool = False, width: int = 1000, sigma_rec=1.0,
                   progress: bool | None = None) -> _mc.MCEstimate:
    """Mean-field Monte-Carlo estimate of the infinite-width kernels, any reset.

    Feed-forward (default): ``n_neurons`` single-neuron drive trajectories are sampled from
    the Gaussian process jointly over all inputs of ``x1`` and ``x2`` and all times
    (``d = F z``), the neuron is run with the reset of ``config`` (detached or
    differentiable), and the kernels are the averages of ``(kappa . S(x))(kappa . S(x'))``
    plus the input-weight part ``(F_x^T lambda(x)) . (F_x'^T lambda~(x'))`` (module
    docstring), scaled by ``sigma_o^2``. Samples are means over ``block`` neurons
    (``n_neurons // block`` samples, ``batch_size`` blocks per vectorised call); the
    standard error is over block means. Without reset its mean is exactly
    :func:`lif_kernels` with the same ``m``.

    ``recurrent=True``: the mean-field reduction to one neuron does not hold; the estimate
    is :func:`lif_kernels_networks` with ``n_networks = max(2, n_neurons // width)``
    networks of ``width`` (finite-width bias O(1/width)).

    Returns:
      :class:`sgntk.monte_carlo.MCEstimate` with ``mean`` and ``stderr`` :class:`LIFKernel` s.
    Tests: ``test_analytic_vs_mc_vs_networks``, ``test_reset_and_recurrence_change_kernel``.
    """
    if recurrent:
        return lif_kernels_networks(
            x1, x2, config=config, width=width, n_networks=max(2, n_neurons // width),
            kappa=kappa, recurrent=True, sigma_w=sigma_w, sigma_b=sigma_b,
            sigma_rec=sigma_rec, sigma_o=sigma_o, m=m, seed=seed, batch_size=1,
            progress=progress)
    x1, x2, cfg, kap, _, sw, sb, so = _prepare(x1, x2, config, kappa, KERNELS, sigma_w,
                                               sigma_b, sigma_o)
    m = _check_m(m, allow_none=False)
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be an integer >= 1; got {block!r}")
    n_samples = n_neurons // block
    if n_samples < 2:
        raise ValueError(f"n_neurons // block must be >= 2; got {n_neurons} // {block}")
    n1 = x1.shape[0]
    factor = jnp.asarray(_drive_factor(np.concatenate([x1, x2]), sw, sb))
    kj = jnp.asarray(kap)

    def sample(key):
        k = _mf_block(key, factor, kj, cfg, m, block, n1)
        return jax.tree_util.tree_map(lambda v: so**2 * v, k)

    return _mc.estimate(sample, jax.random.PRNGKey(seed), n_samples, batch_size=batch_size,
                        progress=progress)
