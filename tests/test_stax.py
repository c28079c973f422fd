"""sgntk.stax layers inside neural-tangents' stax, and neural-tangents as an independent check."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgntk import kernels as K
from sgntk import nt_compat
from sgntk import surrogates as S

pytestmark = pytest.mark.skipif(not nt_compat.available(),
                                reason="neural-tangents not installed")


@pytest.fixture(scope="module")
def nt():
    return nt_compat.import_neural_tangents()


def _mlp(nt, act_layer, depth, sw=1.0, sb=0.1):
    layers = []
    for _ in range(depth):
        layers += [nt.stax.Dense(512, W_std=sw, b_std=sb), act_layer]
    layers += [nt.stax.Dense(1, W_std=sw, b_std=sb)]
    return nt.stax.serial(*layers)


def _inputs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 3)) * np.array([[0.4], [1.0], [2.5], [1.2]]), rng.normal(size=(3, 3))


@pytest.mark.parametrize("m", [0.7, 3.0])
def test_erf_ntk_and_sgntk_equal_nt_erf_when_surrogate_is_true_derivative(nt, m):
    from sgntk import stax as sgstax
    x1, x2 = _inputs()
    sur = S.get("erf", sharpness=m, dampening=m)
    with jax.enable_x64(True):
        _, _, k_nt = _mlp(nt, nt.stax.Erf(a=1.0, b=m, c=0.0), depth=3, sb=0.3)
        _, _, k_sg = _mlp(nt, sgstax.Erf(m, sur), depth=3, sb=0.3)
        ref = k_nt(jnp.asarray(x1), jnp.asarray(x2), ("nngp", "ntk"))
        via_layer = k_sg(jnp.asarray(x1), jnp.asarray(x2), ("nngp", "ntk"))
    ours = K.mlp(x1, x2, depth=3, activation="erf", m=m, surrogate=sur, sigma_b=0.3)
    for a in (ours.ntk, ours.sgntk, via_layer.ntk):
        np.testing.assert_allclose(np.asarray(a), np.asarray(ref.ntk), rtol=1e-10)
    for a in (ours.nngp, via_layer.nngp):
        np.testing.assert_allclose(np.asarray(a), np.asarray(ref.nngp), rtol=1e-10)


def test_sign_nngp_equals_nt_sign(nt):
    x1, x2 = _inputs()
    with jax.enable_x64(True):
        _, _, k_nt = _mlp(nt, nt.stax.Sign(), depth=3)
        ref = k_nt(jnp.asarray(x1), jnp.asarray(x2), "nngp")
    ours = K.mlp(x1, x2, depth=3, activation="sign", sigma_b=0.1, which=("nngp",))
    np.testing.assert_allclose(np.asarray(ours.nngp), np.asarray(ref), rtol=1e-10)


@pytest.mark.parametrize("act, sur", [("sign", "erf"),
                                      pytest.param("sign", "fast_sigmoid", marks=pytest.mark.slow),
                                      pytest.param("step", "triangular", marks=pytest.mark.slow)])
def test_stax_layers_give_the_sgntk(nt, act, sur):
    from sgntk import stax as sgstax
    x1, x2 = _inputs()
    layer = sgstax.Sign(sur) if act == "sign" else sgstax.Step(sur)
    with jax.enable_x64(True):
        _, _, kfn = _mlp(nt, layer, depth=2)
        k = kfn(jnp.asarray(x1), jnp.asarray(x2), ("nngp", "ntk"))
        kself = kfn(jnp.asarray(x1), None, "ntk")
    ours = K.mlp(x1, x2, depth=2, activation=act, surrogate=sur, sigma_b=0.1,
                 which=("nngp", "sgntk"))
    np.testing.assert_allclose(np.asarray(k.ntk), np.asarray(ours.sgntk), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(k.nngp), np.asarray(ours.nngp), rtol=1e-10)
    # x2 = None: still asymmetric (true derivative on the row side).
    ours_self = K.mlp(x1, depth=2, activation=act, surrogate=sur, sigma_b=0.1, which=("sgntk",))
    np.testing.assert_allclose(np.asarray(kself), np.asarray(ours_self.sgntk), rtol=1e-10)


@pytest.mark.slow
def test_convolutional_sgntk_runs_and_is_asymmetric(nt):
    from sgntk import stax as sgstax
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 6, 2)) * np.array([0.5, 1.0, 2.0])[:, None, None, None]
    with jax.enable_x64(True):
        _, _, kfn = nt.stax.serial(nt.stax.Conv(8, (3, 3), b_std=0.1), sgstax.Sign("fast_sigmoid"),
                                   nt.stax.Flatten(), nt.stax.Dense(1, b_std=0.1))
        k = np.asarray(kfn(jnp.asarray(x), None, "ntk"))
    assert np.all(np.isfinite(k))
    assert np.max(np.abs(k - k.T)) > 1e-3 * np.max(np.abs(k))


def test_apply_fn_autodiff_uses_the_surrogate(nt):
    from sgntk import stax as sgstax
    sur = S.get("triangular", sharpness=2.0)
    init_fn, apply_fn, _ = nt.stax.serial(nt.stax.Dense(4), sgstax.Sign(sur), nt.stax.Dense(1))
    _, params = init_fn(jax.random.PRNGKey(0), (1, 3))
    x = jnp.array([[0.3, -0.2, 0.5]])
    f = lambda p: apply_fn(p, x).sum()
    g = jax.grad(f)(params)
    # The true sign derivative is 0; the backward pass uses psi' instead. neural-tangents'
    # Dense (NTK parameterisation, no bias): h = x W1 / sqrt(3), y = sign(h) W2 / sqrt(4), so
    # dy/dW1[i, j] = x_i / sqrt(3) * psi'(h_j) * W2[j] / sqrt(4), written out by hand.
    w1, w2 = params[0][0], params[2][0]
    h = (x @ w1 / jnp.sqrt(3.0))[0]
    want = (x[0][:, None] / jnp.sqrt(3.0)) * (sur.derivative(h) * w2[:, 0] / 2.0)[None, :]
    np.testing.assert_allclose(np.asarray(g[0][0]), np.asarray(want), rtol=1e-6, atol=1e-12)
    assert np.count_nonzero(np.asarray(want)) > 0      # the check is not 0 == 0
