"""Layer expectations vs brute-force scipy quadrature of their definitions (1e-8)."""
import numpy as np
import pytest
import scipy.integrate as si
from scipy.stats import multivariate_normal

from sgntk import expectations as E
from sgntk import surrogates as S
from test_surrogates import published

PAIRS = [(1.0, 1.0, 0.3), (0.5, 2.0, -0.6), (2.5, 0.4, 0.9), (1.2, 0.7, 0.0)]  # (a, b, r)


def density(a, b, r):
    """Bivariate normal density of cov [[a, r], [r, b]], written out: scipy's
    multivariate_normal(...).pdf costs ~50 us a call, too slow inside dblquad; the two are
    compared in test_density_matches_scipy."""
    det = a * b - r * r
    norm = 1.0 / (2.0 * np.pi * np.sqrt(det))

    def pdf(uv):
        u, v = uv
        return norm * np.exp(-(b * u * u - 2.0 * r * u * v + a * v * v) / (2.0 * det))

    return pdf


def test_density_matches_scipy():
    rng = np.random.default_rng(0)
    for a, b, r in PAIRS:
        ref = multivariate_normal(mean=[0, 0], cov=[[a, r], [r, b]])
        for uv in rng.normal(size=(5, 2)) * 2:
            assert density(a, b, r)(uv) == pytest.approx(ref.pdf(uv), rel=1e-13)


pytestmark = pytest.mark.usefixtures("x64")


def np_surrogate(shape, beta, gamma=1.0):
    """psi' from a library's published formula (test_surrogates.published; independent of
    sgntk.surrogates, and plain numpy, so fast in scipy's quadrature loops)."""
    return published(shape, sharpness=beta, dampening=gamma)


@pytest.mark.parametrize("shape", ["erf", "fast_sigmoid", "triangular", "sigmoid", "cauchy",
                                   "exponential", "rectangular"])
@pytest.mark.parametrize("activation", ["sign", "step"])
def test_jump_mixed_expectation_is_density_at_zero_times_surrogate(activation, shape):
    # E[c delta(u) psi'(v)] = c int p(u=0, v) psi'(v) dv, integrated directly.
    sur, psi = S.get(shape, sharpness=1.7, dampening=0.8), np_surrogate(shape, 1.7, 0.8)
    c = E.JUMPS[activation]
    for a, b, r in PAIRS:
        p = density(a, b, r)
        pts = [0.0, 1 / 1.7, -1 / 1.7, 0.5 / 1.7, -0.5 / 1.7]
        ref = c * sum(si.quad(lambda v: p([0.0, v]) * psi(v), lo, hi,
                              points=[q for q in pts if lo < q < hi], epsabs=0, epsrel=1e-12,
                              limit=200)[0]
                      for lo, hi in [(-40, 0), (0, 40)])
        got = float(E.mixed_derivative_expectation(activation, a, b, r, sur))
        assert abs(got - ref) <= 1e-8 * abs(ref), (a, b, r, got, ref)


@pytest.mark.parametrize("shape", ["fast_sigmoid", "gaussian", "triangular"])
def test_erf_mixed_expectation_by_2d_quadrature(shape):
    m, beta = 2.5, 1.3
    sur, psi = S.get(shape, sharpness=beta), np_surrogate(shape, beta)
    for a, b, r in PAIRS:
        p = density(a, b, r)
        f = lambda v, u: 2 * m / np.sqrt(np.pi) * np.exp(-(m * u) ** 2) * psi(v) * p([u, v])
        ref = sum(si.dblquad(f, -3, 3, lo, hi, epsabs=1e-14, epsrel=1e-11)[0]
                  for lo, hi in [(-12, -1 / beta), (-1 / beta, 0), (0, 1 / beta), (1 / beta, 12)])
        got = float(E.mixed_derivative_expectation("erf", a, b, r, sur, m))
        assert abs(got - ref) <= 1e-8 * abs(ref), (a, b, r, got, ref)


# fast_sigmoid / triangular: slowly decaying or kinked integrands make dblquad take 15-45 s
# (2 shared cores); erf and gaussian stay in the default run.
@pytest.mark.parametrize("shape", ["erf", "gaussian",
                                   pytest.param("fast_sigmoid", marks=pytest.mark.slow),
                                   pytest.param("triangular", marks=pytest.mark.slow)])
def test_surrogate_pair_expectation_by_2d_quadrature(shape):
    beta = 1.1
    sur, psi = S.get(shape, sharpness=beta), np_surrogate(shape, beta)
    lim = 1 / beta if shape == "triangular" else 12.0   # triangular: compact support
    cuts = [-lim, -1 / beta, 0.0, 1 / beta, lim] if lim > 1 / beta else [-lim, 0.0, lim]
    for a, b, r in PAIRS[:3]:
        p = density(a, b, r)
        f = lambda v, u: psi(u) * psi(v) * p([u, v])
        ref = sum(si.dblquad(f, u0, u1, v0, v1, epsabs=1e-14, epsrel=1e-11)[0]
                  for u0, u1 in zip(cuts[:-1], cuts[1:]) for v0, v1 in zip(cuts[:-1], cuts[1:]))
        got = float(E.surrogate_expectation(a, b, r, sur))
        assert abs(got - ref) <= 1e-8 * abs(ref), (a, b, r, got, ref)


@pytest.mark.parametrize("activation", ["sign", "step"])
def test_jump_nngp_by_2d_quadrature(activation):
    phi = np.sign if activation == "sign" else (lambda z: float(z > 0))
    for a, b, r in PAIRS:
        p = density(a, b, r)
        # integrate quadrant by quadrant (phi is constant on each).
        ref = sum(phi(su) * phi(sv) * si.dblquad(lambda v, u: p([u, v]), *(sorted([0, su * 12])),
                                                 *(sorted([0, sv * 12])), epsabs=1e-13)[0]
                  for su in (-1, 1) for sv in (-1, 1))
        got = float(E.nngp_expectation(activation, a, b, r))
        assert abs(got - ref) <= 1e-8, (a, b, r, got, ref)
