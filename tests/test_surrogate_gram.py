"""The surrogate Gram map E[psi'(u) psi'(v)] for every shape: accuracy and bounded memory (issue 13).

Independent routes:
* brute-force ``scipy.integrate.quad`` (outer over u with every kink and scale as a
  breakpoint, inner over v | u likewise), in normalised units, for variances 1e-4 .. 1e6
  (sharpness 1e-2 .. 1e4 at unit pre-activation variance, squared) and correlations up to
  1 - 1e-12. Target 1e-8 relative (the issue's figure); the new routes reach ~1e-9.
* the previous two-level multi-scale quadrature (``_quadrature.even_expectation`` over
  ``gaussian_moment`` at a non-zero mean), which fits in memory for a handful of pairs.
* the closed form of the Gaussian-profile shapes for the GSM machinery (a Gaussian bump is
  its own one-node mixture).
"""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from sgntk import _quadrature as Q
from sgntk import expectations as E
from sgntk import surrogates as S

ROUTED = [s for s in S.SHAPES if s not in ("gaussian", "erf", "straight_through")]
KINKS = {"triangular": [-1.0, 0.0, 1.0], "rectangular": [-0.5, 0.5]}


# The profiles g(u) as published (reference notes, section 5; Herranz-Celotti & Rouat), in
# plain Python floats for scipy's scalar quad loop (a JAX call per point would take hours).
_NUMPY_PROFILES = {
    "triangular": lambda u, q: max(1.0 - abs(u), 0.0),
    "exponential": lambda u, q: np.exp(-2.0 * abs(u)),
    "fast_sigmoid": lambda u, q: 1.0 / (1.0 + 2.0 * abs(u)) ** 2,
    "rectangular": lambda u, q: 1.0 if abs(2.0 * u) < 1.0 else 0.0,
    "sigmoid": lambda u, q: 1.0 / np.cosh(min(2.0 * abs(u), 350.0)) ** 2,
    "cauchy": lambda u, q: 1.0 / (1.0 + (np.pi * u) ** 2),
    "q_pseudo_spike": lambda u, q: (1.0 + 2.0 * abs(u) / (q - 1.0)) ** (-q),
}


def _profile(shape, q):
    g = _NUMPY_PROFILES[shape]
    sur = S.get(shape, **({"tail": q} if shape == "q_pseudo_spike" else {}))
    grid = np.linspace(-3, 3, 61)      # the plain-Python copy is the library's profile
    np.testing.assert_allclose([g(u, q) for u in grid], np.asarray(sur.profile(grid)), rtol=1e-12)
    return lambda u: g(u, q)


def _scipy_pair(shape, a, b, r, q=2.0):
    """E[g(U) g(V)] by nested scipy quad (slow; a few points only)."""
    g = _profile(shape, q)
    kinks = KINKS.get(shape, [0.0])

    def inner(m, c):
        if c <= 0:
            return g(m)
        sd = np.sqrt(c)
        pts = sorted({0.0, m, *kinks, *(m + k * sd for k in (-8, -2, 2, 8))})
        lo, hi = min(pts) - 40 * sd - 50, max(pts) + 40 * sd + 50
        f = lambda v: g(v) * np.exp(-0.5 * ((v - m) / sd) ** 2) / (np.sqrt(2 * np.pi) * sd)  # noqa: E731
        edges = [lo, *pts, hi]
        return sum(integrate.quad(f, x0, x1, epsabs=0, epsrel=1e-12, limit=400)[0]
                   for x0, x1 in zip(edges[:-1], edges[1:]))

    kap, c, sa = r / a, max(b - r * r / a, 0.0), np.sqrt(a)
    f = lambda u: g(u) * np.exp(-0.5 * u * u / a) / np.sqrt(2 * np.pi * a) * inner(kap * u, c)  # noqa: E731
    pts = {0.0, *kinks, *(k * sa for k in (-8, -2, -1, 1, 2, 8))}
    if kap != 0:
        pts |= {k / kap for k in kinks}
        if c > 0:
            pts |= {s * np.sqrt(c) / abs(kap) for s in (-10, -1, 1, 10)}
    lo, hi = -40 * sa - 50, 40 * sa + 50
    edges = sorted(p for p in pts | {lo, hi} if lo <= p <= hi)
    return sum(integrate.quad(f, x0, x1, epsabs=0, epsrel=1e-11, limit=400)[0]
               for x0, x1 in zip(edges[:-1], edges[1:]))


