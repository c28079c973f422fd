"""One battery over every surrogate shape: peak/area, spike-function autodiff, vmap over the
surrogate pytree, Gaussian moments against brute-force scipy quadrature, edge cases, bad input.

Nothing here re-types the profiles g(u): their shape is pinned by the snnTorch / SpikingJelly /
Norse formulas in ``test_conversions.py`` (checked there against the libraries' autograd with
``-m interop``); here only shape-independent properties are checked (peak = dampening, area =
dampening / sharpness by scipy.quad, the spike's custom_jvp derivative = psi' by jax.jvp), and the
moment integrands are those published formulas, rescaled.

The full moment grid is ``@pytest.mark.slow`` (``pytest -m slow``); a representative subset
runs by default.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si

from sgntk import surrogates as sg
from test_conversions import FROM, REFERENCE


pytestmark = pytest.mark.usefixtures("x64")


# Every shape, with q_pseudo_spike at a light, medium and heavy tail.
CASES = [(s, None) for s in sg.SHAPES if s != "q_pseudo_spike"] + [
    ("q_pseudo_spike", q) for q in (1.5, 3.0, 10.0)]
CASE_IDS = [s if q is None else f"{s}-q{q:g}" for s, q in CASES]


def make(shape, q=None, **kw):
    return sg.get(shape, **kw) if q is None else sg.get(shape, tail=q, **kw)


def raw(shape, q=None, sharpness=1.0, dampening=1.0, tail=None):
    """The dataclass constructor (no validation): usable with traced parameters."""
    return sg.Surrogate(shape, dampening, sharpness, tail if tail is not None else
                        (2.0 if q is None else q))


# One published formula per shape (test_conversions.REFERENCE, taken at the library's
# default parameters, where it equals gamma0 g(beta0 x)): g(u) = ref(u / beta0) / gamma0.
PUBLISHED = {
    "triangular": ("spikingjelly", "PiecewiseQuadratic"),
    "exponential": ("spikingjelly", "PiecewiseExp"),
    "fast_sigmoid": ("snntorch", "fast_sigmoid"),
    "rectangular": ("spikingjelly", "Rect"),
    "sigmoid": ("snntorch", "sigmoid"),  # e^-z / (1 + e^-z)^2: no 1 - sig cancellation at |x|
    "gaussian": ("spikingjelly", "Erf"),
    "cauchy": ("snntorch", "atan"),
    "q_pseudo_spike": ("spikingjelly", "QPseudoSpike"),  # alpha = tail q
    "erf": ("norse", "heavi_erfc"),
    "straight_through": ("snntorch", "straight_through_estimator"),
}
assert set(PUBLISHED) == set(sg.SHAPES)


def published(shape, q=None, sharpness=1.0, dampening=1.0):
    """psi'(x) = dampening g(sharpness x) from a library's published formula (numpy scalar),
    evaluated at |x| (every profile is even: test_derivative_even_and_peaked), where none of
    the formulas overflows."""
    lib, name = PUBLISHED[shape]
    params = {} if q is None else {"alpha": q}
    ref = FROM[lib](name, **params)
    fn = REFERENCE[(lib, name)][0]
    c = dampening / float(ref.dampening)
    u_scale = sharpness / float(ref.sharpness)
    return lambda x: c * float(fn(np.asarray(u_scale * abs(x)), **params))


def brute(f, beta, mean, var):
    """int f(w) N(w; mean, var) dw by scipy.quad on subintervals around both feature points."""
    sd = np.sqrt(var)
    pts = {0.0, mean}
    for k in [0.25, 0.5, 1, 2, 5, 10, 100, 1000, 1e4, 1e5]:
        pts |= {k / beta, -k / beta}
    for k in [0.5, 1, 3, 10, 20, 40]:
        pts |= {mean + k * sd, mean - k * sd}
    lo, hi = mean - 40 * sd, mean + 40 * sd
    pts = sorted(p for p in pts if lo <= p <= hi)

    def dens(w):
        return f(w) * np.exp(-((w - mean) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)

    return sum(si.quad(dens, a, b, limit=200, epsabs=0, epsrel=1e-13)[0]
               for a, b in zip(pts[:-1], pts[1:]))


# ------------------------------------------------------------------------------------------
# Peak and area.
# ------------------------------------------------------------------------------------------
def _area(fn, beta):
    """int_R fn(x) dx by scipy.quad, split at 0, the kinks and a ladder of widths."""
    ks = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]
    pts = [0.0] + [k / beta for k in ks]
    half = sum(si.quad(fn, a, b, limit=200, epsabs=0, epsrel=1e-12)[0]
               for a, b in zip(pts[:-1], pts[1:]))
    big = pts[-1]  # tail int_big^inf fn(x) dx with x = big / t (algebraic tails -> t^(q-2))
    half += si.quad(lambda t: fn(big / t) * big / t**2, 0.0, 1.0, limit=200, epsabs=0,
                    epsrel=1e-10)[0]
    return 2.0 * half  # every profile is even


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("shape,q", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("sharpness,dampening", [(1.0, 1.0), (0.5, 2.5), (30.0, 0.3)])
def test_peak_and_area(shape, q, sharpness, dampening):
    s = make(shape, q, sharpness=sharpness, dampening=dampening)
    d = jax.jit(s.derivative)
    peak = float(d(0.0))
    if shape == "straight_through":
        # constant dampening, whatever the sharpness: no finite area
        xs = np.array([-1e3, -1.0, 0.0, 0.3, 1e3])
        np.testing.assert_allclose(np.asarray(d(xs)), dampening, rtol=1e-15)
        assert peak == pytest.approx(dampening, rel=1e-15)
        return
    area = _area(lambda x: float(d(x)), sharpness)
    if shape == "erf":
        want_peak, want_area = 2.0 / np.sqrt(np.pi) * dampening, 2.0 * dampening / sharpness
    else:
        want_peak, want_area = dampening, dampening / sharpness
    assert peak == pytest.approx(want_peak, rel=1e-14)
    assert area == pytest.approx(want_area, rel=1e-9)
    # the profile itself is normalised the same way
    assert float(s.profile(0.0)) == pytest.approx(want_peak / dampening, rel=1e-14)


@pytest.mark.parametrize("shape,q", CASES, ids=CASE_IDS)
def test_derivative_even_and_peaked(shape, q):
    """Shape-independent properties: psi' is even, non-negative, maximal at 0 and
    non-increasing in |x|; it broadcasts, and calling the Surrogate is psi'."""
    s = make(shape, q, sharpness=3.0, dampening=0.7)
    xs = np.linspace(0.0, 4.0, 81)
    right, left = np.asarray(s.derivative(xs)), np.asarray(s.derivative(-xs))
    np.testing.assert_allclose(right, left, rtol=1e-14, atol=0)  # a few ulp
    assert np.all(right >= 0) and right[0] == np.max(right)
    assert np.all(np.diff(right) <= 0)
    assert s.derivative(jnp.zeros((2, 3))).shape == (2, 3)
    assert s(0.5) == s.derivative(0.5)


