"""Ensemble training (sgntk.train): vmapped == loop, SGL gradient == manual psi' backward,
chunking invariance, output scale, and kernel regression vs a wide trained ensemble."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sgntk import kernels, predict
from sgntk import surrogates as S
from sgntk import train as T
from sgntk.empirical import mlp_init

pytestmark = pytest.mark.usefixtures("x64")

SW, SB = 1.3, 0.2


def _data(n=5, d=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, size=(n, 1))  # unequal norms
    return x, np.sin(2 * x[:, 0]) + x[:, 1], rng.normal(size=(4, d))


def _manual_grads(p, x, y, sur, kappa):
    """Backward pass written out for a depth-2 sign net with psi' (float64 numpy)."""
    w1, w2, w3 = (np.asarray(w) for w in p.weights)
    b1, b2, b3 = (np.asarray(b) for b in p.biases)
    d, n = x.shape[1], w1.shape[1]
    h1 = SW / np.sqrt(d) * x @ w1 + SB * b1
    a1 = np.sign(h1)
    h2 = SW / np.sqrt(n) * a1 @ w2 + SB * b2
    a2 = np.sign(h2)
    f = kappa * (SW / np.sqrt(n) * a2 @ w3 + SB * b3)[:, 0]
    dpsi = lambda h: np.asarray(sur.derivative(jnp.asarray(h)))  # noqa: E731
    d3 = (kappa * (f - y) / len(y))[:, None]                      # dL/dh3, L = 1/(2n) sum r^2
    d2 = dpsi(h2) * (SW / np.sqrt(n) * d3 @ w3.T)
    d1 = dpsi(h1) * (SW / np.sqrt(n) * d2 @ w2.T)
    gw = (SW / np.sqrt(d) * x.T @ d1, SW / np.sqrt(n) * a1.T @ d2, SW / np.sqrt(n) * a2.T @ d3)
    gb = tuple(SB * dd.sum(0) for dd in (d1, d2, d3))
    return gw, gb, f


@pytest.mark.parametrize("shape", ["erf", "fast_sigmoid", "triangular"])
def test_surrogate_gradient_equals_manual_backward(shape):
    sur = S.get(shape, sharpness=1.7)
    x, y, _ = _data()
    p = mlp_init(jax.random.PRNGKey(3), 2, 16, 2)
    f = T.network_fn(activation="sign", surrogate=sur, sigma_w=SW, sigma_b=SB, output_scale=0.4)
    g = jax.grad(lambda q: 0.5 * jnp.mean((f(q, x) - y) ** 2))(p)
    gw, gb, _ = _manual_grads(p, x, y, sur, 0.4)
    for a, b in zip(g.weights + g.biases, gw + gb):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-10, atol=1e-13)
    # the true-gradient network: sign has zero derivative, only the read-out learns
    g0 = jax.grad(lambda q: 0.5 * jnp.mean((T.network_fn(activation="sign", sigma_w=SW,
                                                         sigma_b=SB)(q, x) - y) ** 2))(p)
    assert not np.any(np.asarray(g0.weights[0])) and np.any(np.asarray(g0.weights[2]))


