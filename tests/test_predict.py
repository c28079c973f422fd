"""Tests for sgntk.predict: closed-form gradient-flow predictions under (a)symmetric kernels."""
from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import solve_ivp

import jax
import jax.numpy as jnp

from sgntk.predict import (
    KernelDiagnostics,
    gp_predict,
    kernel_diagnostics,
    nngp_posterior,
)

N_TRAIN, N_TEST = 7, 4
TIMES = [0.0, 0.05, 0.7, 3.0, 25.0]


def _spd(rng, n, p=None, jitter=0.05):
    p = p or 3 * n
    f = rng.normal(size=(n, p))
    return f @ f.T / p + jitter * np.eye(n)


def _symmetric_problem(seed=0, n_out=None):
    """Joint symmetric NTK and NNGP over [train; test]."""
    rng = np.random.default_rng(seed)
    N = N_TRAIN + N_TEST
    ntk, nngp = _spd(rng, N), _spd(rng, N)
    y = rng.normal(size=(N_TRAIN,) if n_out is None else (N_TRAIN, n_out))
    return ntk, nngp, y


def _asymmetric_problem(seed=1, shift=0.0):
    """I(X,X) = S0 + A (S0 SPD, A antisymmetric) - shift; random I(x,X); joint SPD NNGP."""
    rng = np.random.default_rng(seed)
    n, m = N_TRAIN, N_TEST
    a = rng.normal(size=(n, n))
    i_xx = _spd(rng, n, jitter=0.3) + 0.8 * (a - a.T) - shift * np.eye(n)
    i_tx = rng.normal(size=(m, n)) / np.sqrt(n)
    nngp = _spd(rng, n + m)
    y = rng.normal(size=n)
    return i_xx, i_tx, nngp, y


def _blocks(k):
    n = N_TRAIN
    return k[n:, :n], k[:n, :n], k[n:, n:]  # test_train, train_train, test_test


# ------------------------------------------------------------- independent references


def _eigh_reference(ntk, nngp, y, t, rate):
    """Symmetric case (Lee et al. 2019, eqs. 14-16) in the eigenbasis of the NTK."""
    k_tx, k_xx, _ = _blocks(ntk)
    s_tx, s_xx, s_tt = _blocks(nngp)
    lam, v = np.linalg.eigh(k_xx)
    if np.isinf(t):
        g = 1.0 / lam
    else:
        g = -np.expm1(-rate * lam * t) / lam  # I^{-1} E_t in the eigenbasis
    m = k_tx @ (v * g) @ v.T
    mean = m @ y
    cov = s_tt - s_tx @ m.T - m @ s_tx.T + m @ s_xx @ m.T
    return mean, cov


def _ode_flow(i_xx, i_tx, rate, t, y, n_rhs):
    """Integrate dz/dt = -rate [I_XX; I_xX] (z_X - Y) numerically.

    Returns (z_t for z_0 = 0, Phi_t) where z_t = Phi_t z_0 + b_t is the affine flow map of
    the joint state z = (f(X), f(x)); Phi_t is integrated from Phi_0 = 1.
    """
    n, m = i_xx.shape[0], i_tx.shape[0]
    N = n + m
    big = rate * np.vstack([i_xx, i_tx])  # (N, n)

    def rhs_mean(_, z):
        return -big @ (z[:n] - y)

    def rhs_phi(_, p):
        p = p.reshape(N, N)
        return (-big @ p[:n]).ravel()

    kw = dict(method="DOP853", rtol=1e-11, atol=1e-13)
    z = solve_ivp(rhs_mean, (0.0, t), np.zeros(N), **kw).y[:, -1] if t > 0 else np.zeros(N)
    phi = (
        solve_ivp(rhs_phi, (0.0, t), np.eye(N).ravel(), **kw).y[:, -1].reshape(N, N)
        if t > 0
        else np.eye(N)
    )
    return z, phi


def _nt():
    """neural_tangents (a test dependency, installed in CI): a failed import fails the test."""
    from sgntk.nt_compat import import_neural_tangents

    return import_neural_tangents()


