"""sgntk.diagnostics: every diagnostic against an independent route or a known answer.

Spectrum vs numpy and the identity kernel; the largest stable learning rate against runs just
below and above it; the predicted loss against an explicit gradient-descent loop, a Monte Carlo
over initial functions and the gradient-flow solution of sgntk.predict (first-order convergence in
the step); the MLP backward gain against finite networks (z-test); the LIF backward gain on a
network whose surrogate backward pass is a known geometric sequence; the Herranz-Celotti gain
against closed forms and scipy quadrature.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from sgntk import diagnostics as D
from sgntk import lif, predict, surrogates

pytestmark = pytest.mark.usefixtures("x64")


def _asym_kernel(n=6, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n))
    return a @ a.T / n + np.eye(n) + 0.3 * (rng.normal(size=(n, n)))


def test_identity_kernel_known_answers():
    n, c = 7, 2.5
    y = np.arange(n, dtype=float)
    sp = D.spectrum(c * np.eye(n), y)
    assert float(sp.min_real_part) == pytest.approx(c, rel=1e-12)
    assert float(sp.condition_number) == pytest.approx(1.0, rel=1e-12)
    assert float(sp.effective_rank) == pytest.approx(n, rel=1e-12)
    assert float(sp.asymmetry) == 0.0
    # <H, H y y^T H> / (||H|| ||Hyy^TH||) = |Hy|^2 / (sqrt(n-1) |Hy|^2)
    assert float(sp.alignment) == pytest.approx(1 / np.sqrt(n - 1), rel=1e-12)
    assert float(D.max_stable_learning_rate(c * np.eye(n))) == pytest.approx(2 / c, rel=1e-12)


def test_spectrum_vs_numpy():
    k = _asym_kernel()
    y = np.random.default_rng(1).normal(size=(6, 2))
    sp = D.spectrum(k, y)
    ev = np.linalg.eigvals(k)
    s = np.linalg.svd(k, compute_uv=False)
    p = s / s.sum()
    h = np.eye(6) - 1 / 6
    kc, yc = h @ k @ h, h @ y @ y.T @ h
    assert float(sp.min_real_part) == pytest.approx(ev.real.min(), rel=1e-10)
    assert float(sp.condition_number) == pytest.approx(np.linalg.cond(k), rel=1e-10)
    assert float(sp.effective_rank) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-10)
    assert float(sp.asymmetry) == pytest.approx(
        np.linalg.norm(k - k.T) / np.linalg.norm(k), rel=1e-10)
    assert float(sp.alignment) == pytest.approx(
        (kc * yc).sum() / np.linalg.norm(kc) / np.linalg.norm(yc), rel=1e-10)
    # batched == one by one (vmap-able)
    both = D.spectrum(np.stack([k, 2 * k]), y)
    assert np.allclose(both.effective_rank, [sp.effective_rank] * 2, rtol=1e-12)


def test_stable_learning_rate_vs_diverging_run():
    k = _asym_kernel(seed=3)
    assert np.abs(np.linalg.eigvals(k).imag).max() > 0  # complex modes: not just 2 / lambda_max
    eta = float(D.max_stable_learning_rate(k))
    y = np.random.default_rng(4).normal(size=6)

    def run(lr, steps=3000):  # plain numpy GD in function space
        f = np.zeros(6)
        for _ in range(steps):
            f = f - lr * k @ (f - y)
        return 0.5 * np.sum((f - y) ** 2)

    l0 = 0.5 * np.sum(y**2)
    assert run(0.97 * eta) < 1e-3 * l0
    assert run(1.03 * eta) > 1e3 * l0
    bad = np.diag([1.0, 2.0, -0.5])
    assert float(D.max_stable_learning_rate(bad)) == 0.0


def test_predicted_loss_vs_kernel_gd_and_initial_function_mc():
    k = _asym_kernel(seed=5)
    rng = np.random.default_rng(6)
    y = rng.normal(size=(6, 3))
    a = rng.normal(size=(6, 6))
    s = a @ a.T / 6
    lr, steps = 0.05, 40
    got = np.asarray(D.predicted_loss(k, y, steps=steps, learning_rate=lr, nngp=s))
    # explicit loop over sampled initial functions f0 ~ N(0, S), every output column
    n_mc = 4000
    f = np.linalg.cholesky(s) @ rng.normal(size=(n_mc, 6, 3))
    losses = []
    for n in range(steps + 1):
        losses.append(0.5 * np.sum((f - y) ** 2, (1, 2)))
        f = f - lr * np.einsum("ij,bjc->bic", k, f - y)
    losses = np.array(losses)
    z = (losses.mean(1) - got) / (losses.std(1, ddof=1) / np.sqrt(n_mc))
    assert np.max(np.abs(z)) < 4.5, np.max(np.abs(z))
    # without S: the deterministic loop exactly
    r, det = -y, []
    for _ in range(steps + 1):
        det.append(0.5 * np.sum(r**2))
        r = r - lr * k @ r
    assert np.allclose(D.predicted_loss(k, y, steps=steps, learning_rate=lr), det, rtol=1e-12)


def test_predicted_loss_converges_to_gradient_flow():
    k = _asym_kernel(seed=7)
    y = np.random.default_rng(8).normal(size=6)
    t = 2.0
    mu = np.asarray(predict.gp_predict(k, k, y, t=t).mean)
    flow = 0.5 * np.sum((mu - y) ** 2)
    errs = []
    for lr in (0.02, 0.01):
        n = int(round(t / lr))
        errs.append(abs(float(D.predicted_loss(k, y, steps=n, learning_rate=lr)[-1]) - flow))
    assert 1.8 < errs[0] / errs[1] < 2.2  # first order in the step, as GD vs flow must be


def test_kernel_regression_inf_and_steps():
    k = _asym_kernel(seed=9)
    rng = np.random.default_rng(10)
    ktx = rng.normal(size=(4, 6))
    y = D.one_hot_targets(np.array([0, 1, 2, 0, 1, 2]))
    yt = D.one_hot_targets(np.array([0, 1, 2, 2]), 3)
    inf = D.kernel_regression(ktx, k, y, yt)
    ref = np.asarray(predict.gp_predict(ktx, k, y).mean)
    assert np.allclose(inf.prediction, ref, rtol=1e-10)
    assert float(inf.mse) == pytest.approx(np.mean((ref - yt) ** 2), rel=1e-12)
    assert float(inf.accuracy) == pytest.approx(np.mean(ref.argmax(1) == yt.argmax(1)))
    fin = D.kernel_regression(ktx, k, y, yt, steps=3, learning_rate=0.1)
    f, r = np.zeros_like(yt), -y
    for _ in range(3):
        f, r = f - 0.1 * ktx @ r, r - 0.1 * k @ r
    assert np.allclose(fin.prediction, f, rtol=1e-12)


@pytest.mark.slow
def test_mlp_backward_gain_vs_finite_networks():
    """G_l = E sum_i (d~f/dh_{l,i})^2 of wide sign networks (custom-JVP surrogate backward)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 4)) * np.array([[0.5], [1.0], [2.0]])
    depth, width, sw, sb = 3, 512, 1.5, 0.2
    sur = surrogates.get("fast_sigmoid", sharpness=2.0, dampening=1.3)
    bg = D.mlp_backward_gain(x, depth=depth, activation="sign", surrogate=sur, sigma_w=sw,
                             sigma_b=sb)

    def sample(key):
        ks = jax.random.split(key, 2 * depth + 1)
        ws, bs, n_in = [], [], x.shape[1]
        for l in range(depth):
            ws.append(jax.random.normal(ks[2 * l], (n_in, width)))
            bs.append(jax.random.normal(ks[2 * l + 1], (width,)))
            n_in = width
        w_out = jax.random.normal(ks[-1], (width,))

        def f(eps, xi):
            h = sw / np.sqrt(xi.shape[0]) * xi @ ws[0] + sb * bs[0] + eps[0]
            for l in range(1, depth):
                h = sw / np.sqrt(width) * surrogates.sign(h, sur) @ ws[l] + sb * bs[l] + eps[l]
            return sw / np.sqrt(width) * surrogates.sign(h, sur) @ w_out

        g = jax.vmap(lambda xi: jax.grad(f)(jnp.zeros((depth, width)), xi))(jnp.asarray(x))
        return jnp.mean(jnp.sum(g**2, -1), 0)  # (depth,), averaged over inputs

    samples = jax.vmap(sample)(jax.random.split(jax.random.PRNGKey(0), 48))
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
    z = (np.asarray(mean) - np.asarray(bg.gain)) / np.asarray(se)
    # finite-width bias O(1/width) ~ 0.2 % is far below the standard error here
    assert np.max(np.abs(z)) < 4.0, (np.asarray(mean), np.asarray(bg.gain), z)