# ------------------------------------------------------------------------------------------
# Spike functions: custom_jvp derivative = psi', under grad / jacfwd / jacrev / jit / vmap.
# ------------------------------------------------------------------------------------------
XS = np.array([-1.3, -0.2, 0.0, 1e-3, 0.4, 2.0])


def test_spike_values():
    s = sg.get("fast_sigmoid", sharpness=3.0)
    np.testing.assert_array_equal(np.asarray(sg.heaviside(XS, s)), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(np.asarray(sg.sign(XS, s)), [-1, -1, 0, 1, 1, 1])
    assert float(sg.heaviside(0.0, s)) == 0.0
    assert float(sg.sign(0.0, s)) == 0.0
    assert sg.heaviside(jnp.float64(1.0), s).dtype == jnp.float64
    # jit gives the same values
    np.testing.assert_array_equal(np.asarray(jax.jit(sg.heaviside)(XS, s)),
                                  np.asarray(sg.heaviside(XS, s)))


@pytest.mark.parametrize("spike", [sg.heaviside, sg.sign], ids=["heaviside", "sign"])
@pytest.mark.parametrize("shape,q", CASES, ids=CASE_IDS)
def test_spike_autodiff(spike, shape, q):
    s = make(shape, q, sharpness=2.0, dampening=1.5)
    want = np.asarray(s.derivative(jnp.asarray(XS)))  # psi'
    bs = np.array([0.5, 1.0, 4.0])
    want_b = np.array([float(make(shape, q, sharpness=b, dampening=1.5).derivative(0.2))
                       for b in bs])
    f = lambda x: spike(x, s)  # noqa: E731
    # forward mode: the tangent of the spike is psi'(x) times the input tangent
    primal, tangent = jax.jvp(f, (jnp.asarray(XS),), (jnp.full(XS.shape, 0.5),))
    np.testing.assert_array_equal(np.asarray(primal), np.asarray(f(jnp.asarray(XS))))
    np.testing.assert_allclose(np.asarray(tangent), 0.5 * want, rtol=1e-15)
    g = jax.grad(f)
    smooth = shape in ("gaussian", "erf", "cauchy", "sigmoid")

    @jax.jit  # one compilation for all transformations (eager ones compile per primitive)
    def transformed(x, bs):
        out = dict(vmap_grad=jax.vmap(g)(x), jacfwd=jax.jacfwd(f)(x), jacrev=jax.jacrev(f)(x),
                   # the surrogate itself may be traced: vmap over its sharpness
                   by_sharpness=jax.vmap(lambda b: jax.grad(
                       lambda y: spike(y, make(shape, q, sharpness=b, dampening=1.5)))(0.2))(bs))
        if smooth:  # second order through the surrogate (reverse-over-reverse) is psi''
            out["hess"] = jax.vmap(jax.grad(g))(x)
            out["psi2"] = jax.vmap(jax.grad(s.derivative))(x)
        return out

    out = transformed(jnp.asarray(XS), jnp.asarray(bs))
    assert float(g(XS[4])) == pytest.approx(want[4], rel=1e-14)  # plain eager grad
    np.testing.assert_allclose(np.asarray(out["vmap_grad"]), want, rtol=1e-14)
    for key in ("jacfwd", "jacrev"):
        np.testing.assert_allclose(np.asarray(out[key]), np.diag(want), rtol=1e-14, atol=0)
    np.testing.assert_allclose(np.asarray(out["by_sharpness"]), want_b, rtol=1e-14)
    if smooth:
        np.testing.assert_allclose(np.asarray(out["hess"]), np.asarray(out["psi2"]),
                                   rtol=1e-12)


# ------------------------------------------------------------------------------------------
# Surrogates are pytrees: vmap over sharpness, dampening (and tail).
# ------------------------------------------------------------------------------------------
def _vmap_checks(shape, q, build):
    x = jnp.linspace(-1.0, 1.0, 7) + 1e-3
    bs = jnp.logspace(-1, 2, 6)
    gs = jnp.array([0.1, 1.0, 3.0])

    by_b = jax.vmap(lambda b: build(shape, q, sharpness=b).derivative(x))(bs)
    loop_b = np.stack([np.asarray(make(shape, q, sharpness=float(b)).derivative(x)) for b in bs])
    np.testing.assert_allclose(np.asarray(by_b), loop_b, rtol=1e-14)

    by_g = jax.vmap(lambda g: build(shape, q, dampening=g).derivative(x))(gs)
    loop_g = np.stack([np.asarray(make(shape, q, dampening=float(g)).derivative(x)) for g in gs])
    np.testing.assert_allclose(np.asarray(by_g), loop_g, rtol=1e-14)

    # a batched Surrogate (leaves carry the batch axis) and vmap over it
    grid = jax.vmap(lambda b: build(shape, q, sharpness=b))(bs)
    assert isinstance(grid, sg.Surrogate) and grid.shape == shape
    assert jnp.shape(grid.sharpness) == bs.shape
    np.testing.assert_allclose(np.asarray(jax.vmap(lambda s: s.derivative(x))(grid)), loop_b,
                               rtol=1e-14)
    leaves, treedef = jax.tree_util.tree_flatten(grid)
    assert len(leaves) == 3 and jax.tree_util.tree_unflatten(treedef, leaves).shape == shape

    jitted = jax.jit(lambda b: build(shape, q, sharpness=b).derivative(x))(bs[2])
    np.testing.assert_allclose(np.asarray(jitted), loop_b[2], rtol=1e-14)


@pytest.mark.parametrize("shape,q", CASES, ids=CASE_IDS)
def test_vmap_over_parameters(shape, q):
    """The documented idiom ``jax.vmap(lambda b: get(name, sharpness=b))`` (and under jit)."""
    _vmap_checks(shape, q, make)


@pytest.mark.parametrize("shape", ["triangular", "sigmoid"])
def test_vmap_moments_over_surrogate_grid(shape):
    bs = jnp.logspace(-1, 2, 4)
    grid = jax.vmap(lambda b: sg.get(shape, sharpness=b))(bs)
    mom = jax.jit(jax.vmap(lambda s: sg.gaussian_moment(s, 0.3, 0.5, power=2)))(grid)
    loop = [float(sg.gaussian_moment(sg.get(shape, sharpness=float(b)), 0.3, 0.5, power=2))
            for b in bs]
    np.testing.assert_allclose(np.asarray(mom), loop, rtol=1e-12)


def test_vmap_over_tail():
    x = jnp.linspace(-2.0, 2.0, 9)
    qs = jnp.array([1.5, 2.0, 3.0, 10.0])
    got = jax.vmap(lambda t: raw("q_pseudo_spike", tail=t).derivative(x))(qs)
    want = np.stack([np.asarray(sg.get("q_pseudo_spike", tail=float(t)).derivative(x))
                     for t in qs])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-14)


