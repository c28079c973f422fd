"""Empirical kernels: structured MLP fast path vs Jacobians of the true/surrogate networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgntk import empirical as EMP
from sgntk import monte_carlo as MC
from sgntk import surrogates as S


pytestmark = pytest.mark.usefixtures("x64")


@pytest.mark.parametrize("activation, shape", [
    pytest.param("sign", "fast_sigmoid", marks=pytest.mark.slow),
    pytest.param("step", "triangular", marks=pytest.mark.slow), ("erf", "sigmoid")])
def test_structured_path_equals_jacobian_contraction(activation, shape):
    sur = S.get(shape, sharpness=1.5)
    kw = dict(activation=activation, sigma_w=1.3, sigma_b=0.2, m=2.0)
    params = EMP.mlp_init(jax.random.PRNGKey(0), 3, 16, 2)
    x1 = jax.random.normal(jax.random.PRNGKey(1), (4, 3)) * jnp.array([[0.5], [1.0], [2.0], [1.5]])
    x2 = jax.random.normal(jax.random.PRNGKey(2), (5, 3))
    f_true = lambda p, x: EMP.mlp_apply(p, x[None], **kw)[0]
    f_sur = lambda p, x: EMP.mlp_surrogate_apply(p, x[None], surrogate=sur, **kw)[0]
    general = EMP.empirical_kernels(f_true, f_sur, params, x1, x2)
    fast = EMP.mlp_empirical(params, x1, x2, surrogate=sur, **kw)
    for name in ("nngp", "ntk", "sgntk", "sg_gram"):
        np.testing.assert_allclose(np.asarray(getattr(fast, name)),
                                   np.asarray(getattr(general, name)), rtol=1e-10, atol=1e-12)


def test_jump_true_derivative_is_readout_only():
    # Finite sign network: J(x) has only read-out entries, so J J~^T = a_L(x) . a_L(x') / n + sb^2.
    params = EMP.mlp_init(jax.random.PRNGKey(3), 2, 32, 2)
    x = jax.random.normal(jax.random.PRNGKey(4), (3, 2))
    k = EMP.mlp_empirical(params, x, activation="sign", surrogate="erf", sigma_b=0.1)
    w1, w2 = params.weights[:2]
    b1, b2 = params.biases[:2]
    a1 = jnp.sign(x @ w1 / jnp.sqrt(2.0) + 0.1 * b1)
    a_last = jnp.sign(a1 @ w2 / jnp.sqrt(32.0) + 0.1 * b2)
    np.testing.assert_allclose(np.asarray(k.sgntk), np.asarray(a_last @ a_last.T / 32 + 0.01),
                               rtol=1e-12)
    assert not np.allclose(np.asarray(k.sg_gram), np.asarray(k.sgntk))


def test_surrogate_apply_gradient_uses_psi():
    sur = S.get("fast_sigmoid", sharpness=2.0)
    params = EMP.mlp_init(jax.random.PRNGKey(5), 2, 8, 1)
    x = jnp.array([[0.4, -0.3]])
    g = jax.grad(lambda p: EMP.mlp_surrogate_apply(p, x, activation="sign", surrogate=sur).sum())(params)
    # Manual: df/dW1 = (1/sqrt 2) x^T (psi'(h1) * (1/sqrt 8) W2^T)
    h1 = x @ params.weights[0] / jnp.sqrt(2.0)
    delta = sur.derivative(h1) * (params.weights[1][:, 0] / jnp.sqrt(8.0))
    np.testing.assert_allclose(np.asarray(g.weights[0]), np.asarray(x.T @ delta / jnp.sqrt(2.0)),
                               rtol=1e-12)


def test_monte_carlo_estimate_mean_and_stderr():
    # A sample with known mean and variance: N(mu, 4) per entry.
    mu = jnp.array([1.0, -2.0])
    est = MC.estimate(lambda k: mu + 2.0 * jax.random.normal(k, (2,)), jax.random.PRNGKey(0),
                      4000, batch_size=256)
    np.testing.assert_allclose(np.asarray(est.stderr), 2.0 / np.sqrt(4000), rtol=0.05)
    assert np.all(np.abs(np.asarray(est.mean) - np.asarray(mu)) < 4.5 * np.asarray(est.stderr))
    with pytest.raises(ValueError, match="n_samples"):
        MC.estimate(lambda k: mu, jax.random.PRNGKey(0), 1)


def test_monte_carlo_validates():
    x = np.ones((2, 2))
    with pytest.raises(ValueError, match="width"):
        MC.mlp_kernels(x, depth=1, activation="sign", width=0, n_networks=4)
    with pytest.raises(ValueError, match="jump_width"):
        MC.mlp_kernels(x, depth=1, activation="sign", width=8, n_networks=4, jump_width=-1.0)