def _fake_kernel_fn(ntk, nngp):
    """A `kernel_fn(x1, x2, get)` over integer indices into precomputed joint matrices."""
    Kern = collections.namedtuple("Kern", ["nngp", "ntk"])

    def kernel_fn(x1, x2, get, **_):
        i1 = np.asarray(x1[:, 0]).astype(int)
        i2 = i1 if x2 is None else np.asarray(x2[:, 0]).astype(int)
        mats = {"nngp": jnp.asarray(nngp[np.ix_(i1, i2)]), "ntk": jnp.asarray(ntk[np.ix_(i1, i2)])}
        if isinstance(get, str):
            return mats[get]
        return Kern(**{g: mats[g] for g in ("nngp", "ntk")})

    return kernel_fn


# ----------------------------------------------------------------- symmetric kernels


@pytest.mark.parametrize("t", TIMES + [np.inf])
def test_symmetric_matches_eigh_reference(t):
    ntk, nngp, y = _symmetric_problem()
    k_tx, k_xx, _ = _blocks(ntk)
    s_tx, s_xx, s_tt = _blocks(nngp)
    lr = 0.6
    p = gp_predict(k_tx, k_xx, y, t=t, learning_rate=lr, nngp_test_test=s_tt,
                   nngp_test_train=s_tx, nngp_train_train=s_xx)
    mean, cov = _eigh_reference(ntk, nngp, y, t, lr)
    np.testing.assert_allclose(p.mean, mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(p.cov, cov, rtol=0, atol=1e-10)


def test_time_axis_and_multi_output():
    ntk, nngp, y = _symmetric_problem(n_out=3)
    k_tx, k_xx, _ = _blocks(ntk)
    s_tx, s_xx, s_tt = _blocks(nngp)
    ts = np.array(TIMES + [np.inf])
    kw = dict(nngp_test_test=s_tt, nngp_test_train=s_tx, nngp_train_train=s_xx)
    p = gp_predict(k_tx, k_xx, y, t=ts, **kw)
    assert p.mean.shape == (len(ts), N_TEST, 3) and p.cov.shape == (len(ts), N_TEST, N_TEST)
    assert p.mean.dtype == jnp.float64
    for i, t in enumerate(ts):
        q = gp_predict(k_tx, k_xx, y, t=t, **kw)
        np.testing.assert_allclose(p.mean[i], q.mean, atol=1e-12)
        np.testing.assert_allclose(p.cov[i], q.cov, atol=1e-12)
        for j in range(3):
            r = gp_predict(k_tx, k_xx, y[:, j], t=t)
            assert r.cov is None
            np.testing.assert_allclose(p.mean[i, :, j], r.mean, atol=1e-12)
    # t=None is t=inf; t=0 is the prior
    np.testing.assert_allclose(gp_predict(k_tx, k_xx, y, **kw).mean, p.mean[-1], atol=1e-12)
    np.testing.assert_allclose(p.mean[0], 0.0, atol=1e-15)
    np.testing.assert_allclose(p.cov[0], s_tt, atol=1e-14)
    # train-set predictions: E_t Y, -> Y at t = inf
    q = gp_predict(k_xx, k_xx, y, t=ts)
    np.testing.assert_allclose(q.mean[-1], y, atol=1e-10)
    np.testing.assert_allclose(q.mean[2], (np.eye(N_TRAIN) - scipy.linalg.expm(-k_xx * ts[2])) @ y,
                               atol=1e-10)


@pytest.mark.parametrize("n_out", [None, pytest.param(3, marks=pytest.mark.slow)])
def test_symmetric_matches_neural_tangents(n_out):
    nt = _nt()
    with jax.enable_x64(True):  # nt computes in the dtype of its inputs
        _check_against_nt(nt, n_out)


def _check_against_nt(nt, n_out):
    ntk, nngp, y = _symmetric_problem(seed=3, n_out=n_out)
    k_tx, k_xx, _ = _blocks(ntk)
    s_tx, s_xx, s_tt = _blocks(nngp)
    y2 = y if y.ndim == 2 else y[:, None]  # nt needs a trailing (traced) output axis
    lr = 0.37
    ts = np.array([0.05, 0.7, 3.0, 25.0, 400.0])
    kw = dict(learning_rate=lr, loss_normalization="mean", nngp_test_test=s_tt,
              nngp_test_train=s_tx, nngp_train_train=s_xx)

    # gradient_descent_mse: mean from f_0 = 0
    fn = nt.predict.gradient_descent_mse(jnp.asarray(k_xx), jnp.asarray(y2), learning_rate=lr)
    z_test = np.zeros((N_TEST, y2.shape[1]))
    z_train = np.zeros_like(y2)
    for t in list(ts) + [None]:
        _, nt_mean = fn(t, z_train, z_test, jnp.asarray(k_tx))
        ours = gp_predict(k_tx, k_xx, y, t=t, **kw).mean
        np.testing.assert_allclose(ours, np.asarray(nt_mean).reshape(ours.shape), rtol=0, atol=1e-8)

    # gradient_descent_mse_ensemble: mean and covariance, NTK and NNGP regimes
    kernel_fn = _fake_kernel_fn(ntk, nngp)
    x_train = jnp.arange(N_TRAIN, dtype=jnp.float64)[:, None]
    x_test = jnp.arange(N_TRAIN, N_TRAIN + N_TEST, dtype=jnp.float64)[:, None]
    ens = nt.predict.gradient_descent_mse_ensemble(kernel_fn, x_train, jnp.asarray(y2),
                                                   learning_rate=lr)
    for t in [ts, None]:
        for get in ("ntk", "nngp"):
            nt_mean, nt_cov = ens(t, x_test, get, compute_cov=True)
            if get == "ntk":
                ours = gp_predict(k_tx, k_xx, y, t=t, **kw)
            else:  # NNGP regime = readout-only training: kernel I = S
                ours = gp_predict(s_tx, s_xx, y, t=t, **kw)
            np.testing.assert_allclose(ours.mean, np.asarray(nt_mean).reshape(ours.mean.shape),
                                       rtol=0, atol=1e-8)
            np.testing.assert_allclose(ours.cov, nt_cov, rtol=0, atol=1e-8)

    # Bayesian posterior
    post = nngp_posterior(s_tx, s_xx, y, nngp_test_test=s_tt)
    nt_mean, nt_cov = ens(None, x_test, "nngp", compute_cov=True)
    np.testing.assert_allclose(post.mean, np.asarray(nt_mean).reshape(post.mean.shape), atol=1e-8)
    np.testing.assert_allclose(post.cov, nt_cov, atol=1e-8)


def test_nngp_posterior_reference():
    _, nngp, y = _symmetric_problem(seed=4)
    s_tx, s_xx, s_tt = _blocks(nngp)
    p = nngp_posterior(s_tx, s_xx, y, nngp_test_test=s_tt, diag_reg=0.1)
    k = s_xx + 0.1 * np.eye(N_TRAIN)
    np.testing.assert_allclose(p.mean, s_tx @ np.linalg.solve(k, y), atol=1e-12)
    np.testing.assert_allclose(p.cov, s_tt - s_tx @ np.linalg.solve(k, s_tx.T), atol=1e-12)
    assert nngp_posterior(s_tx, s_xx, y).cov is None
    with pytest.raises(ValueError, match="nngp_test_train"):
        nngp_posterior(s_tx[:, 1:], s_xx, y)
    with pytest.raises(ValueError, match="not positive"):
        nngp_posterior(s_tx, -s_xx, y)


# ---------------------------------------------------------------- asymmetric kernels


@pytest.mark.parametrize("loss_normalization",
                         ["sum", pytest.param("mean", marks=pytest.mark.slow), 3.0])
def test_asymmetric_matches_ode(loss_normalization):
    i_xx, i_tx, nngp, y = _asymmetric_problem()
    assert np.linalg.norm(i_xx - i_xx.T) > 0.5 * np.linalg.norm(i_xx)  # strongly asymmetric
    assert np.min(np.linalg.eigvals(i_xx).real) > 0
    s_tx, s_xx, s_tt = _blocks(nngp)
    lr = 0.8
    c = {"sum": 1.0, "mean": float(N_TRAIN)}.get(loss_normalization, loss_normalization)
    ts = np.array([0.1, 1.3, 6.0])
    p = gp_predict(i_tx, i_xx, y, t=ts, learning_rate=lr, loss_normalization=loss_normalization,
                   nngp_test_test=s_tt, nngp_test_train=s_tx, nngp_train_train=s_xx)
    for k, t in enumerate(ts):
        z, phi = _ode_flow(i_xx, i_tx, lr / c, t, y, 1)
        np.testing.assert_allclose(p.mean[k], z[N_TRAIN:], rtol=0, atol=1e-7)
        cov = (phi @ nngp @ phi.T)[N_TRAIN:, N_TRAIN:]
        np.testing.assert_allclose(p.cov[k], cov, rtol=0, atol=1e-7)


def test_asymmetric_infinite_time_matches_long_ode():
    i_xx, i_tx, nngp, y = _asymmetric_problem()
    s_tx, s_xx, s_tt = _blocks(nngp)
    lam_min = np.min(np.linalg.eigvals(i_xx).real)
    t_long = 40.0 / lam_min  # e^{-40}: converged to ~1e-17
    z, phi = _ode_flow(i_xx, i_tx, 1.0, t_long, y, 1)
    kw = dict(nngp_test_test=s_tt, nngp_test_train=s_tx, nngp_train_train=s_xx)
    for t in (None, np.inf, t_long):
        p = gp_predict(i_tx, i_xx, y, t=t, **kw)
        np.testing.assert_allclose(p.mean, z[N_TRAIN:], rtol=0, atol=1e-7)
        np.testing.assert_allclose(p.cov, (phi @ nngp @ phi.T)[N_TRAIN:, N_TRAIN:], atol=1e-7)
    # huge finite t (up to 2^60+ squarings) stays at roundoff distance from t = inf
    # (regression: squaring the whole augmented matrix, as expm does, drifts like eps * t)
    p_inf = gp_predict(i_tx, i_xx, y, **kw)
    p_big = gp_predict(i_tx, i_xx, y, t=np.array([1e8, 1e20, 1e300]), **kw)
    np.testing.assert_allclose(p_big.mean, np.broadcast_to(p_inf.mean, p_big.mean.shape), atol=1e-12)
    np.testing.assert_allclose(p_big.cov, np.broadcast_to(p_inf.cov, p_big.cov.shape), atol=1e-12)


def test_asymmetric_differs_from_symmetrised():
    """Sanity: the answer really depends on the antisymmetric part."""
    i_xx, i_tx, _, y = _asymmetric_problem()
    a = gp_predict(i_tx, i_xx, y, t=2.0).mean
    b = gp_predict(i_tx, 0.5 * (i_xx + i_xx.T), y, t=2.0).mean
    assert np.max(np.abs(a - b)) > 1e-2


def test_monte_carlo():
    i_xx, i_tx, nngp, y = _asymmetric_problem(seed=5)
    s_tx, s_xx, s_tt = _blocks(nngp)
    n_samp, lr, t = 40000, 0.5, 1.7
    rng = np.random.default_rng(1234)
    f0 = rng.multivariate_normal(np.zeros(N_TRAIN + N_TEST), nngp, size=n_samp)  # (S, N)
    # exact linear solution, computed independently: f_t(x) = f_0(x) - I_xX I^-1 E_t (f_0(X) - Y)
    e_t = np.eye(N_TRAIN) - scipy.linalg.expm(-lr * t * i_xx)
    m_t = i_tx @ np.linalg.solve(i_xx, e_t)
    ft = f0[:, N_TRAIN:] - (f0[:, :N_TRAIN] - y) @ m_t.T
    p = gp_predict(i_tx, i_xx, y, t=t, learning_rate=lr, nngp_test_test=s_tt,
                   nngp_test_train=s_tx, nngp_train_train=s_xx)
    mean, cov = np.asarray(p.mean), np.asarray(p.cov)
    # z = 4 over 4 means + 16 covariance entries: P(|Z| > 4) = 6.3e-5 each, so a family-wise
    # false alarm of 20 * 6.3e-5 = 1.3e-3 (Bonferroni). Standard errors of a Gaussian sample:
    # Var(mean_i) = C_ii / n, Var(S_ij) = (C_ii C_jj + C_ij^2) / n.
    se_mean = np.sqrt(np.diag(cov) / n_samp)
    z_mean = np.abs(ft.mean(0) - mean) / se_mean
    d = np.diag(cov)
    se_cov = np.sqrt((np.outer(d, d) + cov**2) / n_samp)
    z_cov = np.abs(np.cov(ft, rowvar=False) - cov) / se_cov
    assert max(z_mean.max(), z_cov.max()) < 4.0, (z_mean, z_cov)


# ---------------------------------------------------------------------- diagnostics


def test_non_convergent_raises_at_inf_warns_at_finite_t():
    i_xx, i_tx, nngp, y = _asymmetric_problem()
    lam_min = np.min(np.linalg.eigvals(i_xx).real)
    i_bad = i_xx - (lam_min + 0.2) * np.eye(N_TRAIN)  # min real part = -0.2
    with pytest.raises(ValueError, match=r"eigenvalue -0\.2.*not positive.*does not converge"):
        gp_predict(i_tx, i_bad, y)
    with pytest.raises(ValueError, match="does not converge"):
        gp_predict(i_tx, i_bad, y, t=np.array([1.0, np.inf]))
    with pytest.warns(RuntimeWarning, match="negative real part"):
        p = gp_predict(i_tx, i_bad, y, t=2.0)
    z, _ = _ode_flow(i_bad, i_tx, 1.0, 2.0, y, 1)  # still the exact finite-t solution
    np.testing.assert_allclose(p.mean, z[N_TRAIN:], atol=1e-7)
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="non-finite"):
        gp_predict(i_tx, i_bad, y, t=1e5)  # exp(0.2 * 1e5) overflows