def test_lif_backward_gain_exact_explosion():
    """Reset by subtraction, differentiable, straight-through psi' = gamma, no recurrence:
    dU[n+1]/dU[n] = b - theta gamma exactly, so g(t) = (b - theta gamma)^(2 (T-1-t))."""
    T, gamma, theta = 12, 3.0, 1.0
    x = (np.random.default_rng(12).random((3, T, 5)) < 0.3).astype(float)
    cfg = lif.LIFConfig(threshold=theta, reset="subtract", detach_reset=False,
                        surrogate=surrogates.get("straight_through", dampening=gamma))
    bg = D.lif_backward_gain(x, config=cfg, sigma_w=2.0, width=16, n_networks=3)
    b = float(lif.decay(10.0, 1.0))
    c = (b - theta * gamma) ** 2
    assert c > 1  # provably explodes: |b - theta gamma| = 2.1 per step
    assert np.allclose(bg.gain, c ** (T - 1 - np.arange(T)), rtol=1e-10)
    assert float(bg.chi) == pytest.approx(c, rel=1e-10)
    assert float(bg.log10_total) == pytest.approx((T - 1) * np.log10(c), rel=1e-10)
    # detached reset: the gradient only leaks, g(t) <= b^(2 (T-1-t))
    det = D.lif_backward_gain(x, config=cfg.replace(detach_reset=True), sigma_w=2.0, width=16,
                              n_networks=3)
    assert np.all(np.asarray(det.gain) <= b ** (2 * (T - 1 - np.arange(T))) * (1 + 1e-12))
    assert float(det.log10_total) == pytest.approx(0.0, abs=1e-12)


