"""The small numerical primitives behind the fast quadrature routes (sgntk._quadrature):
each against the library routine it replaces, over the whole range it is used on."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from sgntk import _quadrature as Q


def test_fast_log_matches_log_over_the_normal_float64_range():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        v = np.concatenate([np.exp(rng.uniform(-700, 700, 20000)), rng.uniform(0.5, 2.0, 20000),
                            [1.0, 2.0, 0.5, np.sqrt(0.5), np.nextafter(np.sqrt(0.5), 1), 2.3e-308]])
        got = np.asarray(Q.fast_log(jnp.asarray(v)))
        want = np.log(v)
        # |error| < 2e-16 |log v| + 1.2e-16 (docstring), i.e. a few ulp of the result
        assert np.all(np.abs(got - want) <= 4e-16 * np.abs(want) + 2.3e-16)
        d = jax.vmap(jax.grad(Q.fast_log))(jnp.asarray([0.3, 1.0, 7.0, 1e-200]))
        np.testing.assert_allclose(np.asarray(d), 1 / np.array([0.3, 1.0, 7.0, 1e-200]), rtol=5e-14)  # ~100 ulp: derivative of the series


def test_norm_cdf_and_interval_probability_match_scipy():
    with jax.enable_x64(True):
        z = np.linspace(-37.0, 37.0, 40001)
        got = np.asarray(Q.norm_cdf(jnp.asarray(z)))
        want = special.ndtr(z)
        assert np.max(np.abs(got / want - 1)) < 5e-13          # relative, both tails
        za = np.random.default_rng(1).uniform(-30, 30, 5000)
        zb = za + np.random.default_rng(2).exponential(2.0, 5000)
        p = np.asarray(Q._interval_prob(jnp.asarray(za), jnp.asarray(zb)))
        # reference: the difference taken in the tail where it keeps precision
        ref = np.where(za > 0, special.ndtr(-za) - special.ndtr(-zb), special.ndtr(zb) - special.ndtr(za))
        ok = ref > 1e-300
        assert np.max(np.abs(p[ok] / ref[ok] - 1)) < 1e-12


@pytest.mark.parametrize("n", list(range(1, 26)))
def test_sorting_network_sorts_with_ties(n):
    with jax.enable_x64(True):
        x = np.random.default_rng(n).normal(size=(n, 300))
        x[:, :100] = np.round(x[:, :100])                     # ties
        x[:, 100:120] = 0.5                                    # all equal
        got = np.stack(Q.sorting_network([jnp.asarray(r) for r in x]))
        np.testing.assert_array_equal(got, np.sort(x, axis=0))


def test_map_in_batches_equals_direct_call_and_keeps_cond_a_branch():
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(3).normal(size=(7, 13)))
        f = lambda a, b: jnp.sin(a) * b + jax.lax.cond(jnp.any(a > 10.0), lambda: 1.0, lambda: 0.0)
        got = Q.map_in_batches(f, (x, 2.0 * x), 8)            # 91 elements: 12 batches, padded
        np.testing.assert_array_equal(np.asarray(got), np.asarray(jnp.sin(x) * 2.0 * x))
        # the function receives whole batches, so jnp.any sees the batch (not one element)
        seen = []
        Q.map_in_batches(lambda a: (seen.append(a.shape), a)[1], (x,), 8)
        assert seen == [(8,)]


def test_erfcx_matches_scipy_including_jax_zero_window():
    """JAX 0.10.2's float64 erfcx is 0 on x in [26.5433, 26.6417]; ours is not."""
    with jax.enable_x64(True):
        x = np.concatenate([np.linspace(-20, 100, 200001), np.linspace(26.5, 26.7, 2001),
                            np.exp(np.linspace(0, 600, 2001))])
        got = np.asarray(Q.erfcx(jnp.asarray(x)))
        assert np.max(np.abs(got / special.erfcx(x) - 1)) < 1e-14
        # the exponential surrogate's centred moment there, against scipy quadrature
        from scipy import integrate
        from sgntk import surrogates as S
        sigma = 26.6 * np.sqrt(2.0) / 2.0                    # k sigma / sqrt 2 = 26.6, k = 2
        want = integrate.quad(lambda u: np.exp(-2 * abs(u) - u**2 / (2 * sigma**2)), -np.inf, np.inf,
                              epsabs=0, epsrel=1e-13)[0] / np.sqrt(2 * np.pi * sigma**2)
        got = float(S.gaussian_moment(S.get("exponential"), 0.0, sigma**2))
        assert abs(got / want - 1) < 1e-10