def test_singular_kernel_fine_at_finite_t():
    """Duplicate training point: I(X,X) singular; finite t needs no inverse."""
    i_xx, i_tx, _, y = _asymmetric_problem()
    i_xx = i_xx.copy()
    i_xx[-1], i_xx[:, -1] = i_xx[0], i_xx[:, 0]
    i_xx[-1, -1] = i_xx[0, 0]
    i_tx = i_tx.copy()
    i_tx[:, -1] = i_tx[:, 0]
    y = y.copy()
    y[-1] = y[0]
    assert np.linalg.matrix_rank(i_xx) == N_TRAIN - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spurious warning either
        p = gp_predict(i_tx, i_xx, y, t=1.5)
    z, _ = _ode_flow(i_xx, i_tx, 1.0, 1.5, y, 1)
    np.testing.assert_allclose(p.mean, z[N_TRAIN:], atol=1e-7)
    with pytest.raises(ValueError, match="k_train_train"):
        gp_predict(i_tx, i_xx, y)


def test_ill_conditioned_raises():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(N_TRAIN, N_TRAIN)))
    k = (q * np.logspace(0, -14, N_TRAIN)) @ q.T
    k = 0.5 * (k + k.T)
    y = rng.normal(size=N_TRAIN)
    with pytest.raises(ValueError, match=r"ill-conditioned: condition number 1(\.\d+)?e\+14 > max_condition = 1e\+12"):
        gp_predict(k, k, y, t=np.inf, check=True)
    # accepted with a larger threshold, or with regularisation, or at finite t
    gp_predict(k, k, y, max_condition=1e16)
    gp_predict(k, k, y, diag_reg=1e-6)
    gp_predict(k, k, y, t=10.0)


