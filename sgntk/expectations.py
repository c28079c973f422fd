"""Bivariate Gaussian expectations that drive the infinite-width kernel recursions.

For ``(u, v) ~ N(0, [[a, r], [r, b]])`` -- ``u`` the pre-activation at ``x`` (variance ``a``),
``v`` at ``x'`` (variance ``b``), covariance ``r`` -- the layer maps of an MLP need

* ``E[phi(u) phi(v)]``            (NNGP map),
* ``E[phi'(u) phi'(v)]``          (naive NTK: true derivative on both sides),
* ``E[phi'(u) psi'(v)]``          (SG-NTK: true derivative at x, surrogate at x'),
* ``E[psi'(u) psi'(v)]``          (surrogate Gram J~ J~^T).

Activations (:data:`ACTIVATIONS`): ``sign`` (jump c = 2), ``step`` (Heaviside, jump c = 1),
``erf`` (``erf(m z)``), or any smooth callable (2-D trapezoid rule in standardised
coordinates: accurate when phi varies on scales above ~0.3 pre-activation std). Closed forms, from
Eilers, Memmesheimer & Goedeke (NeurIPS 2024), Sec. 3 and App. A (re-derived here; each is
checked against brute-force quadrature in ``tests/test_expectations.py``):

* sign: ``E[sgn u sgn v] = (2/pi) arcsin(rho)``; step: ``1/4 + arcsin(rho)/(2 pi)``.
* erf_m: ``(2/pi) arcsin(2 m^2 r / sqrt((1 + 2 m^2 a)(1 + 2 m^2 b)))``.
* jump, mixed: ``E[c delta(u) psi'(v)] = c / sqrt(2 pi a) * E_{N(0, b - r^2/a)}[psi']``.
* erf_m, mixed: ``(2m/sqrt(pi)) (1 + 2 m^2 a)^(-1/2) E_{N(0, b')}[psi']`` with
  ``b' = (b + 2 m^2 (a b - r^2)) / (1 + 2 m^2 a)`` (integrate ``u | v`` analytically; the
  m -> inf limit is the jump formula with c = 2).
* erf_m, true-true: ``(4 m^2/pi) / sqrt((1 + 2m^2 a)(1 + 2m^2 b) - 4 m^4 r^2)``.
* jump, true-true: ``c^2 / (2 pi sqrt(a b - r^2))`` -- ``inf`` where ``a b = r^2`` (the
  diagonal): the naive NTK of a jump activation diverges there.

All functions are elementwise over broadcast ``a, b, r`` and jit/vmap-safe.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from . import _quadrature
from .surrogates import Surrogate, gaussian_moment

__all__ = ["ACTIVATIONS", "JUMPS", "check_activation", "second_moment", "nngp_expectation",
           "true_derivative_expectation", "mixed_derivative_expectation",
           "surrogate_expectation"]

JUMPS = {"sign": 2.0, "step": 1.0}
ACTIVATIONS = ("sign", "step", "erf")
# Standard-normal rule for smooth callables: the trapezoid rule on [-10, 10] with step 0.1
# (exponentially convergent for Gaussian-weighted analytic integrands; unlike Gauss-Hermite
# it stays accurate for steep activations such as erf(3 z)).
_Z_NODES = np.linspace(-10.0, 10.0, 201)
_Z_WEIGHTS = np.exp(-0.5 * _Z_NODES**2) * 0.1 / np.sqrt(2.0 * np.pi)


def check_activation(activation):
    """Return the canonical activation (name or callable); ValueError lists valid names."""
    if callable(activation):
        return activation
    if isinstance(activation, str) and activation.lower() in ACTIVATIONS:
        return activation.lower()
    raise ValueError(f"unknown activation {activation!r}; valid names: {', '.join(ACTIVATIONS)} "
                     "(or a smooth callable phi(z), integrated by quadrature)")


def _det(a, b, r):
    """a b - r^2, snapped to 0 at rounding level (the diagonal); an error of at most ~1e-7 in
    the kernels of pairs closer than 1e-7 rad. One definition: :func:`_quadrature.snapped_det`."""
    return _quadrature.snapped_det(a, b, r)


def _arcsin_corr(a, b, r):
    """arcsin(r / sqrt(a b)) as arctan2(r, sqrt(a b - r^2)): exact at rho = +-1, no clipping."""
    return jnp.arctan2(r, _quadrature.safe_sqrt(_det(a, b, r)))


def _cond_var(a, b, r):
    """b - r^2/a (0 on the diagonal)."""
    return _det(a, b, r) / jnp.maximum(a, 1e-300)


# --------------------------------------------------------------------------------------
# Generic smooth activations: trapezoid rule in the Cholesky coordinates of (u, v).
# --------------------------------------------------------------------------------------
def _per_pair(fn, *args, batch_size):
    """``fn`` (elementwise over broadcast array arguments, with a large per-element working
    set) applied in batches of ``batch_size`` elements with ``jax.lax.map``: the working set
    is ``batch_size`` elements' worth whatever the tile size."""
    args = jnp.broadcast_arrays(*(jnp.asarray(x, dtype=float) for x in args))
    shape = args[0].shape
    flat = [x.reshape(-1) for x in args]
    out = jax.lax.map(lambda xs: fn(*xs), flat, batch_size=batch_size)
    return out.reshape(shape)