def _pair_route(shape, a, b, r, q=2.0):
    sur = S.get(shape, **({"tail": q} if shape == "q_pseudo_spike" else {}))
    return np.asarray(E.surrogate_expectation(jnp.asarray(a), jnp.asarray(b), jnp.asarray(r), sur))


# (a, b, rho) in normalised units: moderate, narrow/wide mix, near-diagonal, exact diagonal
FAST_POINTS = [(1.0, 1.0, 0.5), (3.0, 0.5, 1.0), (1e-3, 1e-3, 1 - 1e-6)]
SLOW_POINTS = [(0.01, 2.0, 0.9), (100.0, 30.0, 0.99), (1e4, 1e4, 1 - 1e-10), (1e-4, 1e6, -0.3),
               (1e-4, 1e-4, 1 - 1e-12), (0.3, 0.3, 0.0)]


def _check_points(shape, points):
    with jax.enable_x64(True):
        q = 1.5 if shape == "q_pseudo_spike" else 2.0
        a = np.array([p[0] for p in points])
        b = np.array([p[1] for p in points])
        r = np.array([p[2] for p in points]) * np.sqrt(a * b)
        got = _pair_route(shape, a, b, r, q)
        want = np.array([_scipy_pair(shape, *p, q) for p in zip(a, b, r)])
        rel = np.abs(got / want - 1)
        assert np.all(rel < 1e-8), dict(zip(points, rel))


@pytest.mark.parametrize("shape", [s if s == "triangular" else
                                   pytest.param(s, marks=pytest.mark.slow) for s in ROUTED])
def test_pair_expectation_matches_scipy(shape):
    _check_points(shape, FAST_POINTS)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ROUTED)
def test_pair_expectation_matches_scipy_extremes(shape):
    _check_points(shape, SLOW_POINTS)


# Closed-form (theta) route of the piecewise shapes at its extremes: sharpness 1e4 at unit
# variance (a = 1e8), a very narrow against a very wide Gaussian, the edge |rho| = 0.92.
THETA_POINTS = [(1e8, 1e8, 0.9), (1e4, 3e-4, -0.92), (1e-4, 1e-4, 0.6), (1e-2, 1e4, 0.3)]


@pytest.mark.parametrize("shape", Q.PIECEWISE_SHAPES)
def test_piecewise_closed_form_matches_scipy_at_extremes(shape):
    _check_points(shape, THETA_POINTS)