# ------------------------------------------------------------------------------------------
# Gaussian moments vs brute-force quadrature.
# ------------------------------------------------------------------------------------------
MEANS = (0.0, 0.3, -2.0)
VARS = (1e-6, 0.04, 1.0, 50.0)
BETAS = (0.1, 1.0, 30.0, 1e4)
CLOSED = {"triangular", "exponential", "rectangular", "gaussian", "erf", "straight_through"}


def _tolerance(shape, mean):
    if shape in CLOSED or (shape == "cauchy" and mean == 0.0):
        return 1e-10
    return 1e-8  # quadrature: sigmoid, fast_sigmoid, q_pseudo_spike, cauchy off-centre


def _check_moments(shape, q, power, means, variances, betas, dampening=1.0):
    failures, compared = [], 0
    for m in means:  # one call per mean: cauchy's closed form needs an all-zero mean
        V, B = np.meshgrid(np.asarray(variances, float), np.asarray(betas, float),
                           indexing="ij")
        s = make(shape, q, sharpness=B, dampening=dampening)
        ours = np.asarray(sg.gaussian_moment(s, m, V, power=power))
        assert ours.shape == V.shape
        for i, j in itertools.product(*map(range, V.shape)):
            v, b = V[i, j], B[i, j]
            psi = published(shape, q, sharpness=b, dampening=dampening)
            ref = brute(lambda w, psi=psi: psi(w) ** power, b, m, v)
            if ref < 1e-200:
                continue
            compared += 1
            err = abs(ours[i, j] - ref) / ref
            if not err <= _tolerance(shape, m):
                failures.append(f"mean={m} var={v:g} sharpness={b:g}: ours={ours[i, j]!r} "
                                f"brute={ref!r} rel.err={err:.2e}")
    assert compared > 0
    assert not failures, f"{shape} q={q} power={power}:\n" + "\n".join(failures)


