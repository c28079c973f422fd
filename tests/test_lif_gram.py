"""The LIF surrogate Gram's pair expectation ``E[psi'(u - theta) psi'(v - theta)]`` for the
compactly supported shapes (triangular, rectangular: closed form over rectangles,
``sgntk.lif_kernels._gram.compact_pair_closed``) and straight-through (GitHub issue 9).

References are independent of the library: a 1-D ``scipy.integrate.quad`` of ``psi'(u - theta)
N(u; 0, a) E[psi'(v - theta) | u]`` over the support, split at every kink of both factors
(the inner moment from ``scipy.stats.norm``), itself checked against ``scipy.integrate.dblquad``.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from sgntk import lif_kernels as LK
from sgntk import surrogates as sg
from sgntk.lif_kernels import _gram, analytic

COMPACT = ("triangular", "rectangular")
# Compilation dominates these tests (10-27 s per shape for the closed form's and the nested
# quadrature's programs): the default run keeps the rectangular check against scipy, the
# degenerate cases and the reference's own check; the rest runs with -m slow.
SLOW = [pytest.param(s, marks=pytest.mark.slow) for s in COMPACT]


def _ramp(d, s):
    """E[(W)_+], W ~ N(d, s^2)."""
    if s == 0:
        return max(d, 0.0)
    z = d / s
    return d * stats.norm.cdf(z) + s * stats.norm.pdf(z)


def _half(shape, beta):
    return 1.0 / beta if shape == "triangular" else 0.5 / beta


def _profile(shape, beta, w):
    h = _half(shape, beta)
    return max(1.0 - beta * abs(w), 0.0) if shape == "triangular" else float(abs(w) < h)


def _reference(shape, a, b, r, th, beta, damp):
    """1-D quadrature in u of psi'(u - th) N(u; 0, a) E[psi'(v - th) | u], split at the
    profile's kinks and at the inner moment's (smoothed) kinks u = (th + o) / kappa."""
    kap = r / a
    s = np.sqrt(max(b - r * r / a, 0.0))
    h = _half(shape, beta)

    def inner(u):                 # E[g(beta (v - th)) | u], v | u ~ N(kap u, s^2)
        m = kap * u - th
        if shape == "rectangular":
            if s == 0:
                return float(abs(m) < h)
            return stats.norm.cdf((h - m) / s) - stats.norm.cdf((-h - m) / s)
        return beta * (_ramp(m + h, s) - 2 * _ramp(m, s) + _ramp(m - h, s))

    def f(u):
        return (_profile(shape, beta, u - th) * inner(u) * np.exp(-0.5 * u * u / a)
                / np.sqrt(2 * np.pi * a))

    kinks = [(th + o) / kap for o in (-h, 0.0, h)] if kap != 0 else []
    pts = [th] + kinks + [k + j * s / abs(kap) for k in kinks for j in (-3, -1, 1, 3)
                          if s > 0]
    lo, hi = th - h, th + h
    edges = [lo] + sorted(p for p in pts if lo < p < hi) + [hi]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return damp**2 * sum(integrate.quad(f, e0, e1, epsabs=0, epsrel=1e-12, limit=200)[0]
                             for e0, e1 in zip(edges[:-1], edges[1:]))


def _cases(n, seed):
    """Random (beta, a, b, rho, theta): normalised variances ~0.01 .. 1e3, correlations
    uniform, within 1e-8 .. 1e-1 of 1, and exactly 1 (half of those with a = b)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        beta = float(np.exp(rng.uniform(np.log(0.5), np.log(10.0))))
        a, b = np.exp(rng.uniform(-3.0, 2.5, 2))
        rho = [rng.uniform(-1, 1), 1 - 10 ** rng.uniform(-8, -1), 1.0][k % 3]
        if rho == 1.0 and k % 2:
            b = a
        out.append((beta, float(a), float(b), float(rho), float(rng.uniform(-0.5, 1.5))))
    return out


def _check_against_reference(shape, cases):
    worst_rel, worst_abs = 0.0, 0.0
    for beta, a, b, rho, th in cases:
        sur = sg.get(shape, sharpness=beta, dampening=0.8)
        r = rho * np.sqrt(a * b)
        with jax.enable_x64(True):
            got = float(LK.surrogate_pair_expectation(a, b, r, th, sur))
        ref = _reference(shape, a, b, r, th, beta, 0.8)
        err = abs(got - ref) / 0.64                                    # of gamma^2
        worst_abs = max(worst_abs, err)
        if ref > 1e-6 * 0.64:
            worst_rel = max(worst_rel, abs(got - ref) / ref)
    # measured (80 + 90 cases per shape): 1.6e-11 of gamma^2 absolute (correlation 1 - 2e-7),
    # 3e-10 relative
    assert worst_abs < 5e-11, (shape, worst_abs)
    assert worst_rel < 1e-9, (shape, worst_rel)