@pytest.mark.parametrize("shape", Q.PIECEWISE_SHAPES)
def test_piecewise_closed_form_matches_quadrature_route(shape):
    """The closed form (|rho| <= 0.925; the rest takes the quadrature route, gathered) against
    the quadrature route alone on 4000 random pairs: variances 1e-4 .. 1e4 (normalised),
    correlations uniform, near +-1 and exactly 1 (a = b). Measured worst 6e-12 on 20 000 pairs
    per band; 1e-10 here."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        n = 4000
        a, b = 10 ** rng.uniform(-4, 4, n), 10 ** rng.uniform(-4, 4, n)
        rho = np.concatenate([rng.uniform(-1, 1, n // 2), rng.uniform(0.9, 0.925, n // 4),
                              1 - 10 ** rng.uniform(-12, -1, n // 8), np.ones(n // 8)])
        rho *= rng.choice([-1.0, 1.0], n)
        b[-n // 8:] = a[-n // 8:]
        r = rho * np.sqrt(a * b)
        new = np.asarray(jax.jit(lambda *x: Q.piecewise_pair_expectation(shape, *x))(a, b, r))
        old = np.asarray(jax.jit(lambda *x: Q.piecewise_pair_quadrature(shape, *x))(a, b, r))
        rel = np.abs(new / old - 1)
        assert rel.max() < 1e-10, (rel.max(), a[rel.argmax()], b[rel.argmax()], rho[rel.argmax()])


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["rectangular", "triangular"])
def test_piecewise_gradients_match_finite_differences(shape):
    """d/dt of sum_i w_i E[g g](a + t da, b + t db, r + t dr) against a central difference:
    along (a, b, r) itself (a change of sharpness; the exact diagonal rho = 1 included, where
    the conditional variance is 0) and along a random direction off the near-diagonal pairs;
    2500 pairs (both routes, the gathered one in two chunks). Measured agreement 3e-11 and
    6e-8 (the difference quotient's own error, h = 1e-5); 1e-6 here."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        n = 2500
        a, b = 10 ** rng.uniform(-2, 2, n), 10 ** rng.uniform(-2, 2, n)
        rho = rng.uniform(-1, 1, n)
        rho[:100], b[:100] = 1.0, a[:100]
        r = rho * np.sqrt(a * b)
        w = rng.uniform(0.5, 1.5, n)
        off = np.abs(rho) < 0.99
        da, db, dr = rng.normal(size=(3, n)) * 0.3 * off

        def f(t, d):
            return jnp.sum(w * Q.piecewise_pair_expectation(shape, a + t * d[0], b + t * d[1],
                                                            r + t * d[2]))

        fj, gj = jax.jit(f), jax.jit(jax.grad(f))       # one compile each for both directions
        for d in ((a, b, r), (a * da, b * db, r * dr)):
            d = tuple(jnp.asarray(x) for x in d)
            g = float(gj(0.0, d))
            h = 1e-5
            fd = (float(fj(h, d)) - float(fj(-h, d))) / (2 * h)
            assert np.isfinite(g) and abs(g / fd - 1) < 1e-6, (g, fd)


def _previous_two_level(a, b, r, surrogate):
    """The route this module replaced (two-level multi-scale quadrature; ~1e6 floats per pair)."""
    beta = jnp.asarray(surrogate.sharpness)
    kap = r / jnp.maximum(a, 1e-300)
    cv = E._cond_var(a, b, r)

    def integrand(u):
        inner = S.gaussian_moment(surrogate, kap[..., None, None] * u, cv[..., None, None])
        return surrogate.derivative(u) * inner

    edge = {"triangular": 1.0, "rectangular": 0.5}.get(surrogate.shape)
    breaks = () if edge is None else (edge / beta,)
    return Q.even_expectation(integrand, a, breaks)


@pytest.mark.slow   # the closed forms vs the quadrature route: test_piecewise_* (default)
@pytest.mark.parametrize("shape", ROUTED)
def test_pair_and_table_routes_match_previous_quadrature(shape):
    """Per-pair route (array variances) and correlation-table route (scalar variances) agree
    with the previous quadrature to 1e-8 at three sharpness values."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        a, b = rng.uniform(0.05, 3, 6), rng.uniform(0.05, 3, 6)
        rho = np.array([1.0, -0.999999, 0.0, 0.3, -0.7, 0.95])
        b[0] = a[0]
        r = rho * np.sqrt(a * b)
        for beta in (0.3, 2.0, 30.0):
            sur = S.get(shape, sharpness=beta, dampening=1.3,
                        **({"tail": 3.0} if shape == "q_pseudo_spike" else {}))
            new = np.asarray(E.surrogate_expectation(jnp.asarray(a), jnp.asarray(b), jnp.asarray(r), sur))
            old = np.asarray(_previous_two_level(jnp.asarray(a), jnp.asarray(b), jnp.asarray(r), sur))
            assert np.max(np.abs(new / old - 1)) < 1e-8, (beta, new, old)
            # scalar variances: the correlation table against the per-pair route
            a0, b0 = 0.7, 1.9
            rr = rho * np.sqrt(a0 * b0)
            tab = np.asarray(E.surrogate_expectation(jnp.asarray(a0), jnp.asarray(b0), jnp.asarray(rr), sur))
            pair = np.asarray(E.surrogate_expectation(jnp.full(6, a0), jnp.asarray(b0), jnp.asarray(rr), sur))
            assert np.max(np.abs(tab / pair - 1)) < 1e-8, (beta, tab, pair)


def test_gsm_nodes_reproduce_the_profiles():
    """sum_j w_j exp(-u^2/(2 s_j)) + w_inf == g(u) (the mixing measures are right)."""
    with jax.enable_x64(True):
        u = np.array([0.0, 1e-6, 1e-3, 0.1, 0.5, 1.0, 2.0])
        for shape in Q.GSM_SHAPES:
            for q in ((1.1, 1.5, 6.0, 20.0) if shape == "q_pseudo_spike" else (2.0,)):
                s, w, w_inf = (np.asarray(t) for t in Q.gsm_nodes(shape, q))
                rec = (w[None] * np.exp(-u[:, None] ** 2 / (2 * s[None]))).sum(1) + w_inf
                want = np.array([_profile(shape, q)(x) for x in u])
                # Absolute error against g(0) = 1. fast_sigmoid uses a coarser step (0.7): 1e-8
                # near the peak (what narrow Gaussians see), further out an oscillating aliasing
                # error (3e-7 at u = 1) that averages out in the pair expectations (the scipy
                # tests above: ~2e-9); the other shapes 1e-9 everywhere.
                far = 6e-7 if shape == "fast_sigmoid" else 1e-9
                np.testing.assert_allclose(rec[:3], want[:3], atol=1e-8, err_msg=f"{shape} q={q}")
                np.testing.assert_allclose(rec, want, atol=far, rtol=0, err_msg=f"{shape} q={q}")


def test_gsm_pair_of_a_gaussian_bump_is_its_closed_form():
    """One-node mixture: E[e^{-U^2/2s} e^{-V^2/2s}] = s / sqrt((s + a)(s + b) - r^2)."""
    with jax.enable_x64(True):
        s0 = 0.37
        coef = Q.octave_table(lambda u: jnp.exp(-u**2 / (2 * s0)))
        a, b = jnp.array([0.2, 5.0, 1.0]), jnp.array([3.0, 0.1, 1.0])
        r = jnp.array([0.5, -0.3, 1.0]) * jnp.sqrt(a * b)
        got = Q._gsm_node_sum(coef, jnp.array([s0]), jnp.array([1.0]), 0.0, a, b, a * b - r**2)
        want = s0 / jnp.sqrt((s0 + a) * (s0 + b) - r**2)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9)


@pytest.mark.slow   # ~15 s (compile); the per-row route also runs in every default kernel test
def test_gsm_per_row_pair_of_a_gaussian_bump_is_its_closed_form():
    """Per-row variances (the factors per row and node hoisted out of the pair loop) on the
    one-node mixture, against its closed form."""
    with jax.enable_x64(True):
        s0 = 0.37
        coef = Q.octave_table(lambda u: jnp.exp(-u**2 / (2 * s0)))
        aa, bb = jnp.array([[0.2], [5.0]]), jnp.array([[3.0, 0.1, 1.0]])
        rr = jnp.array([[0.5, -0.3, 1.0], [0.9, 0.0, -1.0]]) * jnp.sqrt(aa * bb)
        got = Q._gsm_node_sum(coef, jnp.array([s0]), jnp.array([1.0]), 0.0, aa, bb,
                              Q.snapped_det(aa, bb, rr))
        want = s0 / jnp.sqrt((s0 + aa) * (s0 + bb) - rr**2)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9)


@pytest.mark.parametrize("shape", [s if s == "exponential" else pytest.param(s, marks=pytest.mark.slow)
                                   for s in Q.GSM_SHAPES])
def test_octave_table_matches_the_multiscale_rule(shape):
    """The exponent/mantissa-indexed table of the pair route against
    ``even_expectation`` on 400 log-uniform variances in [1e-21, 1e21] plus 0, the grid edges
    and beyond: 3e-9 relative (measured worst 9e-10); the derivative finite (0 at v = 0)."""
    with jax.enable_x64(True):
        prof = S.get(shape).profile
        coef = Q.octave_table(prof)
        v = np.concatenate([10 ** np.random.default_rng(5).uniform(-21, 21, 400),
                            [0.0, 1e-300, 2.0**-72, 2.0**-72 * 1.01, 2.0**72 * 0.99, 1e30]])
        want = np.asarray(Q.even_expectation(prof, jnp.asarray(v)))
        got = np.asarray(Q.octave_lookup(coef, 1.0, jnp.asarray(v)))
        np.testing.assert_allclose(got, want, rtol=3e-9, atol=0)
        d = np.asarray(jax.vmap(jax.grad(lambda x: Q.octave_lookup(coef, 1.0, x)))(jnp.asarray(v)))
        assert np.all(np.isfinite(d)) and d[-6] == 0.0, d[-6:]


def _full_window_nodes(shape, q):
    """The unmerged node set that gsm_pair_expectation merges from (q_pseudo_spike with q in
    [1.25, 2] takes fast_sigmoid's step)."""
    lo, hi = Q._Q_COARSE
    window = Q._GSM_WINDOW["fast_sigmoid" if shape == "q_pseudo_spike" and lo <= q <= hi else shape]
    return Q.pair_nodes(shape, q, window)


@pytest.mark.parametrize("shape,q", [
    pytest.param(s, q, marks=pytest.mark.slow)
    for s, q in [("fast_sigmoid", 2.0), ("q_pseudo_spike", 1.5), ("exponential", 2.0), ("cauchy", 2.0),
                 ("q_pseudo_spike", 20.0)]])
def test_gsm_merged_tails(shape, q):
    """The merged tail nodes against the full window, on 2000 random (a, b, rho) per regime:
    a in [1e-6, 1e3] (both tails merged), a up to 1e6 (left tail merged), a below 1e-6 (full
    window, identical). 1e-10 relative (measured worst 4e-11 over 20 000 pairs at the
    regime edges; the merge errors fall like a^-3/2 and (a e^-13)^2)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        n = 2000
        coef = Q.octave_table(S.get(shape, **({"tail": q} if shape == "q_pseudo_spike" else {})).profile)
        full_nodes = _full_window_nodes(shape, q)
        for hi in (3.0, 6.0):
            a = 10 ** rng.uniform(-6, hi, n)
            b = np.minimum(10 ** rng.uniform(-8, hi, n), a)
            rho = np.concatenate([rng.uniform(-1, 1, n // 2), 1 - 10 ** rng.uniform(-12, 0, n // 2)])
            r = rho * np.sqrt(a * b)
            det = np.asarray(Q.snapped_det(jnp.asarray(a), jnp.asarray(b), jnp.asarray(r)))
            full = np.asarray(Q._gsm_node_sum(coef, *full_nodes, a, b, det))
            got = np.asarray(Q.gsm_pair_expectation(coef, shape, q, a, b, r))
            assert np.max(np.abs(got / full - 1)) < 1e-10, hi
            # the expectation is symmetric in (a, b)
            np.testing.assert_array_equal(np.asarray(Q.gsm_pair_expectation(coef, shape, q, b, a, r)), got)
        small = np.asarray(Q.gsm_pair_expectation(coef, shape, q, a * 1e-7, b * 1e-7, r * 1e-7))
        full_small = np.asarray(Q._gsm_node_sum(coef, *full_nodes, a * 1e-7, b * 1e-7, det * 1e-14))
        np.testing.assert_allclose(small, full_small, rtol=1e-13)


@pytest.mark.parametrize("shape,q", [   # default-run representative: the gaussian bump test
    pytest.param(s, q, marks=pytest.mark.slow)
    for s, q in [("fast_sigmoid", 2.0), ("exponential", 2.0), ("cauchy", 2.0), ("sigmoid", 2.0), ("q_pseudo_spike", 1.25),
                 ("q_pseudo_spike", 1.5), ("q_pseudo_spike", 20.0)]])
def test_gsm_per_row_route(shape, q):
    """Per-row variances ``a: (n, 1)``, ``b: (1, m)`` (the first layer of a kernel: no swap,
    factors per row and node hoisted, merges bounded by b_max / a_min) against the unmerged
    node set at full shape, 40 x 40 pairs per range of (a, b) from [1e-6, 1e3] to [1e3, 1e5]
    (b up to 1e9 a), correlations uniform and 1 - 1e-12 .. 1 - 1e-0 and exactly 1. 3e-9
    relative (measured worst 1.4e-9: the table's own error), and q_pseudo_spike's coarse node
    set (q in [1.25, 2]) against the fine one (step 0.4)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        coef = Q.octave_table(S.get(shape, **({"tail": q} if shape == "q_pseudo_spike" else {})).profile)
        ref_nodes = Q.pair_nodes(shape, q, Q._GSM_WINDOW[shape])      # the fine set
        for lo, hi in [(-6, 3), (-3, 0), (-2, 0.7), (0, 2), (3, 5), (-8, -6)]:
            n = 40
            a, b = 10 ** rng.uniform(lo, hi, n), 10 ** rng.uniform(lo, hi, n)
            rho = np.concatenate([rng.uniform(-1, 1, (n // 2, n)),
                                  1 - 10 ** rng.uniform(-12, 0, (n - n // 2, n))])
            rho[0, 0], b[0] = 1.0, a[0]
            r = rho * np.sqrt(a[:, None] * b[None, :])
            af, bf = np.broadcast_to(a[:, None], r.shape), np.broadcast_to(b[None, :], r.shape)
            det = np.asarray(Q.snapped_det(jnp.asarray(af), jnp.asarray(bf), jnp.asarray(r)))
            ref = np.asarray(Q._gsm_node_sum(coef, *ref_nodes, af, bf, det))
            got = np.asarray(Q.gsm_pair_expectation(coef, shape, q, a[:, None], b[None, :], r))
            rel = np.abs(got / ref - 1)
            assert rel.max() < 3e-9, (lo, hi, rel.max())


@pytest.mark.parametrize("shapes", [("gaussian", "fast_sigmoid", "triangular"),
                                    pytest.param(tuple(S.SHAPES), marks=pytest.mark.slow)],
                         ids=["representatives", "every-shape"])
def test_default_kernel_under_memory_limit(shapes):
    """kernels.mlp(x, depth=2) with the default kernels (surrogate Gram included) at N = 300
    for every shape (-m slow; one per route by default) in a subprocess whose address space is capped at 4 GiB (the previous
    route needed 8 GB to 800 GB here); the surrogate Gram K(X, X) is symmetric (the per-pair
    piecewise and closed-form routes exactly up to XLA's fusion rounding, the GSM per-row route
    to ~1e-9 relative)."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, resource.RLIM_INFINITY))
        import numpy as np, sgntk
        x = np.random.default_rng(0).normal(size=(300, 5))
        for s in {list(shapes)!r}:
            k = sgntk.kernels.mlp(x, depth=2, activation="sign", surrogate=s)
            assert all(np.isfinite(np.asarray(v)).all() for v in (k.nngp, k.sgntk, k.sg_gram)), s
            g = np.asarray(k.sg_gram)   # GSM per-row route ~1e-9 (against the row variance)
            assert np.abs(g - g.T).max() <= 1e-8 * np.abs(g).max(), (s, np.abs(g - g.T).max())
            print(s, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "MB", flush=True)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=1800, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert len(res.stdout.strip().splitlines()) == len(shapes), res.stdout


@pytest.mark.slow   # ~10-25 s (compile); default run: the symmetry check of the memory-limit test
@pytest.mark.parametrize("shape", ["triangular", "rectangular"])
def test_first_layer_piecewise_pair_expectation_is_exactly_symmetric(shape):
    """Per-row / per-column variances (a kernel's first layer, K(X, X)): the closed form is
    symmetric in (a, b) as written and the quadrature route (nearly parallel pairs) integrates
    against the larger of the two variances, so E(a_i, b_j, r_ij) and E(a_j, b_i, r_ji) are the
    same float. Inputs of unequal norms, a duplicate and a parallel pair (correlation 1, the
    quadrature route). (The GSM shapes' per-row route integrates against the row variance:
    symmetric to ~1e-9, see test_default_kernel_under_memory_limit.)"""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(40, 5)) * rng.uniform(0.3, 3.0, (40, 1))
        x[7], x[9] = 1.7 * x[3], x[2]
        var = (x * x).sum(1) / 5 + 0.01
        r = x @ x.T / 5 + 0.01
        assert np.array_equal(r, r.T)
        for beta in (0.1, 3.0, 300.0):
            e = np.asarray(jax.jit(lambda a, b, rr, s: E.surrogate_expectation(a, b, rr, s))(
                jnp.asarray(var[:, None]), jnp.asarray(var[None, :]), jnp.asarray(r),
                S.get(shape, sharpness=beta)))
            assert np.all(np.isfinite(e))
            np.testing.assert_array_equal(e, e.T)
