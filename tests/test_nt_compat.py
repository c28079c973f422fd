"""neural-tangents 0.6.5 on current JAX through :mod:`sgntk.nt_compat`.

Tolerances:
* analytic vs analytic (same formulas, different code paths) in float64: 1e-10;
  in float32: 1e-5 relative (a few hundred ulps of ~1e-7).
* empirical NTK implementations 1/2/3 compute the same finite sums in different
  orders: 1e-10 (float64), 1e-4 relative (float32).
* wide/Monte-Carlo vs analytic: for a one-hidden-layer net (Dense-phi-Dense, NTK
  parameterisation) the empirical NTK/NNGP are *unbiased* estimators of the analytic
  ones (first-layer pre-activations are exactly Gaussian; readout weights are
  independent with unit variance).  So mean over K samples differs from the analytic
  kernel by ~ std/sqrt(K); we assert |mean - analytic| < 5 * std_hat/sqrt(K) + 1e-6
  (a 5-sigma z-test, false-failure probability ~1e-6 per entry; seeds are fixed anyway).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from sgntk import nt_compat

if not nt_compat.available():   # the README's test command installs it: fail, never skip
    raise ImportError(f"neural-tangents is needed by these tests ({nt_compat.INSTALL_HINT})")

DTYPES = [pytest.param(True, id="float64"), pytest.param(False, id="float32")]
DTYPES_FAST64_SLOW = [pytest.param(True, id="float64", marks=pytest.mark.slow),
                      pytest.param(False, id="float32")]


@pytest.fixture(scope="module")
def nt():
    return nt_compat.import_neural_tangents()


def _tol(x64, f64=1e-10, f32=1e-4):
    return f64 if x64 else f32


def _data(n1=3, n2=2, d=4):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return jax.random.normal(k1, (n1, d)), jax.random.normal(k2, (n2, d))


def _net(nt, width=512):
    stax = nt.stax
    return stax.serial(stax.Dense(width, W_std=1., b_std=0.1), stax.Erf(),
                       stax.Dense(1))


# ----------------------------------------------------------------- module hygiene
def test_import_is_lazy_and_config_free():
    code = (
        "import sys, jax, jax.core, jax.interpreters.ad as ad\n"
        "x64 = jax.config.jax_enable_x64\n"
        "had = [hasattr(jax.core, 'Jaxpr'), hasattr(ad, 'zeros_like_p'), 'jax.util' in sys.modules]\n"
        "import sgntk.nt_compat as c\n"
        "assert 'neural_tangents' not in sys.modules\n"
        "assert jax.config.jax_enable_x64 == x64\n"
        "c.available()\n"
        "assert 'neural_tangents' not in sys.modules\n"
        "nt = c.import_neural_tangents()\n"
        "assert c.import_neural_tangents() is nt\n"
        "assert jax.config.jax_enable_x64 == x64\n"
        # import-time shims are removed again; TF is never imported
        "assert had == [hasattr(jax.core, 'Jaxpr'), hasattr(ad, 'zeros_like_p'),\n"
        "               'jax.util' in sys.modules], had\n"
        "assert 'tensorflow' not in sys.modules\n"
        "try:\n"
        "    nt.experimental.empirical_ntk_fn_tf(None)\n"
        "except ImportError as e:\n"
        "    assert 'TensorFlow' in str(e)\n"
        "else:\n"
        "    raise AssertionError('stub did not raise')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_package_message(monkeypatch):
    monkeypatch.setattr(nt_compat, "_NT", None)
    monkeypatch.setattr(nt_compat, "available", lambda: False)
    with pytest.raises(ImportError, match="pip install --no-deps neural-tangents frozendict"):
        nt_compat.import_neural_tangents()


# ------------------------------------------------------------------ 1. analytic
@pytest.mark.parametrize("x64", DTYPES)
def test_analytic_kernels(nt, x64):
    stax = nt.stax
    with jax.enable_x64(x64):
        x1, x2 = _data()
        _, _, kernel_fn = _net(nt)
        k = kernel_fn(x1, x2, ("nngp", "ntk"))
        assert k.nngp.shape == k.ntk.shape == (3, 2)
        assert k.ntk.dtype == (jnp.float64 if x64 else jnp.float32)
        assert np.all(np.isfinite(k.ntk))
        # Closed form (1 hidden erf layer, readout Dense(1): W_std=1, no bias).
        x1_, x2_ = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
        d = x1_.shape[1]
        s12 = x1_ @ x2_.T / d + 0.01
        s11 = (x1_ ** 2).sum(1)[:, None] / d + 0.01
        s22 = (x2_ ** 2).sum(1)[None, :] / d + 0.01
        den = (1 + 2 * s11) * (1 + 2 * s22)
        nngp = 2 / np.pi * np.arcsin(2 * s12 / np.sqrt(den))
        dnngp = 4 / np.pi / np.sqrt(den - 4 * s12 ** 2)
        ntk = nngp + dnngp * s12  # readout term + first layer term
        rtol = 1e-10 if x64 else 1e-5
        np.testing.assert_allclose(k.nngp, nngp, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(k.ntk, ntk, rtol=rtol, atol=rtol)

        # Sign: nngp = (2/pi) arcsin(rho) for the (bias-free) pre-activations.
        _, _, kf = stax.serial(stax.Dense(8), stax.Sign())
        nngp_sign = kf(x1, x2, "nngp")
        c12 = x1_ @ x2_.T / d
        rho = c12 / np.sqrt((x1_ ** 2).sum(1)[:, None] / d * (x2_ ** 2).sum(1)[None, :] / d)
        np.testing.assert_allclose(nngp_sign, 2 / np.pi * np.arcsin(rho),
                                   rtol=rtol, atol=rtol)

        # Relu: arc-cosine kernel of degree 1.
        _, _, kf = stax.serial(stax.Dense(8), stax.Relu())
        theta = np.arccos(np.clip(rho, -1, 1))
        n1 = np.sqrt((x1_ ** 2).sum(1)[:, None] / d * (x2_ ** 2).sum(1)[None, :] / d)
        relu = n1 / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
        np.testing.assert_allclose(kf(x1, x2, "nngp"), relu, rtol=rtol, atol=rtol)

        # Conv / Flatten smoke test on tiny images.
        _, _, kf = stax.serial(stax.Conv(4, (2, 2), padding="SAME"), stax.Relu(),
                               stax.Flatten(), stax.Dense(1))
        imgs = jax.random.normal(jax.random.PRNGKey(3), (2, 4, 4, 2))
        kc = kf(imgs, None, ("nngp", "ntk"))
        assert kc.ntk.shape == (2, 2)
        assert np.all(np.isfinite(kc.ntk))
        np.testing.assert_allclose(kc.ntk, kc.ntk.T, rtol=1e-6)
        assert np.all(np.linalg.eigvalsh(np.asarray(kc.ntk, np.float64)) > 0)


# -------------------------------------------------------------- 2. empirical NTK
@pytest.mark.slow
@pytest.mark.parametrize("x64", DTYPES)
def test_empirical_ntk_implementations_agree(nt, x64):
    with jax.enable_x64(x64):
        x1, x2 = _data()
        init_fn, apply_fn, _ = _net(nt)
        _, params = init_fn(jax.random.PRNGKey(2), x1.shape)
        ks = {}
        for impl in (1, 2, 3):
            fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=impl)
            ks[impl] = np.asarray(fn(x1, x2, params))
            assert ks[impl].shape == (3, 2, 1, 1)
        # jit of the structured-derivatives path too
        fn3 = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=3))
        ks["3jit"] = np.asarray(fn3(x1, x2, params))
        scale = np.abs(ks[1]).max()
        for impl in (2, 3, "3jit"):
            np.testing.assert_allclose(ks[impl], ks[1], rtol=0,
                                       atol=_tol(x64) * max(scale, 1.))
        # and against explicit J J^T
        flat = lambda p, x: apply_fn(p, x).ravel()  # noqa: E731
        j1 = jax.jacobian(flat)(params, x1)
        j2 = jax.jacobian(flat)(params, x2)
        jj = sum(np.tensordot(np.asarray(a).reshape(3, -1), np.asarray(b).reshape(2, -1),
                              (1, 1))
                 for a, b in zip(jax.tree.leaves(j1), jax.tree.leaves(j2)))
        np.testing.assert_allclose(ks[1][..., 0, 0], jj, rtol=0,
                                   atol=_tol(x64) * max(scale, 1.))


def _wide_samples(nt, impl, x1, x2, width, n_samples):
    init_fn, apply_fn, kernel_fn = _net(nt, width)
    ntk_fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=impl)

    @jax.jit
    def one(key):
        _, params = init_fn(key, x1.shape)
        return ntk_fn(x1, x2, params)[..., 0, 0]

    keys = jax.random.split(jax.random.PRNGKey(7), n_samples)
    return np.stack([np.asarray(one(k)) for k in keys]), kernel_fn


WIDTH, K = 256, 64


@pytest.fixture(scope="module")
def wide_samples(nt):
    """K float64 empirical-NTK draws (independent inits) of the width-256 net."""
    with jax.enable_x64(True):
        x1, x2 = _data()
        return _wide_samples(nt, 2, x1, x2, WIDTH, K)


def test_empirical_ntk_unbiased_for_analytic(nt, wide_samples):
    with jax.enable_x64(True):
        x1, x2 = _data()
        samples, kernel_fn = wide_samples
        ntk = np.asarray(kernel_fn(x1, x2, "ntk"))
        se = samples.std(0, ddof=1) / np.sqrt(K)
        assert np.all(np.abs(samples.mean(0) - ntk) < 5 * se + 1e-6)
        # the estimator actually concentrates (not a vacuous test)
        assert np.all(se < 0.1 * np.abs(ntk).max())


# ------------------------------------------------------- 3. custom Elementwise
@pytest.mark.parametrize("x64", DTYPES_FAST64_SLOW)
def test_custom_elementwise_matches_erf(nt, x64):
    stax = nt.stax

    def nngp_fn(cov12, var1, var2):
        return 2 / jnp.pi * jnp.arcsin(2 * cov12 / jnp.sqrt((1 + 2 * var1) * (1 + 2 * var2)))

    def d_nngp_fn(cov12, var1, var2):
        return 4 / jnp.pi / jnp.sqrt((1 + 2 * var1) * (1 + 2 * var2) - 4 * cov12 ** 2)

    custom = stax.Elementwise(jax.scipy.special.erf, nngp_fn, d_nngp_fn)
    with jax.enable_x64(x64):
        x1, x2 = _data()
        for layer_pair in [(custom, stax.Erf())]:
            kfs = [stax.serial(stax.Dense(64, W_std=1.5, b_std=0.1), act,
                               stax.Dense(64, W_std=1.2, b_std=0.2), act,
                               stax.Dense(1))[2] for act in layer_pair]
            a, b = (kf(x1, x2, ("nngp", "ntk")) for kf in kfs)
            rtol = 1e-10 if x64 else 1e-5
            np.testing.assert_allclose(a.nngp, b.nngp, rtol=rtol, atol=rtol)
            np.testing.assert_allclose(a.ntk, b.ntk, rtol=rtol, atol=rtol)
            # also the diagonal (x2=None) path
            a, b = (kf(x1, None, "ntk") for kf in kfs)
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
        if not x64:  # the float32 empirical paths are covered by the test above
            return
        # the custom layer's apply_fn is usable with the empirical NTK
        init_fn, apply_fn, _ = stax.serial(stax.Dense(16), custom, stax.Dense(1))
        _, params = init_fn(jax.random.PRNGKey(1), x1.shape)
        k1 = nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=1)(x1, x2, params)
        k3 = nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=3)(x1, x2, params)
        np.testing.assert_allclose(k3, k1, rtol=0, atol=_tol(x64))


# ----------------------------------------------------------------- 4. predict
@pytest.mark.parametrize("x64", DTYPES_FAST64_SLOW)
def test_gradient_descent_mse(nt, x64):
    import scipy.linalg

    with jax.enable_x64(x64):
        x_train, x_test = _data(6, 3)
        _, _, kernel_fn = _net(nt)
        k_tt = kernel_fn(x_train, None, "ntk")
        k_st = kernel_fn(x_test, x_train, "ntk")
        y = jnp.sin(x_train[:, :1])
        f0 = jnp.zeros_like(y)
        g0 = jnp.zeros((3, 1), y.dtype)
        predict_fn = nt.predict.gradient_descent_mse(k_tt, y, learning_rate=1.)
        t = 3.
        ftr, fte = predict_fn(t, f0, g0, k_st)
        # closed form (loss = 0.5 * mean squared error -> rate K / y.size)
        K = np.asarray(k_tt, np.float64)
        E = scipy.linalg.expm(-K * t / y.size)
        yy = np.asarray(y, np.float64)
        ftr_ref = yy + E @ (0 - yy)
        fte_ref = np.asarray(k_st, np.float64) @ np.linalg.solve(K, (np.eye(6) - E) @ yy)
        tol = 1e-8 if x64 else 2e-4
        np.testing.assert_allclose(ftr, ftr_ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(fte, fte_ref, rtol=tol, atol=tol)
        # t = inf: interpolation of the training targets
        ftr_inf, _ = predict_fn(None, f0, g0, k_st)
        np.testing.assert_allclose(ftr_inf, y, rtol=tol, atol=tol)


# -------------------------------------------------------------- 5. Monte Carlo
def test_monte_carlo_kernel_fn(nt, wide_samples):
    with jax.enable_x64(True):
        x1, x2 = _data()
        init_fn, apply_fn, kernel_fn = _net(nt, WIDTH)
        mc = nt.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(11), K,
                                      trace_axes=(), implementation=2)
        k = mc(x1, x2, ("nngp", "ntk"))
        ntk_mc = np.asarray(k.ntk)[..., 0, 0]
        assert ntk_mc.shape == (3, 2)
        # tolerance from an independent estimate of the per-sample std
        samples, _ = wide_samples
        se = samples.std(0, ddof=1) / np.sqrt(K)
        ntk = np.asarray(kernel_fn(x1, x2, "ntk"))
        assert np.all(np.abs(ntk_mc - ntk) < 5 * se + 1e-6)
        assert np.all(np.isfinite(np.asarray(k.nngp)))