def test_erf_fast_and_sin_poly_match_scipy():
    """erf_fast (series below 0.5, 1 - erfc beyond) against scipy's erf from 1e-300 to 30 and
    across the switch; finite derivatives up to 1e200; sin_poly on |x| <= asin(0.925)."""
    with jax.enable_x64(True):
        x = np.concatenate([np.logspace(-300, 1.5, 4001), np.linspace(0.4999, 0.5001, 2001),
                            [0.0, np.inf]])
        x = np.concatenate([x, -x])
        got = np.asarray(jax.jit(Q.erf_fast)(jnp.asarray(x)))
        want = special.erf(x)
        assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-300)) < 1e-15
        d = jax.jit(jax.vmap(jax.grad(Q.erf_fast)))(jnp.asarray([0.0, 0.3, 0.7, 40.0, 1e200]))
        np.testing.assert_allclose(np.asarray(d)[:3], 2 / np.sqrt(np.pi) * np.exp(-np.array([0, .09, .49])),
                                   rtol=1e-14)
        assert np.all(np.asarray(d)[3:] == 0.0)
        t = np.linspace(-1.19, 1.19, 10001)
        np.testing.assert_allclose(np.asarray(Q.sin_poly(jnp.asarray(t))), np.sin(t), rtol=4e-16, atol=1e-300)


@pytest.mark.parametrize("n", [1, 1000, 1024, 5000])
def test_masked_positions_equal_nonzero(n):
    rng = np.random.default_rng(n)
    for share in (0.0, 0.01, 0.5, 1.0):
        mask = jnp.asarray(rng.uniform(size=n) < share)
        size = n + 77
        want = np.asarray(jnp.nonzero(mask, size=size, fill_value=n)[0])
        np.testing.assert_array_equal(np.asarray(jax.jit(Q.masked_positions, static_argnums=1)(mask, size)), want)


@pytest.mark.parametrize("share", [0.0, 0.003, 0.3, 1.0])
def test_patch_where_equals_where_with_gradients(share):
    """patch_where (gather the masked elements in chunks, scan over the non-empty ones) gives
    where(mask, fn, base) and its gradient, for no, few, many and all masked elements."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        n = 5000                                               # 3 chunks of 2048 (last padded)
        x = jnp.asarray(rng.uniform(0.1, 2.0, n))
        mask = jnp.asarray(rng.uniform(size=n) < share)
        fn = lambda u, v: jnp.exp(jnp.sin(u)) * v             # noqa: E731

        def patched(s):
            return Q.patch_where(mask, jnp.cos(s * x), fn, (s * x, x))

        def direct(s):
            return jnp.where(mask, fn(s * x, x), jnp.cos(s * x))

        np.testing.assert_array_equal(np.asarray(jax.jit(patched)(1.3)), np.asarray(direct(1.3)))
        w = jnp.asarray(rng.uniform(size=n))
        g1 = jax.jit(jax.grad(lambda s: jnp.sum(w * patched(s))))(1.3)
        g2 = jax.grad(lambda s: jnp.sum(w * direct(s)))(1.3)
        np.testing.assert_allclose(float(g1), float(g2), rtol=1e-13)
        if share not in (0.003, 1.0):
            return
        # the forward-only variant (a loop over the non-empty chunks only): values, jvp
        fwd = lambda s: Q.patch_where(mask, jnp.cos(s * x), fn, (s * x, x),   # noqa: E731
                                      differentiable=False)
        np.testing.assert_array_equal(np.asarray(jax.jit(fwd)(1.3)), np.asarray(direct(1.3)))
        t1 = jax.jit(lambda s: jax.jvp(fwd, (s,), (1.0,))[1])(1.3)
        t2 = jax.jvp(direct, (1.3,), (1.0,))[1]
        np.testing.assert_allclose(np.asarray(t1), np.asarray(t2), rtol=1e-13)
