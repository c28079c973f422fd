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


# --------------------------------------------------------------------------------------
# Derivatives (custom JVP of compact_pair_closed: analytic, _gram._compact_pair_partials).
# --------------------------------------------------------------------------------------
_COORDS = ("a", "b", "rho", "theta", "dampening", "sharpness")


def _entry(shape):
    """The entry as a function of (a, b, rho, theta, dampening, sharpness) (..., 6): the
    correlation as a coordinate, so that steps near rho = +-1 stay inside the PSD cone."""
    def f(p):
        a, b, rho, th, g, beta = (p[..., k] for k in range(6))
        return _gram.compact_pair_closed(sg.Surrogate(shape, g, beta, 2.0), a, b,
                                         rho * jnp.sqrt(a * b), th)
    return f


def _tangents_and_differences(shape, params, steps):
    """The custom JVP's derivative along each coordinate and the 4th-order central
    difference ``(8 (f(h) - f(-h)) - (f(2h) - f(-2h))) / (12 h)`` of the closed form, (n, 6),
    with the entries (n,) -- one compiled, vectorised call each (the entry is elementwise)."""
    f = _entry(shape)
    eye = np.eye(6)

    @jax.jit
    def run(p, h):
        jvp = jax.vmap(lambda e: jax.jvp(f, (p,), (jnp.broadcast_to(e, p.shape),))[1])(eye)
        shifts = jnp.asarray([-2.0, -1.0, 1.0, 2.0])
        pts = p[None, None] + shifts[:, None, None, None] * (h[None] * eye[:, None])[None]
        v = f(pts)                                        # (4 shifts, 6 coords, n)
        fd = (8.0 * (v[2] - v[1]) - (v[3] - v[0])) / (12.0 * h.T)
        return jvp.T, fd.T, f(p)

    # Chunks of 20 cases (480 entries per call): at ~2000 entries and more per call with
    # per-entry thresholds and sharpness, the compiled closed form returned wrong values for
    # some entries on XLA's CPU backend (JAX 0.10.2; op by op and in chunks it is right).
    n, chunk = len(params), 20
    pad = (-n) % chunk
    params = np.concatenate([params, np.repeat(params[:1], pad, 0)])
    steps = np.concatenate([steps, np.repeat(steps[:1], pad, 0)])
    with jax.enable_x64(True):
        outs = [run(jnp.asarray(params[i:i + chunk]), jnp.asarray(steps[i:i + chunk]))
                for i in range(0, n + pad, chunk)]
    return tuple(np.concatenate([np.asarray(o[k]) for o in outs])[:n] for k in range(3))


def _sweep(n, seed):
    """Random (a, b, rho, theta, gamma, beta) as in :func:`_cases` (normalised variances
    ~0.01 .. 1e3, thresholds -0.5 .. 1.5 incl. 0) with correlations uniform in (-1, 1), within
    1e-8 .. 1e-1 of +-1, and exactly +-1 (half of those with a = b); steps 1e-3 of each
    coordinate's scale (variances, sharpness: the value; rho: its distance to +-1; theta: the
    narrowest of sqrt(a), sqrt(b), 1 / beta); exact correlation +-1 is not stepped in rho."""
    rng = np.random.default_rng(seed)
    params, steps = [], []
    for k in range(n):
        beta = float(np.exp(rng.uniform(np.log(0.5), np.log(10.0))))
        a, b = np.exp(rng.uniform(np.log(0.01), np.log(1e3), 2)) / beta**2
        sign = 1.0 if k % 2 else -1.0
        rho = [rng.uniform(-1, 1), sign * (1 - 10 ** rng.uniform(-8, -1)), sign][k % 3]
        if abs(rho) == 1.0 and k % 4 == 1:
            b = a
        th = [0.0, rng.uniform(-0.5, 1.5)][k % 5 > 0]
        params.append((a, b, rho, th, 0.8, beta))
        steps.append(1e-3 * np.array([a, b, 1.0 - abs(rho) if abs(rho) < 1 else 1.0,
                                      min(np.sqrt(a), np.sqrt(b), 1.0 / beta), 0.8, beta]))
    return np.array(params), np.array(steps)