def test_bad_inputs_raise_naming_argument():
    ntk, nngp, y = _symmetric_problem()
    k_tx, k_xx, _ = _blocks(ntk)
    s_tx, s_xx, s_tt = _blocks(nngp)
    kw = dict(nngp_test_test=s_tt, nngp_test_train=s_tx, nngp_train_train=s_xx)
    n, m = N_TRAIN, N_TEST
    cases = [
        ((k_tx, k_xx[:, :-1], y), {}, r"`k_train_train`.*square"),
        ((k_tx, k_xx, y[:-1]), {}, rf"`y_train` has shape \({n - 1},\), expected \({n},\)"),
        ((k_tx, k_xx, y[:, None, None]), {}, r"`y_train`"),
        ((k_tx[:, :-1], k_xx, y), {}, rf"`k_test_train` has shape \({m}, {n - 1}\), expected \(n_test, {n}\)"),
        ((k_tx, k_xx, y), dict(kw, nngp_test_test=s_tt[:-1]), rf"`nngp_test_test` has shape \({m - 1}, {m}\), expected \({m}, {m}\)"),
        ((k_tx, k_xx, y), dict(kw, nngp_test_train=s_tx.T), r"`nngp_test_train`.*expected"),
        ((k_tx, k_xx, y), dict(kw, nngp_train_train=s_xx[:1]), r"`nngp_train_train`"),
        ((k_tx, k_xx, y), dict(nngp_test_test=s_tt), r"not \['nngp_test_train', 'nngp_train_train'\]"),
        ((k_tx, k_xx, y), dict(t=np.ones((2, 2))), r"`t` must be a scalar or a 1-D"),
        ((k_tx, k_xx, y), dict(t=-1.0), r"`t` must be >= 0"),
        ((k_tx, k_xx, y), dict(learning_rate=0.0), r"`learning_rate` must be positive"),
        ((k_tx, k_xx, y), dict(loss_normalization="avg"), r"`loss_normalization`"),
        ((k_tx, k_xx, y), dict(kw, nngp_train_train=s_xx + np.triu(np.ones((n, n)), 1)),
         r"`nngp_train_train` must be a symmetric"),
    ]
    for args, kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            gp_predict(*args, **kwargs)
    bad = k_tx.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"`k_test_train` contains 1 non-finite value\(s\) \(first at index \(1, 2\)"):
        gp_predict(bad, k_xx, y)
    bad = np.array(y)
    bad[0] = np.inf
    with pytest.raises(ValueError, match="`y_train` contains"):
        gp_predict(k_tx, k_xx, bad)