def test_vmapped_ensemble_equals_per_network_loop():
    """train_ensemble (vmap + scan) == a Python loop over networks and steps with the manual
    psi' backward and plain GD (float64, 3 nets, 7 steps, output scale 0.5)."""
    sur = S.get("erf")
    x, y, xt = _data()
    steps, lr, kappa = 7, 0.3, 0.5
    r = T.train_ensemble(jax.random.PRNGKey(0), x, y, xt, n_networks=3, width=12, steps=steps,
                         activation="sign", surrogate=sur, sigma_w=SW, sigma_b=SB,
                         output_scale=kappa, learning_rate=lr, record_steps=[0, 3, 7],
                         dtype="float64")
    assert r.outputs.shape == (3, 3, 4) and r.train_loss.shape == (3, 3)
    keys = T.ensemble_keys(jax.random.PRNGKey(0), 3)
    f = T.network_fn(activation="sign", sigma_w=SW, sigma_b=SB, output_scale=kappa)
    for i in range(3):
        p = mlp_init(keys[i], 2, 12, 2)
        p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), p)
        rec = {0: np.asarray(f(p, xt))}
        for k in range(1, steps + 1):
            gw, gb, _ = _manual_grads(p, x, y, sur, kappa)
            p = type(p)(tuple(w - lr * g for w, g in zip(p.weights, gw)),
                        tuple(b - lr * g for b, g in zip(p.biases, gb)))
            rec[k] = np.asarray(f(p, xt))
        for j, k in enumerate((0, 3, 7)):
            np.testing.assert_allclose(r.outputs[i, j], rec[k], rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_chunking_and_padding_give_identical_results():
    x, y, xt = _data()
    kw = dict(n_networks=5, width=8, steps=6, activation="erf", m=2.0, surrogate="erf",
              record_steps=[0, 2, 6], kernel_x1=xt[:2], kernel_x2=xt, kernels=("sgntk",),
              dtype="float64")
    ref = T.train_ensemble(jax.random.PRNGKey(1), x, y, xt, chunk_size=5, **kw)
    for chunk, inner in ((2, -1), (5, 2)):  # 3 chunks, the last padded; lax.map groups of 2
        r = T.train_ensemble(jax.random.PRNGKey(1), x, y, xt, chunk_size=chunk,
                             inner_batch=inner, **kw)
        np.testing.assert_allclose(r.outputs, ref.outputs, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(r.kernels_final.sgntk, ref.kernels_final.sgntk, rtol=1e-12)
        assert r.kernels_init.nngp is None and r.kernels_init.sgntk.shape == (5, 2, 4)


@pytest.mark.slow
def test_output_scale_optax_and_validation():
    x, y, xt = _data()
    kw = dict(n_networks=2, width=8, steps=0, activation="sign", surrogate="erf",
              kernel_x1=x, kernels=("nngp", "sgntk"), jump_width=0.1, dtype="float64")
    r1 = T.train_ensemble(jax.random.PRNGKey(2), x, y, xt, **kw)
    r2 = T.train_ensemble(jax.random.PRNGKey(2), x, y, xt, output_scale=0.2, **kw)
    np.testing.assert_allclose(r2.outputs, 0.2 * r1.outputs, rtol=1e-12)
    np.testing.assert_allclose(r2.kernels_init.sgntk, 0.04 * r1.kernels_init.sgntk, rtol=1e-12)
    ra = T.train_ensemble(jax.random.PRNGKey(2), x, y, xt, n_networks=2, width=8, steps=50,
                          surrogate="erf", optimizer=optax.adam(1e-2), record_steps=[0, 50])
    assert np.all(ra.train_loss[:, -1] < ra.train_loss[:, 0])
    with pytest.raises(ValueError, match="record_steps"):
        T.train_ensemble(jax.random.PRNGKey(2), x, y, xt, n_networks=1, width=4, steps=5,
                         record_steps=[0, 9])
    with pytest.raises(ValueError, match="dtype"):
        T.train_ensemble(jax.random.PRNGKey(2), x, y, xt, n_networks=1, width=4, steps=5,
                         dtype="float16")


def test_kernel_regression_matches_wide_sgl_ensemble():
    """Sign nets (width 512, 48 nets) trained by SGL vs the SG-NTK GP at the same time.

    Tolerance: ensemble mean within 5 standard errors sqrt(var_GP/N) at every test point (a
    Bonferroni-style bound over 6 points, plus room for the O(n^-1/2) finite-width bias), and
    the pooled variance ratio within [0.5, 2] (sampling sd of a 48-sample variance ~ 21 %).
    """
    a_tr = np.linspace(-np.pi, np.pi, 6, endpoint=False)
    x = np.stack([np.sin(a_tr), 0.7 * np.cos(a_tr)], 1)
    y = np.cos(a_tr) + 0.5 * np.sin(2 * a_tr)
    a_te = np.linspace(-3.0, 3.0, 6)
    xt = np.stack([np.sin(a_te), 0.7 * np.cos(a_te)], 1)
    steps, lr, nets = 150, 0.2, 48
    r = T.train_ensemble(jax.random.PRNGKey(7), x, y, xt, n_networks=nets, width=512,
                         steps=steps, activation="sign", surrogate="erf", sigma_b=0.1,
                         learning_rate=lr, chunk_size=48)
    xa = np.concatenate([xt, x])
    k = kernels.mlp(xa, xa, depth=2, activation="sign", surrogate="erf", sigma_b=0.1,
                    which=("nngp", "sgntk"))
    I, Sg = np.asarray(k.sgntk), np.asarray(k.nngp)
    p = predict.gp_predict(I[:6, 6:], I[6:, 6:], y, t=float(steps), learning_rate=lr,
                           loss_normalization="mean", nngp_test_test=Sg[:6, :6],
                           nngp_test_train=Sg[:6, 6:], nngp_train_train=Sg[6:, 6:])
    out = r.outputs[:, -1].astype(np.float64)
    var = np.diag(np.asarray(p.cov))
    z = (out.mean(0) - np.asarray(p.mean)) / np.sqrt(var / nets)
    ratio = out.var(0, ddof=1).mean() / var.mean()
    assert np.max(np.abs(z)) < 5, f"worst z = {np.max(np.abs(z)):.2f} (z = {np.round(z, 2)})"
    assert 0.5 < ratio < 2, f"variance ratio {ratio:.3f}"