# The closed form's rounding noise between neighbouring arguments (absolute, of gamma^2):
# 1e-14, and for triangular ~eps A B more (its cells' orthant probabilities are weighted by
# ~beta^2 sqrt(a b) twice over: compact_pair_closed's docstring), A = beta^2 a. The
# differences' error is ~noise * 18 / (12 h); their truncation error ~h^4 f^(5) / 30, h 1e-3
# of the scale: ~1e-12 relative, so 1e-8 relative leaves room for f^(5) / f ~ 1e4.
_NOISE = 1e-14


def _noise(shape, params):
    a, b, beta = params[:, 0], params[:, 1], params[:, 5]
    extra = 2e-16 * beta**4 * a * b if shape == "triangular" else 0.0
    return (_NOISE + extra) * params[:, 4] ** 2


def _check_tangents(shape, params, steps):
    jvp, fd, val = _tangents_and_differences(shape, params, steps)
    assert np.all(np.isfinite(jvp)), shape
    skip = np.zeros_like(jvp, dtype=bool)
    edge = np.abs(params[:, 2]) == 1.0
    skip[:, 2] = edge                                       # exact +-1: rho is not stepped
    if shape == "rectangular":
        # at rho = +-1 and a = b the rectangular entry P(both in the support) is the measure
        # of an intersection of intervals, kinked in a (or b) alone; smooth along a = b
        # (test_compact_tangent_on_degenerate_boundaries)
        skip[:, :2] |= (edge & (params[:, 0] == params[:, 1]))[:, None]
    tol = 1e-8 * np.abs(fd) + 2.0 * _noise(shape, params)[:, None] / steps
    bad = (np.abs(jvp - fd) > tol) & ~skip
    assert not bad.any(), [(tuple(params[i]), _COORDS[j], jvp[i, j], fd[i, j])
                           for i, j in zip(*np.nonzero(bad))][:5]
    return jvp, fd


@pytest.mark.parametrize("shape", [SLOW[0], "rectangular"])
def test_compact_tangent_equals_finite_differences(shape):
    """The analytic derivatives in a, b, r (through rho), theta, dampening and sharpness ==
    4th-order central differences of the closed form (tolerance: 1e-8 relative for the
    truncation, plus the closed form's rounding noise 1e-14 gamma^2 over the step), over
    random variances, thresholds (0, negative), sharpness and correlations near and at +-1."""
    _check_tangents(shape, *_sweep(24, seed=11))


@pytest.mark.slow
@pytest.mark.parametrize("shape", COMPACT)
def test_compact_tangent_equals_finite_differences_sweep(shape):
    """As above over more cases, and at large normalised variances A = beta^2 a up to 1e5
    (the Gauss-Legendre cells of the value, and of the derivatives, for triangular)."""
    _check_tangents(shape, *_sweep(150, seed=12))
    rows = []
    for big_a in (50.0, 1e3, 1e4, 1e5):
        # on the ridge up to A = 1e4 (as test_compact_accuracy_vs_normalised_variance; at
        # 1e5 the triangular d/drho differed from the differences by 7e-4 relative there)
        for rho in (-0.5, 0.3, 0.9, 0.99) + ((1 - 1e-6,) if big_a < 1e5 else ()):
            for th in (0.0, 0.5, 2.0):
                a = big_a / 4.0
                rows.append((a, 1.7 * a, rho, th, 1.0, 2.0))
    params = np.array(rows)
    steps = 1e-3 * np.column_stack([params[:, 0], params[:, 1], 1 - np.abs(params[:, 2]),
                                    np.full(len(rows), 0.5), np.ones(len(rows)),
                                    np.full(len(rows), 2.0)])
    # The differences' rounding: the closed form's noise, 1e-12 (triangular) or 1e-10
    # (rectangular) relative plus 1e-14 gamma^2 (measured needs: 1e-13, 6e-11 at A = 1e4,
    # 1.2e-14 absolute), and on the ridge (1 - rho = 1e-6, A (1 - rho^2) < 1: triangular
    # without its Gauss-Legendre cells) the value's documented accuracy there, 4e-8 relative
    # at A = 1e5. Entries below
    # 1e-6 gamma^2 are accurate to ~1e-12 gamma^2 absolute only (compact_pair_closed) and
    # are left out.
    jvp, fd, val = _tangents_and_differences(shape, params, steps)
    rel = np.where(params[:, 2] > 0.999, 4e-8, 1e-10 if shape == "rectangular" else 1e-12)
    noise = (rel * np.abs(val) + 1e-14)[:, None]
    tol = 1e-6 * np.abs(fd) + 2.0 * noise / steps
    assert np.all(np.isfinite(jvp))
    bad = (np.abs(jvp - fd) > tol) & (val > 1e-6)[:, None]
    assert not bad.any(), [(tuple(params[i]), _COORDS[j], jvp[i, j], fd[i, j])
                           for i, j in zip(*np.nonzero(bad))][:5]