@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("shape,q", CASES, ids=CASE_IDS)
def test_moments_subset(shape, q, power):
    """Representative subset (every shape, both powers, both regimes of width ratio)."""
    _check_moments(shape, q, power, means=(0.0, -2.0), variances=(0.04, 50.0),
                   betas=(1.0, 1e4), dampening=0.7)


@pytest.mark.slow
@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("shape,q", CASES, ids=CASE_IDS)
def test_moments_full_grid(shape, q, power):
    _check_moments(shape, q, power, MEANS, VARS, BETAS)


# ------------------------------------------------------------------------------------------
# Limits and edge cases.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("shape,q", CASES, ids=CASE_IDS)
def test_zero_variance_is_point_value(shape, q, power):
    for beta in (1.0, 3.0):
        s = make(shape, q, sharpness=beta, dampening=1.3)
        for m in (0.0, 0.3, -2.0):
            want = float(s.derivative(m)) ** power
            got = float(sg.gaussian_moment(s, m, 0.0, power=power))
            assert got == pytest.approx(want, rel=1e-12, abs=1e-300), (beta, m)


@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("shape,q", CASES, ids=CASE_IDS)
def test_moments_finite_at_extreme_variance(shape, q, power):
    # (2, 2) grids, as in test_moments_subset (eager JAX compiles per array shape)
    B = np.array([[0.1, 0.1], [1e4, 1e4]])
    s = make(shape, q, sharpness=B)
    tiny = np.array([[0.0, 1e-300], [0.0, 1e-300]])
    huge = np.full((2, 2), 1e300)
    for m in (0.0, 0.3, -2.0):  # scalar means: mean 0 takes the closed forms (cauchy)
        out = np.asarray(sg.gaussian_moment(s, m, tiny, power=power))
        out_huge = np.asarray(sg.gaussian_moment(s, m, huge, power=power))
        for o in (out, out_huge):
            assert np.all(np.isfinite(o)) and np.all(o >= 0), (m, o)
        # var = 1e-300 is var = 0 (the Gaussian is a point mass at this resolution)
        np.testing.assert_allclose(out[:, 1], out[:, 0], rtol=1e-10, atol=1e-300)
    # straight_through is 1 whatever the variance; everything else vanishes as var -> inf
    s = make(shape, q)
    big = float(sg.gaussian_moment(s, 0.0, 1e300, power=power))
    assert big == pytest.approx(1.0) if shape == "straight_through" else big < 1e-100