def test_lif_backward_gain_qif_starts_at_rest():
    """QIF neurons without input stay at their stable rest V = 0 (phase 2 atan(-1/2)), where the
    exact flow of tau dV/dt = V (V - 1) contracts by exp(-dt/tau) per step: g(t) =
    exp(-2 (T-1-t) dt/tau) (a start at V = 1/2, i.e. phase 0, would drift and differ)."""
    T = 12
    x = np.zeros((2, T, 5))
    cfg = lif.LIFConfig(neuron="qif", reset="subtract", threshold=1.0,
                        surrogate=surrogates.get("fast_sigmoid", sharpness=5.0))
    bg = D.lif_backward_gain(x, config=cfg, sigma_w=2.0, width=8, n_networks=2)
    np.testing.assert_allclose(bg.gain, np.exp(-0.2 * (T - 1 - np.arange(T))), rtol=1e-10)


@pytest.mark.slow
def test_herranz_celotti_gain_closed_form():
    x = (np.random.default_rng(13).random((4, 20, 6)) < 0.2).astype(float)
    b = float(lif.decay(10.0, 1.0))
    cfg = lif.LIFConfig(threshold=1.5, surrogate=surrogates.get("straight_through", dampening=2.0))
    g = float(D.herranz_celotti_gain(x, config=cfg, sigma_w=3.0))
    assert g == pytest.approx(b**2 + 1.5**2 * 4.0, rel=1e-12)
    g_rec = float(D.herranz_celotti_gain(x, config=cfg, sigma_w=3.0, recurrent=True,
                                         sigma_rec=2.0, width=50))
    assert g_rec == pytest.approx(b**2 + (49 / 50 * 4.0 + 1.5**2) * 4.0, rel=1e-12)
    # a shape without closed form at every variance: scipy quadrature of E[psi'(v)^2]
    sur = surrogates.get("fast_sigmoid", sharpness=3.0, dampening=0.7)
    cfg = cfg.replace(surrogate=sur)
    from sgntk.lif_kernels import membrane_covariance
    _, _, var = membrane_covariance(x[:1], x, config=cfg, sigma_w=3.0)
    var = np.asarray(var).ravel()
    vals = [integrate.quad(lambda u, v=v: float(sur.derivative(u)) ** 2
                           * np.exp(-(u + 1.5) ** 2 / (2 * v)) / np.sqrt(2 * np.pi * v),
                           -1.5 - 12 * np.sqrt(v), -1.5 + 12 * np.sqrt(v), points=[0.0],
                           limit=200)[0] for v in var if v > 0]
    ref = b**2 + 1.5**2 * np.mean(vals)
    assert float(D.herranz_celotti_gain(x, config=cfg, sigma_w=3.0)) == pytest.approx(
        ref, rel=1e-7)