@pytest.mark.slow
@pytest.mark.parametrize("shape", COMPACT)
def test_compact_tangent_equals_nested_jvp(shape):
    """The analytic derivatives == ``jax.jvp`` of the nested quadrature (the custom JVP's
    previous tangent) where that route is accurate (|rho| <= 0.99): 1e-7 relative plus 1e-10
    gamma^2 absolute (the nested values are 1e-8 / 1e-11 accurate:
    ``test_compact_agrees_with_nested_below_high_correlation``)."""
    rng = np.random.default_rng(9)
    n = 30
    beta = np.exp(rng.uniform(np.log(0.5), np.log(10.0), n))
    a, b = np.exp(rng.uniform(np.log(0.01), np.log(1e3), (2, n))) / beta**2
    params = np.column_stack([a, b, rng.uniform(-0.99, 0.99, n), rng.uniform(-0.5, 1.5, n),
                              np.full(n, 0.8), beta])

    def nested(p):
        a_, b_, rho, th, g, be = (p[..., k] for k in range(6))
        return jax.vmap(lambda *v: analytic._nested_pair_expectation(
            v[0], v[1], v[2] * jnp.sqrt(v[0] * v[1]), v[3], sg.Surrogate(shape, v[4], v[5], 2.0)))(
                a_, b_, rho, th, g, be)

    jvps = []
    with jax.enable_x64(True):
        for f in (_entry(shape), nested):
            run = jax.jit(lambda p, f=f: jax.vmap(
                lambda e: jax.jvp(f, (p,), (jnp.broadcast_to(e, p.shape),))[1])(jnp.eye(6)))
            jvps.append(np.asarray(run(jnp.asarray(params))))
    np.testing.assert_allclose(jvps[0], jvps[1], rtol=1e-7, atol=1e-10 * 0.64)


@pytest.mark.parametrize("shape", [SLOW[0], "rectangular"])
def test_compact_tangent_on_degenerate_boundaries(shape):
    """On the diagonal (a = b = r, correlation exactly 1, tangents da = db = dr) the
    derivatives are those of E[psi'(u - theta)^2] (``gaussian_moment(power=2)``, a 1-D closed
    form); with one variance tiny (1e-14) those in b and theta are those of the one-sided
    limit psi'(-theta) E[psi'(v - theta)] (to O(sqrt(a)) = 1e-7 relative); all finite, also
    at correlation -1 and with a = b = 1e-14."""
    def diag(a, th, g, beta):
        return _gram.compact_pair_closed(sg.Surrogate(shape, g, beta, 2.0), a, a, a, th)

    def square(a, th, g, beta):
        return sg.gaussian_moment(sg.Surrogate(shape, g, beta, 2.0), -th, a, power=2)

    def tiny(b, th, g, beta, a=1e-14, rho=0.6):
        return _gram.compact_pair_closed(sg.Surrogate(shape, g, beta, 2.0), a, b,
                                         rho * jnp.sqrt(a * b), th)

    def one_sided(b, th, g, beta):
        sur = sg.Surrogate(shape, g, beta, 2.0)
        return sur.derivative(-th) * sg.gaussian_moment(sur, -th, b)

    args = (0, 1, 2, 3)
    with jax.enable_x64(True):
        for a, th, beta in ((0.5, 0.6, 3.0), (0.01, 0.3, 3.0), (40.0, 1.0, 3.0),
                            (0.3, 0.0, 2.0), (0.2, -0.3, 5.0)):
            got = np.array(jax.grad(diag, args)(a, th, 0.7, beta))
            ref = np.array(jax.grad(square, args)(a, th, 0.7, beta))
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
        for b, th, beta in ((0.5, 0.1, 3.0), (2.0, -0.05, 1.5)):    # |theta| < support
            got = np.array(jax.grad(tiny, args)(b, th, 0.7, beta))
            ref = np.array(jax.grad(one_sided, args)(b, th, 0.7, beta))
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9)
        for a, b, r in ((0.5, 0.5, -0.5), (0.5, 0.8, -np.sqrt(0.4)), (1e-14, 1e-14, 1e-14)):
            g = jax.grad(lambda *p: _gram.compact_pair_closed(
                sg.Surrogate(shape, p[4], p[5], 2.0), *p[:4]), (0, 1, 2, 3, 4, 5))(
                    a, b, r, 0.2, 0.7, 3.0)
            assert np.all(np.isfinite(g)), (a, b, r)


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