@pytest.mark.parametrize("shape", [SLOW[0], "rectangular"])
def test_compact_closed_form_vs_scipy(shape):
    """The closed form == the independent 1-D quadrature: 1e-9 relative (entries above 1e-6
    of gamma^2; the cell probabilities are differences of orthant probabilities, so far
    smaller entries are accurate to ~1e-12 gamma^2 absolute only), 5e-11 gamma^2 absolute,
    over random variances, thresholds, sharpness and correlations up to exactly 1."""
    _check_against_reference(shape, _cases(12, seed=1))


@pytest.mark.slow
@pytest.mark.parametrize("shape", COMPACT)
def test_compact_closed_form_vs_scipy_sweep(shape):
    _check_against_reference(shape, _cases(90, seed=2))


@pytest.mark.parametrize("shape", SLOW)   # checks the test's own reference: -m slow (13 s)
def test_reference_vs_dblquad(shape):
    """The 1-D reference above == ``scipy.integrate.dblquad`` over the square support."""
    beta, damp = 2.5, 0.8
    psi = lambda w: damp * _profile(shape, beta, w)       # noqa: E731
    for a, b, rho, th in ((0.5, 0.8, 0.4, 0.5), (0.3, 0.6, -0.3, 0.2)):
        r = rho * np.sqrt(a * b)
        cov = np.array([[a, r], [r, b]])
        ic, det = np.linalg.inv(cov), np.linalg.det(cov)

        def f(v, u):
            z = np.array([u, v])
            return psi(u - th) * psi(v - th) * np.exp(-0.5 * z @ ic @ z) / (
                2 * np.pi * np.sqrt(det))

        h = _half(shape, beta)
        cuts = [th - h, th, th + h] if shape == "triangular" else [th - h, th + h]
        ref = sum(integrate.dblquad(f, u0, u1, v0, v1, epsabs=1e-13, epsrel=1e-11)[0]
                  for u0, u1 in zip(cuts[:-1], cuts[1:]) for v0, v1 in zip(cuts[:-1], cuts[1:]))
        one_d = _reference(shape, a, b, r, th, beta, damp)
        assert one_d == pytest.approx(ref, rel=1e-9)
        with jax.enable_x64(True):
            got = float(LK.surrogate_pair_expectation(a, b, r, th, sg.get(
                shape, sharpness=beta, dampening=damp)))
        assert got == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("shape", COMPACT)
def test_compact_degenerate_cases(shape):
    """On the diagonal (u = v) the entry is E[psi'(u - theta)^2] (closed form of
    ``gaussian_moment(power=2)``); with u or v identically 0 it is psi'(-theta) times the
    other side's moment."""
    sur = sg.get(shape, sharpness=3.0, dampening=0.7)
    with jax.enable_x64(True):
        for a, th in ((0.5, 0.6), (0.01, 0.3), (40.0, 1.0)):
            got = float(LK.surrogate_pair_expectation(a, a, a, th, sur))
            ref = float(sg.gaussian_moment(sur, -th, a, power=2))
            assert got == pytest.approx(ref, rel=1e-10), (a, th)
        one = float(sur.derivative(-0.1)) * float(sg.gaussian_moment(sur, -0.1, 0.4))
        assert float(LK.surrogate_pair_expectation(0.0, 0.4, 0.0, 0.1, sur)) == pytest.approx(
            one, rel=1e-12)
        assert float(LK.surrogate_pair_expectation(0.4, 0.0, 0.0, 0.1, sur)) == pytest.approx(
            one, rel=1e-12)


@pytest.mark.parametrize("shape", SLOW)
def test_compact_agrees_with_nested_below_high_correlation(shape):
    """The closed form == the nested quadrature it replaces (the reference route of the
    kernel) for |rho| <= 0.99, to 1e-8 relative above 1e-6 of gamma^2 and 1e-11 gamma^2
    absolute. (Closer to 1 with unequal variances the nested rule misses the inner moment's
    near-kink: at rho = 0.99999 it is off by up to 2e-2, where the closed form matches the
    1-D reference to 1e-15; see ``test_compact_closed_form_vs_scipy``.)"""
    rng = np.random.default_rng(5)
    n = 40
    a, b = np.exp(rng.uniform(-3, 2.5, n)), np.exp(rng.uniform(-3, 2.5, n))
    r = rng.uniform(-0.99, 0.99, n) * np.sqrt(a * b)
    sur = sg.get(shape, sharpness=3.0, dampening=0.8)
    for th in (0.0, 0.5, 1.3):
        with jax.enable_x64(True):
            got = np.asarray(jax.jit(lambda *v: LK.surrogate_pair_expectation(*v, th, sur))(
                a, b, r))
            ref = np.asarray(jax.jit(lambda *v: analytic._nested_pair_expectation(
                *v, th, sur))(a, b, r))
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11 * 0.64)
        big = ref > 1e-6 * 0.64
        np.testing.assert_allclose(got[big], ref[big], rtol=1e-8)