def test_bad_input_errors_name_the_argument():
    with pytest.raises(ValueError, match="`k`"):
        D.spectrum(np.ones((3, 4)))
    with pytest.raises(ValueError, match="`y`"):
        D.predicted_loss(np.eye(3), np.ones(4), steps=2, learning_rate=0.1)
    with pytest.raises(ValueError, match="loss_normalization"):
        D.max_stable_learning_rate(np.eye(3), loss_normalization="median")
    with pytest.raises(ValueError, match="x must be spike trains"):
        D.lif_backward_gain(np.ones((4, 5)), config=lif.LIFConfig())


@pytest.mark.parametrize("shape", ["gaussian", pytest.param("fast_sigmoid", marks=pytest.mark.slow)])
def test_mlp_diagnostics_vmap_over_grid_equals_pointwise(shape):
    rng = np.random.default_rng(14)
    x = rng.normal(size=(8, 3))
    y = np.sign(x[:, 0])
    fn = D.mlp_diagnostics_fn(depth=2, activation="sign", steps=20, shape=shape)
    sharp, damp, sw = np.array([0.5, 4.0]), np.array([0.3, 2.0]), np.array([0.8, 1.5])
    grid = jax.vmap(lambda b, g, s: fn(x, y, b, g, 2.0, s, 0.1))(sharp, damp, sw)
    for i in range(2):
        one = fn(x, y, sharp[i], damp[i], 2.0, sw[i], 0.1)
        for k in one:
            assert np.allclose(grid[k][i], one[k], rtol=1e-10), k
    assert np.all(np.isfinite(grid["relative_loss"]))


@pytest.mark.parametrize("shape", surrogates.SHAPES)
def test_herranz_celotti_and_backward_gain_every_shape(shape):
    x = (np.random.default_rng(15).random((2, 10, 4)) < 0.3).astype(float)
    sur = surrogates.get(shape, sharpness=2.0, dampening=0.8)
    cfg = lif.LIFConfig(surrogate=sur, reset="zero", detach_reset=False)
    g = float(D.herranz_celotti_gain(x, config=cfg, sigma_w=4.0, recurrent=True))
    assert np.isfinite(g) and g >= float(lif.decay(10.0, 1.0)) ** 2
    bg = D.lif_backward_gain(x, config=cfg, sigma_w=4.0, recurrent=True, width=8, n_networks=2)
    assert np.all(np.isfinite(bg.gain)) and float(bg.gain[-1]) == pytest.approx(1.0)
    mg = D.mlp_backward_gain(x[:, 0], depth=2, activation="step", surrogate=sur)
    assert np.all(np.isfinite(mg.gain)) and np.all(np.asarray(mg.chi) > 0)
