"""Analytic kernels vs Monte Carlo over wide finite networks (independent route).

Statistic: z = (MC mean - analytic) / MC standard error for every kernel entry; with K
entries compared per case, a Bonferroni bound at family-wise level 1e-3 gives
|z| < Phi^-1(1 - 5e-4 / K) ~ 4.3-4.6. Biases not in the standard error are kept far below it:
finite width (O(1/width), width 1000-2000) and the smoothing of the Dirac derivative of
jump activations (O(jump_width^2) = 4e-4 for jump_width 0.02). The exception is the SG-NTK at
degenerate pairs (the diagonal, x' = x): there v = u exactly, E[psi'(v) | u] = psi'(u) has the
surrogate's cusp at u = 0 (fast sigmoid, exponential, triangular), and smoothing the Dirac
delta over a width eps biases the Monte-Carlo value by O(eps * slope of psi' at 0) -- up to
6 % for the fast sigmoid (measured: z of 4.5-6.8 on diagonal entries only). So the SG-NTK's
diagonal is checked against its closed form instead (test_sgntk_diagonal_closed_form), and the
Monte-Carlo comparison of the SG-NTK uses the off-diagonal (asymmetric) entries.
"""
import jax
import numpy as np
import pytest
from scipy.stats import norm

from sgntk import kernels as K
from sgntk import monte_carlo as MC
from sgntk import surrogates as S

# Inputs of unequal norms: the SG-NTK is asymmetric here.
X = np.array([[0.5, -0.2, 0.3], [1.0, 0.4, -0.8], [-1.6, 1.1, 0.9], [0.2, 0.9, 1.3]])


def z_threshold(n_compared, family_level=1e-3):
    return norm.ppf(1 - family_level / (2 * n_compared))


def check(activation, surrogate, depth, *, width, n_networks, names=("nngp", "sgntk", "sg_gram"),
          seed=0, **kw):
    mkw = {"m": kw["m"]} if "m" in kw else {}
    an = K.mlp(X, depth=depth, activation=activation, surrogate=surrogate, sigma_b=0.2,
               which=names, **mkw)
    mc = MC.mlp_kernels(X, depth=depth, activation=activation, surrogate=surrogate, sigma_b=0.2,
                        width=width, n_networks=n_networks, seed=seed, progress=False, **kw)
    off_diagonal = ~np.eye(X.shape[0], dtype=bool)
    zmax = {}
    for n in names:
        z = np.abs((np.asarray(getattr(mc.mean, n)) - np.asarray(getattr(an, n)))
                   / np.asarray(getattr(mc.stderr, n)))
        zmax[n] = float(np.max(z[off_diagonal] if n == "sgntk" else z))
    bound = z_threshold(len(names) * X.shape[0] ** 2)
    assert max(zmax.values()) < bound, (zmax, bound)
    return zmax


FAST = [("sign", "erf", 2), ("step", "fast_sigmoid", 1),
        pytest.param("erf", "sigmoid", 2, marks=pytest.mark.slow),
        pytest.param("sign", "triangular", 2, marks=pytest.mark.slow)]   # also in FULL


@pytest.mark.parametrize("activation, surrogate, depth", FAST)
def test_analytic_matches_monte_carlo(activation, surrogate, depth):
    kw = dict(m=2.0) if activation == "erf" else dict(jump_width=0.02)
    check(activation, surrogate, depth, width=1000, n_networks=64, **kw)


FULL = [(a, s, d) for a in ("sign", "step") for s in ("erf", "fast_sigmoid", "triangular",
                                                       "cauchy", "exponential")
        for d in (1, 2, 3)] + [("erf", s, d) for s in ("fast_sigmoid", "gaussian")
                                for d in (1, 3)]


@pytest.mark.slow
@pytest.mark.parametrize("activation, surrogate, depth", FULL)
def test_analytic_matches_monte_carlo_full_grid(activation, surrogate, depth):
    kw = dict(m=2.0) if activation == "erf" else dict(jump_width=0.02)
    check(activation, surrogate, depth, width=2000, n_networks=128, seed=1, **kw)


def test_monte_carlo_detects_a_wrong_kernel():
    # Power of the statistic at this size: relative standard errors are 3-13 % per entry
    # (measured), so a kernel 15 % off is rejected. The precise checks of the same formulas
    # are the brute-force quadrature tests in test_expectations.py.
    an = K.mlp(X, depth=2, activation="sign", surrogate="erf", sigma_b=0.2, which=("sgntk",))
    mc = MC.mlp_kernels(X, depth=2, activation="sign", surrogate="erf", sigma_b=0.2, width=1000,
                        n_networks=64, jump_width=0.02, progress=False)
    z = (np.asarray(mc.mean.sgntk) - 1.15 * np.asarray(an.sgntk)) / np.asarray(mc.stderr.sgntk)
    assert np.max(np.abs(z)) > z_threshold(16)


@pytest.mark.parametrize("activation", ["sign", "step"])
@pytest.mark.parametrize("shape", ["fast_sigmoid", "exponential", "triangular", "erf"])
def test_sgntk_diagonal_closed_form(activation, shape):
    # On the diagonal v = u, so E[c delta(u) psi'(u)] = c psi'(0) / sqrt(2 pi a): the recursion
    # I_{l+1} = S_{l+1} + I_l sw^2 c gamma / sqrt(2 pi a_l) with a_l the diagonal NNGP.
    sur = S.get(shape, sharpness=2.0, dampening=0.7)
    c, sb = (2.0, 1.0)[activation == "step"], 0.2
    k = K.mlp(X, depth=3, activation=activation, surrogate=sur, sigma_b=sb, which=("sgntk",))
    with jax.enable_x64(True):
        peak = float(sur.derivative(0.0))
    a = np.sum(X * X, 1) / X.shape[1] + sb**2
    i = a.copy()
    for _ in range(3):
        sdot = c * peak / np.sqrt(2 * np.pi * a)
        a = (1.0 if activation == "sign" else 0.5) + sb**2
        i = a + i * sdot
    np.testing.assert_allclose(np.diag(np.asarray(k.sgntk)), i, rtol=1e-12)


def test_estimate_batch_larger_than_sample_and_ragged_tail():
    """batch_size > n_samples (was all-NaN) and a ragged last batch give the exact sample mean
    and standard error of the same keys computed directly."""
    import jax
    import jax.numpy as jnp

    from sgntk import monte_carlo
    key = jax.random.PRNGKey(0)
    f = lambda k: jax.random.normal(k, (3,))  # noqa: E731
    draws = jax.vmap(f)(jax.random.split(key, 5))
    for batch in (16, 2, 5):
        est = monte_carlo.estimate(f, key, 5, batch_size=batch)
        np.testing.assert_allclose(est.mean, jnp.mean(draws, 0), rtol=1e-6)
        np.testing.assert_allclose(est.stderr, jnp.std(draws, 0, ddof=1) / np.sqrt(5), rtol=1e-5)