def test_moments_broadcast_and_dampening():
    s = sg.get("sigmoid", sharpness=2.0, dampening=3.0)
    out = sg.gaussian_moment(s, jnp.zeros((2, 1)), jnp.ones((1, 2)), power=2)
    assert out.shape == (2, 2)
    one = sg.gaussian_moment(sg.get("sigmoid", sharpness=2.0), 0.0, 1.0, power=2)
    np.testing.assert_allclose(np.asarray(out), 9.0 * float(one), rtol=1e-14)
    with pytest.raises(ValueError, match="power"):
        sg.gaussian_moment(s, 0.0, 1.0, power=3)


def test_q_pseudo_spike_tail_two_is_fast_sigmoid():
    x = jnp.linspace(-3.0, 3.0, 25)
    for beta in (0.1, 1.0, 30.0):
        q2 = sg.get("q_pseudo_spike", tail=2.0, sharpness=beta, dampening=1.7)
        fs = sg.get("fast_sigmoid", sharpness=beta, dampening=1.7)
        np.testing.assert_allclose(np.asarray(q2.derivative(x / beta)),
                                   np.asarray(fs.derivative(x / beta)), rtol=1e-14)
        M, V = np.meshgrid([0.0, 0.3, -2.0], [1e-6, 1.0, 50.0])  # one call per power
        for p in (1, 2):
            np.testing.assert_allclose(np.asarray(sg.gaussian_moment(q2, M, V, power=p)),
                                       np.asarray(sg.gaussian_moment(fs, M, V, power=p)),
                                       rtol=1e-12)
    assert float(sg.get("q_pseudo_spike").tail) == 2.0  # default tail