def _gh2(f, g, a, b, r):
    """E[f(u) g(v)] by a 201 x 201 trapezoid rule in z; u = sqrt(a) z1, v = kappa z1 + s z2.

    4e4 evaluations per pair, mapped over batches of 64 pairs (bounded memory)."""
    return _per_pair(lambda a_, b_, r_: _gh2_elementwise(f, g, a_, b_, r_), a, b, r, batch_size=64)


def _gh2_elementwise(f, g, a, b, r):
    sa = jnp.sqrt(a)[..., None, None]
    kap = (r / jnp.sqrt(jnp.maximum(a, 1e-300)))[..., None, None]
    s = _quadrature.safe_sqrt(_cond_var(a, b, r))[..., None, None]
    z1, z2 = _Z_NODES[:, None], _Z_NODES[None, :]
    w = _Z_WEIGHTS[:, None] * _Z_WEIGHTS[None, :]
    return jnp.sum(f(sa * z1) * g(kap * z1 + s * z2) * w, axis=(-2, -1))


def _deriv(fn):
    return jnp.vectorize(jax.grad(fn))


# --------------------------------------------------------------------------------------
# Layer maps.
# --------------------------------------------------------------------------------------
def second_moment(activation, a, m=1.0):
    """E[phi(u)^2], u ~ N(0, a) (the diagonal of the NNGP map)."""
    # Jumps: the second moment does not depend on a; returned as a 0-d array so the next
    # layer's maps can see (statically) that every input has the same variance.
    if activation == "sign":
        return jnp.ones((), dtype=jnp.result_type(a, float))
    if activation == "step":
        return jnp.full((), 0.5, dtype=jnp.result_type(a, float))
    if activation == "erf":
        t = 2.0 * m**2 * a
        return (2.0 / jnp.pi) * jnp.arcsin(t / (1.0 + t))
    return _gh2(lambda u: activation(u) ** 2, lambda v: jnp.ones_like(v), a, a, a)


def nngp_expectation(activation, a, b, r, m=1.0):
    """E[phi(u) phi(v)] (module docstring for the closed forms)."""
    if activation == "sign":
        return (2.0 / jnp.pi) * _arcsin_corr(a, b, r)
    if activation == "step":
        return 0.25 + _arcsin_corr(a, b, r) / (2.0 * jnp.pi)
    if activation == "erf":
        m2 = 2.0 * m**2
        arg = m2 * r / jnp.sqrt((1.0 + m2 * a) * (1.0 + m2 * b))
        return (2.0 / jnp.pi) * jnp.arcsin(jnp.clip(arg, -1.0, 1.0))
    return _gh2(activation, activation, a, b, r)


def true_derivative_expectation(activation, a, b, r, m=1.0):
    """E[phi'(u) phi'(v)]; ``inf`` for jump activations where ``a b = r^2``."""
    if activation in JUMPS:
        c = JUMPS[activation]
        det = _det(a, b, r)
        degenerate = det <= 0
        return jnp.where(degenerate, jnp.inf,
                         c**2 / (2.0 * jnp.pi * jnp.sqrt(jnp.where(degenerate, 1.0, det))))
    if activation == "erf":
        m2 = 2.0 * m**2
        det = (1.0 + m2 * a) * (1.0 + m2 * b) - (m2 * r) ** 2
        return (4.0 * m**2 / jnp.pi) / jnp.sqrt(det)
    d = _deriv(activation)
    return _gh2(d, d, a, b, r)


def mixed_derivative_expectation(activation, a, b, r, surrogate: Surrogate, m=1.0):
    """E[phi'(u) psi'(v)]: true derivative at x (variance a), surrogate at x' (variance b)."""
    if activation in JUMPS:
        c = JUMPS[activation]
        moment = gaussian_moment(surrogate, 0.0, _cond_var(a, b, r))
        return c / jnp.sqrt(2.0 * jnp.pi * a) * moment
    if activation == "erf":
        m2 = 2.0 * m**2
        b_eff = jnp.maximum(b + m2 * (a * b - r**2), 0.0) / (1.0 + m2 * a)
        return (2.0 * m / jnp.sqrt(jnp.pi)) / jnp.sqrt(1.0 + m2 * a) * gaussian_moment(
            surrogate, 0.0, b_eff)
    # Smooth callable: u | v ~ N(r v / b, a - r^2 / b) by the trapezoid rule, v by the
    # multi-scale rule (psi' may be sharp).
    d = _deriv(activation)
    kap = r / jnp.maximum(b, 1e-300)
    s = _quadrature.safe_sqrt(_cond_var(b, a, r))

    def one(kap_, s_, b_):
        def integrand(v):
            inner = jnp.sum(d(kap_[..., None, None, None] * v[..., None]
                              + s_[..., None, None, None] * _Z_NODES) * _Z_WEIGHTS, axis=-1)
            return surrogate.derivative(v) * inner
        return _quadrature.gauss_expectation(integrand, jnp.zeros_like(b_), b_)

    # ~4.6e5 evaluations per pair: mapped over batches of 8 pairs (bounded memory).
    return _per_pair(one, kap, s, b, batch_size=8)