def test_compact_large_call_equals_small_calls():
    """One call of the triangular closed form on 4000 entries (per-entry threshold and
    sharpness) equals calls of 50 entries, and every value is in [0, gamma^2]. Compiled for
    ~1900 or more entries at once, XLA's CPU backend returned wrong values (up to 125) for
    about half of them; calls that large now run in blocks (``_gram._BLOCK``)."""
    rng = np.random.default_rng(12)
    n = 4000
    a, b = np.exp(rng.uniform(-3, 4, n)), np.exp(rng.uniform(-3, 4, n))
    rho = np.concatenate([rng.uniform(-1, 1, n // 2), 1 - np.exp(-rng.uniform(0, 20, n // 2))])
    r = rho * np.sqrt(a * b)
    th, beta = rng.uniform(-0.5, 1.5, n), rng.uniform(0.5, 8, n)
    f = jax.jit(lambda *z: LK.surrogate_pair_expectation(
        z[0], z[1], z[2], z[3], sg.Surrogate("triangular", 0.9, z[4], 2.0)))
    with jax.enable_x64(True):
        big = np.asarray(f(a, b, r, th, beta))
        small = np.concatenate([np.asarray(f(*(v[i:i + 50] for v in (a, b, r, th, beta))))
                                for i in range(0, n, 50)])
    # the compiled loops differ: rounding, ~1e-12 gamma^2 absolute (the closed form's floor;
    # measured 2.2e-13); the wrong values were O(1)
    assert big.min() >= -1e-12 and big.max() <= 0.81 + 1e-12, (big.min(), big.max())
    np.testing.assert_allclose(big, small, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("shape", COMPACT)
def test_kernel_gram_independent_of_block_size(shape):
    """The kernel's surrogate Gram at P = 8, T = 50 with the default ``batch_size`` (26 input
    pairs per block, so the closed form saw 26 x 256 entries at once) equals one pair per
    block, to rounding. Before the closed form ran in blocks of ``_gram._BLOCK`` entries, the
    triangular one was off by 206 % of the largest entry here (XLA CPU, see
    ``test_compact_large_call_equals_small_calls``)."""
    rng = np.random.default_rng(3)
    P, T = 8, 50
    x = (rng.random((P, T, 20)) < rng.uniform(0.05, 0.3, (P, 1, 1))).astype(float)
    cfg = analytic._lif.LIFConfig(tau_mem=10.0, tau_syn=5.0, threshold=0.5, reset="none",
                                  surrogate=sg.get(shape, sharpness=3.0))
    with jax.enable_x64(True):
        c64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), cfg)
        out = [np.asarray(jax.jit(LK.lif_kernel_fn(which=("sg_gram",), batch_size=bs))(
            x, None, c64, jnp.ones(T), 1.5, 0.3, 1.0, None).sg_gram) for bs in (1 << 16, T * T)]
    np.testing.assert_allclose(out[0], out[1], rtol=0, atol=1e-12 * np.abs(out[1]).max())