@pytest.mark.parametrize("shape", SLOW)
def test_compact_batched_equals_flat(shape):
    """The custom ``vmap`` rule (the kernel maps the pair expectation over scalars, also
    nested in a ``vmap`` over input pairs) gives the flat call's values (to rounding: the
    compiled loops differ, measured 2e-13 relative)."""
    rng = np.random.default_rng(7)
    a, b = np.exp(rng.uniform(-2, 2, (3, 8))), np.exp(rng.uniform(-2, 2, (3, 8)))
    r = rng.uniform(-1, 1, (3, 8)) * np.sqrt(a * b)
    sur = sg.get(shape, sharpness=2.0)
    f = lambda a_, b_, r_: LK.surrogate_pair_expectation(a_, b_, r_, 0.4, sur)   # noqa: E731
    with jax.enable_x64(True):
        flat = np.asarray(f(a, b, r))
        nested = np.asarray(jax.vmap(jax.vmap(f))(a, b, r))
        mapped = np.asarray(jax.lax.map(lambda z: f(*z), (a.ravel(), b.ravel(), r.ravel()),
                                        batch_size=5)).reshape(a.shape)
    np.testing.assert_allclose(nested, flat, rtol=1e-12, atol=0)
    np.testing.assert_allclose(mapped, flat, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", SLOW)
def test_compact_gradient_finite_and_matches_differences(shape):
    """Derivatives (custom JVP: the nested quadrature's) in a, b, r, theta, dampening and
    sharpness: finite on the diagonal, and == central differences of the closed form off it."""
    names = ("a", "b", "r", "theta", "dampening", "sharpness")

    def entry(p):
        sur = sg.Surrogate(shape, p["dampening"], p["sharpness"], 2.0)
        return LK.surrogate_pair_expectation(p["a"], p["b"], p["r"], p["theta"], sur)

    with jax.enable_x64(True):
        diag = dict(zip(names, map(jnp.float64, (0.6, 0.6, 0.6, 0.5, 0.8, 2.0))))
        g = jax.grad(entry)(diag)
        assert all(np.isfinite(float(g[k])) for k in names)
        p0 = dict(zip(names, map(jnp.float64, (0.6, 0.9, 0.45, 0.5, 0.8, 2.0))))
        g = jax.grad(entry)(p0)
        for k in names:
            h = 1e-5 * float(p0[k])
            fd = (float(entry({**p0, k: p0[k] + h})) - float(entry({**p0, k: p0[k] - h}))) / (2 * h)
            assert float(g[k]) == pytest.approx(fd, rel=1e-6, abs=1e-9), k


def test_straight_through_is_dampening_squared():
    """psi' = dampening for straight-through: the pair expectation is dampening^2, whatever
    the Gaussian (and its derivative in the dampening is 2 dampening)."""
    with jax.enable_x64(True):
        sur = sg.get("straight_through", dampening=0.7)
        got = np.asarray(LK.surrogate_pair_expectation(
            jnp.array([0.0, 0.3, 2.0]), jnp.array([0.5, 0.3, 1.0]), jnp.array([0.0, 0.3, -1.2]),
            0.5, sur))
        np.testing.assert_allclose(got, 0.7**2, rtol=1e-15)
        d = jax.grad(lambda g: LK.surrogate_pair_expectation(
            0.4, 0.5, 0.2, 0.5, sg.Surrogate("straight_through", g, 1.0, 2.0)))(0.7)
        assert float(d) == pytest.approx(1.4, rel=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("shape", COMPACT)
def test_compact_accuracy_vs_normalised_variance(shape):
    """Large normalised variances A = beta^2 a (the closed form's cancellation grows ~A B for
    triangular, hence its Gauss-Legendre cells there; docstring of ``compact_pair_closed``):
    1e-9 relative for A = 1e2 .. 1e5 off the ridge, and 1e-8 on it (1 - rho from 1e-4 to 0,
    measured 4e-8 at A = 1e5: tested up to 1e4), entries above 1e-6 gamma^2."""
    beta = 2.0
    sur = sg.get(shape, sharpness=beta, dampening=1.0)

    def worst(big_as, rhos, ratios):
        out = 0.0
        for big_a in big_as:
            for rho in rhos:
                for ratio in ratios:
                    for th in (0.0, 0.5, 2.0):
                        a = big_a / beta**2
                        b, r = ratio * a, rho * np.sqrt(ratio) * a
                        with jax.enable_x64(True):
                            got = float(LK.surrogate_pair_expectation(a, b, r, th, sur))
                        ref = _reference(shape, a, b, r, th, beta, 1.0)
                        if ref > 1e-6:
                            out = max(out, abs(got - ref) / ref)
        return out

    off = worst((1e2, 1e3, 1e4, 1e5), (-0.5, 0.3, 0.9, 0.999), (1.7,))
    assert off < 1e-9, off
    ridge = worst((1e3, 1e4), (1 - 1e-4, 1 - 1e-6, 1 - 1e-8, 1.0), (1.0, 1.3))
    assert ridge < 1e-8, ridge