def surrogate_expectation(a, b, r, surrogate: Surrogate):
    """E[psi'(u) psi'(v)] (the layer map of the surrogate Gram J~ J~^T).

    One-level rules only, in bounded memory, for every shape (normalised units
    ``u -> sharpness * u``; :mod:`sgntk._quadrature` has the derivations):

    * ``gaussian``, ``erf``: ``A^2 s^2 / sqrt((s^2 + a)(s^2 + b) - r^2)``; straight-through:
      ``gamma^2`` (closed forms, O(1) per pair).
    * Gaussian scale mixtures (exponential, fast_sigmoid, q_pseudo_spike, cauchy, sigmoid):
      ``int mu(ds) sqrt(s/(s+a)) G((b s + a b - r^2)/(s + a))`` with ``G`` the centred moment
      (a table indexed by the float's exponent and mantissa, no logarithm), 32 (sigmoid) to 89
      (q_pseudo_spike with q outside [1.25, 2]; 52 inside) lookups per pair for normalised
      variances in [1e-6, 1e3] (up to 218 outside); with per-input variances (the first layer)
      the per-(input, node) factors are computed once, outside the pair loop (then symmetric in
      the two inputs to ~1e-9 relative, not bitwise) (:func:`sgntk._quadrature.gsm_pair_expectation`).
      Measured ~5 ns per lookup (one core of the 2-core test machine).
    * triangular, rectangular: for ``|rho| <= 0.925`` a closed form from Plackett's identity,
      ``erf`` products plus a 13-node integral over ``tan(asin(rho)/2)`` (13 ``exp`` + 13 / 39
      ``expm1`` and one division per node and pair); the other pairs (the diagonal, nearly
      parallel inputs; ~1 % of random 5-d inputs) ``E_u[g(u) H(kappa u, c)]`` with the
      conditional moment ``H`` in closed form, 15-18 pieces x 8 Gauss-Legendre nodes (measured
      10-15x the cost of a closed-form pair), computed for those pairs only
      (:func:`sgntk._quadrature.piecewise_pair_expectation`; its derivatives by a
      ``custom_jvp`` through the compact form of the same formulas).
    * When ``a`` and ``b`` are scalars (0-d; every layer after a ``sign``/``step`` activation,
      whose output variance does not depend on the input), ``F`` is tabulated once in
      ``-log(1 - |rho|)`` (4000 nodes) and each pair costs one lookup.

    Accuracy 1e-8 relative or better against brute-force ``scipy`` quadrature for
    normalised variances 1e-4 to 1e6 and correlations up to 1 - 1e-12
    (``tests/test_surrogate_gram.py``). First and second derivatives (``grad``,
    ``jacfwd``, ``hessian``, ``vmap`` over parameter grids) in every argument and surrogate
    parameter are finite, including on the diagonal (``a b = r^2``), and agree with central
    differences (``tests/test_kernel_gradients.py``).
    """
    shape = surrogate.shape
    gam = jnp.asarray(surrogate.dampening)
    beta = jnp.asarray(surrogate.sharpness)
    if shape == "straight_through":
        return gam**2 * jnp.ones_like(a + b + r)
    if shape in ("gaussian", "erf"):
        amp = gam if shape == "gaussian" else gam * 2.0 / jnp.sqrt(jnp.pi)
        s2 = 1.0 / (2.0 * jnp.pi * beta**2) if shape == "gaussian" else 1.0 / (2.0 * beta**2)
        det = (s2 + a) * (s2 + b) - r**2
        return amp**2 * s2 / jnp.sqrt(det)
    beta2 = beta**2
    if shape in _quadrature.GSM_SHAPES:
        tail = jnp.asarray(surrogate.tail, dtype=float)
        prof = surrogate.profile
        coef = _quadrature.octave_table(prof)   # built once per call (3888 moments)

        def pair(a_, b_, r_):
            return _quadrature.gsm_pair_expectation(coef, shape, tail, a_, b_, r_)
    else:
        def pair(a_, b_, r_):
            return _quadrature.piecewise_pair_expectation(shape, a_, b_, r_)
    a_n, b_n, r_n = beta2 * jnp.asarray(a), beta2 * jnp.asarray(b), beta2 * jnp.asarray(r)
    if jnp.ndim(a_n) == 0 and jnp.ndim(b_n) == 0 and jnp.size(r_n) > 1:
        table = _quadrature.correlation_table(pair, a_n, b_n)
        out = _quadrature.correlation_lookup(table, a_n, b_n, r_n)
    else:
        out = pair(a_n, b_n, r_n)
    return gam**2 * out