def _gauss_quad(fn, mean, var):
    """int fn(w) N(w; mean, var) dw by scipy.quad (split at 0 and the mean)."""
    sd = np.sqrt(var)
    pts = sorted({mean - 40 * sd, 0.0, mean, mean + 40 * sd})
    dens = lambda w: fn(w) * np.exp(-((w - mean) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)  # noqa: E731
    return sum(si.quad(dens, a, b, limit=200, epsabs=0, epsrel=1e-13)[0]
               for a, b in zip(pts[:-1], pts[1:]) if a < b)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_q_pseudo_spike_large_tail_approaches_exponential():
    """q -> inf: (1 + 2|u|/(q-1))^-q -> exp(-2|u|) with the known expansion in eps = 1/(q-1),
    -q log(1 + 2|u| eps) = -2|u| + eps d1(u) + eps^2 d2(u) + O(eps^3),
    d1 = 2u^2 - 2|u|, d2 = 2u^2 - (8/3)|u|^3.  For the moment of power p the relative
    difference to the exponential's is r(eps) = c1 eps + c2 eps^2 + O(eps^3) with
    c1 = p <d1>, c2 = p <d2> + p^2 <d1^2> / 2 (<.> = average under exp(-2p|u|) N(x; m, v)),
    computed here by scipy.quad. Tolerance: |r - c1 eps| <= 2 |c2| eps^2 (the O(eps^3) rest
    is below |c2| eps^2 for eps <= 1e-2) plus 3e-8 for the library's 1e-8 quadrature
    (q_pseudo_spike) and 1e-10 closed form (exponential)."""
    beta = 2.0
    ex = sg.get("exponential", sharpness=beta)
    for q in (1e2 + 1, 1e3 + 1, 1e4 + 1):
        eps = 1.0 / (q - 1.0)
        qs = sg.get("q_pseudo_spike", tail=q, sharpness=beta)
        for m, v, p in itertools.product((0.0, 0.3), (0.04, 1.0), (1, 2)):
            def avg(h, m=m, v=v, p=p):
                w = lambda x: np.exp(-2.0 * p * abs(beta * x))  # noqa: E731
                return (_gauss_quad(lambda x: w(x) * h(beta * x), m, v)
                        / _gauss_quad(w, m, v))
            d1 = lambda u: 2 * u * u - 2 * abs(u)  # noqa: E731
            c1 = p * avg(d1)
            c2 = p * avg(lambda u: 2 * u * u - 8.0 / 3.0 * abs(u) ** 3) + p * p / 2 * avg(
                lambda u: d1(u) ** 2)
            r = (float(sg.gaussian_moment(qs, m, v, power=p))
                 / float(sg.gaussian_moment(ex, m, v, power=p)) - 1.0)
            assert abs(r - c1 * eps) <= 2 * abs(c2) * eps**2 + 3e-8, (q, m, v, p, r, c1 * eps)


# ------------------------------------------------------------------------------------------
# Bad input.
# ------------------------------------------------------------------------------------------
def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as e:
        sg.get("no_such_shape")
    for name in sg.SHAPES:
        assert name in str(e.value)
    with pytest.raises(ValueError):
        sg.get(3.0)


def test_aliases_and_passthrough():
    assert sg.get("SuperSpike").shape == "fast_sigmoid"
    assert sg.get("atan").shape == "cauchy"
    s = sg.get("gaussian", sharpness=2.0)
    assert sg.get(s) is s


@pytest.mark.parametrize("shape", sg.SHAPES)
@pytest.mark.parametrize("param,bad", [("sharpness", 0.0), ("sharpness", -1.0),
                                       ("sharpness", np.nan), ("sharpness", np.inf),
                                       ("dampening", 0.0), ("dampening", -2.0),
                                       ("sharpness", np.array([1.0, -1.0]))])
def test_nonpositive_parameters(shape, param, bad):
    with pytest.raises(ValueError, match=param):
        sg.get(shape, **{param: bad})


@pytest.mark.parametrize("bad", [1.0, 0.5, -3.0, np.nan])
def test_bad_tail(bad):
    with pytest.raises(ValueError, match="tail"):
        sg.get("q_pseudo_spike", tail=bad)


@pytest.mark.parametrize("shape", [s for s in sg.SHAPES if s != "q_pseudo_spike"])
def test_tail_only_for_q_pseudo_spike(shape):
    with pytest.raises(ValueError, match="tail"):
        sg.get(shape, tail=3.0)