def test_kernel_diagnostics():
    d = kernel_diagnostics(np.diag([1.0, 2.0, 4.0]))
    assert isinstance(d, KernelDiagnostics)
    np.testing.assert_allclose([d.min_real_part, d.condition_number, d.asymmetry], [1, 4, 0])
    d = kernel_diagnostics(np.array([[1.0, 1.0], [-1.0, 1.0]]))  # eigenvalues 1 +- i
    np.testing.assert_allclose(d.min_real_part, 1.0)
    np.testing.assert_allclose(abs(d.critical_eigenvalue.imag), 1.0)
    np.testing.assert_allclose(d.asymmetry, np.sqrt(2.0))
    np.testing.assert_allclose(d.condition_number, 1.0)
    assert np.isinf(kernel_diagnostics(np.ones((3, 3))).condition_number)
    # batched and jit-able (e.g. over a grid of surrogates)
    i_xx, *_ = _asymmetric_problem()
    batch = np.stack([i_xx, i_xx.T, i_xx - 10 * np.eye(N_TRAIN)])
    with jax.enable_x64(True):
        db = jax.jit(kernel_diagnostics)(batch)
    assert db.min_real_part.shape == (3,)
    np.testing.assert_allclose(db.min_real_part[0], np.min(np.linalg.eigvals(i_xx).real))
    np.testing.assert_allclose(db.min_real_part[1], db.min_real_part[0])
    assert float(db.min_real_part[2]) < 0
    np.testing.assert_allclose(db.condition_number[0], np.linalg.cond(i_xx))


def test_jit_with_check_false():
    i_xx, i_tx, nngp, y = _asymmetric_problem()
    s_tx, s_xx, s_tt = _blocks(nngp)
    ts = jnp.array([0.3, jnp.inf])

    def f(a, b, t):
        return gp_predict(a, b, y, t=t, nngp_test_test=s_tt, nngp_test_train=s_tx,
                          nngp_train_train=s_xx, check=False)

    with jax.enable_x64(True):
        got = jax.jit(f)(jnp.asarray(i_tx), jnp.asarray(i_xx), ts)
    ref = f(i_tx, i_xx, np.array([0.3, np.inf]))
    np.testing.assert_allclose(got.mean, ref.mean, atol=1e-12)
    np.testing.assert_allclose(got.cov, ref.cov, atol=1e-12)
    with pytest.raises(TypeError, match="check=False"):
        with jax.enable_x64(True):
            jax.jit(lambda a: gp_predict(i_tx, a, y))(jnp.asarray(i_xx))
