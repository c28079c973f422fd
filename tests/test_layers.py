"""sgntk.layers: each layer's kernel map vs Monte Carlo over wide finite networks built from the
same layers' init/apply; apply's autodiff is SGL; heterogeneous serial vs neural-tangents.

Monte-Carlo statistic (as tests/test_kernels_mc.py): z = (MC mean - analytic) / MC standard error
for every compared entry, Bonferroni bound at family-wise level 1e-3 (|z| < ~4.2-4.5). For one
hidden layer the empirical kernels are *unbiased* at any width (first-layer pre-activations are
exactly Gaussian, read-out weights independent with unit variance), so only the smoothing of the
Dirac derivative of jumps (``jump_width`` 0.02: relative bias O(eps^2 psi''/psi) ~ 1e-3 for the
smooth surrogates used here) is outside the standard error; the depth-2 case adds an O(1/width)
finite-width bias (width 512: ~0.2 %, against relative standard errors of a few %).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from sgntk import empirical as EMP
from sgntk import layers as L
from sgntk import monte_carlo as MC
from sgntk import nt_compat
from sgntk import surrogates as S

pytestmark = pytest.mark.usefixtures("x64")

# Unequal norms: the SG-NTK is asymmetric here.
X = np.array([[0.5, -0.2, 0.3], [1.0, 0.4, -0.8], [-1.6, 1.1, 0.9], [0.2, 0.9, 1.3]])
SW, SB = 1.2, 0.2


def z_threshold(n_compared, family_level=1e-3):
    return norm.ppf(1 - family_level / (2 * n_compared))


def analytic(net, x, which=L.KERNELS):
    xj = jnp.asarray(x)
    return net.kernel(L.input_kernel(xj, xj, which))


def check_monte_carlo(net, which, *, n_networks, jump_width=None, seed=0):
    x = jnp.asarray(X)

    def sample(key):
        params = net.init(key, x.shape[1])[1]
        return EMP.network_empirical(net, params, x, x, jump_width=jump_width, which=which)

    mc = MC.estimate(sample, jax.random.PRNGKey(seed), n_networks, batch_size=16,
                     progress=False)
    an = analytic(net, X, which)
    zmax = {}
    for n in which:
        z = (np.asarray(getattr(mc.mean, n)) - np.asarray(getattr(an, n))) \
            / np.asarray(getattr(mc.stderr, n))
        zmax[n] = float(np.max(np.abs(z)))
    bound = z_threshold(len(which) * X.shape[0] ** 2)
    assert max(zmax.values()) < bound, (zmax, bound)


def one_hidden(act, width=512):
    return L.serial(L.Dense(SW, SB, width=width), act, L.Dense(SW, SB, width=1))


ONE_LAYER = [
    ("sign_erf", lambda: L.Sign("erf"), ("nngp", "sgntk", "sg_gram"), 0.02),
    ("step_gaussian", lambda: L.Step(S.get("gaussian", sharpness=0.7)),
     ("nngp", "sgntk", "sg_gram"), 0.02),
    ("erf_gaussian", lambda: L.Erf(2.0, S.get("gaussian", sharpness=1.5)),
     ("nngp", "ntk", "sgntk", "sg_gram"), None),
    ("elementwise_tanh", lambda: L.Elementwise(jnp.tanh, S.get("erf", sharpness=0.8)),
     ("nngp", "ntk", "sgntk", "sg_gram"), None),
]


@pytest.mark.parametrize("name, make, which, jump_width", ONE_LAYER, ids=[c[0] for c in ONE_LAYER])
def test_kernel_map_matches_monte_carlo_one_hidden_layer(name, make, which, jump_width):
    check_monte_carlo(one_hidden(make()), which, n_networks=64, jump_width=jump_width)


def test_heterogeneous_serial_matches_monte_carlo():
    # Two different activations in one network: something kernels.mlp cannot express.
    net = L.serial(L.Dense(SW, SB, width=512), L.Erf(1.5, S.get("gaussian", sharpness=1.0)),
                   L.Dense(SW, SB, width=512), L.Sign("erf"), L.Dense(SW, SB, width=1))
    check_monte_carlo(net, ("nngp", "sgntk", "sg_gram"), n_networks=48, jump_width=0.02, seed=1)


def test_monte_carlo_check_has_power():
    # The same statistic rejects a Dense kernel map with sigma_w 5 % too large.
    net = one_hidden(L.Sign("erf"))
    wrong = L.serial(L.Dense(1.05 * SW, SB), L.Sign("erf"), L.Dense(1.05 * SW, SB))
    with pytest.raises(AssertionError):
        check_monte_carlo(L.Network(net.init, net.apply, wrong.kernel, net.layers),
                          ("nngp", "sgntk"), n_networks=64, jump_width=0.02)


@pytest.mark.parametrize("make", [lambda s: L.Sign(s), lambda s: L.Step(s),
                                  lambda s: L.Erf(2.5, s),
                                  lambda s: L.Elementwise(lambda z: jnp.sin(z) + 0.3 * z, s)],
                         ids=["sign", "step", "erf", "elementwise"])
def test_structured_empirical_equals_autodiff_of_apply(make):
    # network_empirical (layer.fn/derivative/surrogate_derivative, VJP of Dense.apply) == the
    # Jacobians of apply: with the surrogate (SGL twin) and with surrogate=None (true network).
    sur = S.get("triangular", sharpness=0.8)
    sgl, true = one_hidden(make(sur), width=24), one_hidden(make(None), width=24)
    deep = L.serial(*sgl.layers[:2], L.Dense(SW, SB, width=16), make(sur), sgl.layers[2])
    deep_true = L.serial(*true.layers[:2], L.Dense(SW, SB, width=16), make(None), true.layers[2])
    x1 = jnp.asarray(X)
    x2 = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)))
    for net, net_true in ((sgl, true), (deep, deep_true)):
        params = net.init(jax.random.PRNGKey(0), 3)[1]
        f = lambda p, x: net.apply(p, x[None])[0, 0]  # noqa: E731
        f_true = lambda p, x: net_true.apply(p, x[None])[0, 0]  # noqa: E731
        general = jax.jit(lambda p: EMP.empirical_kernels(f_true, f, p, x1, x2))(params)
        fast = jax.jit(lambda p: EMP.network_empirical(net, p, x1, x2))(params)
        for n in L.KERNELS:
            np.testing.assert_allclose(np.asarray(getattr(fast, n)), np.asarray(getattr(general, n)),
                                       rtol=1e-10, atol=1e-12)


def test_apply_autodiff_is_the_surrogate_and_true_derivative_without_one():
    z = jnp.linspace(-2.0, 2.0, 9)
    sur = S.get("fast_sigmoid", sharpness=3.0)
    d = lambda layer: jax.vmap(jax.grad(lambda t: layer.apply((), t)))(z)  # noqa: E731
    for layer in (L.Sign(sur), L.Step(sur), L.Erf(2.0, sur), L.Elementwise(jnp.tanh, sur)):
        np.testing.assert_allclose(np.asarray(d(layer)), np.asarray(sur.derivative(z)), rtol=1e-14)
        np.testing.assert_allclose(np.asarray(layer.apply((), z)), np.asarray(layer.fn(z)), rtol=0)
    assert not np.any(np.asarray(d(L.Sign(None))))
    np.testing.assert_allclose(np.asarray(d(L.Erf(2.0, None))),
                               4 / np.sqrt(np.pi) * np.exp(-4 * np.asarray(z) ** 2), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(d(L.Elementwise(jnp.tanh))),
                               1 - np.tanh(np.asarray(z)) ** 2, rtol=1e-13)
    # values: sign(0) = 0, step(0) = 0 (as sgntk.surrogates)
    np.testing.assert_array_equal(np.asarray(L.Sign(sur).apply((), jnp.array([-1.0, 0.0, 2.0]))),
                                  [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(np.asarray(L.Step(sur).apply((), jnp.array([-1.0, 0.0, 2.0]))),
                                  [0.0, 0.0, 1.0])


def test_mlp_paper_check_values_and_diagonals():
    # Eilers et al. 2024: I_sign(0,0) = 2.4908, I_sign(0,pi) = -1.5448 (reference notes Sec. 2).
    x = np.stack([np.sin([0.0, np.pi]), np.cos([0.0, np.pi])], 1)
    k = analytic(L.mlp(depth=2, activation="sign", surrogate="erf", sigma_b=0.1), x)
    np.testing.assert_allclose(np.asarray(k.sgntk)[0], [2.4908, -1.5448], atol=5e-5)
    assert np.all(np.isinf(np.diag(np.asarray(k.ntk))))
    # var1/var2 carry the diagonal S(x, x) through the layers (0-d once it is the same for
    # every input, as after sign/step)
    for name in ("sign", "erf"):
        kw = dict(sharpness=1.5) if name == "erf" else {}
        k = analytic(L.mlp(depth=2, activation=name, surrogate="erf", sigma_b=0.1, **kw), X)
        diag = np.diag(np.asarray(k.nngp))
        np.testing.assert_allclose(np.broadcast_to(k.var1, (4, 1))[:, 0], diag, rtol=1e-14)
        np.testing.assert_allclose(np.broadcast_to(k.var2, (1, 4))[0], diag, rtol=1e-14)
    # kernels not asked for stay None through every layer
    k = analytic(L.mlp(depth=2, activation="sign", surrogate="erf", sigma_b=0.1), x,
                 which=("sgntk",))
    assert k.ntk is None and k.sg_gram is None and k.sgntk is not None


def test_mlp_init_key_layout():
    # Layer l's weights from split(key, 2 (depth + 1))[2 l], biases from [2 l + 1]: the draws
    # of the committed ensembles (paper_figs/eilers2024) stay the same.
    key = jax.random.PRNGKey(7)
    dim, p = L.mlp(depth=2, width=5).init(key, 3)
    keys = jax.random.split(key, 6)
    assert dim == 1 and [w.shape for w in p.weights] == [(3, 5), (5, 5), (5, 1)]
    for l in range(3):
        np.testing.assert_array_equal(np.asarray(p.weights[l]),
                                      np.asarray(jax.random.normal(keys[2 * l], p.weights[l].shape)))
        np.testing.assert_array_equal(np.asarray(p.biases[l]),
                                      np.asarray(jax.random.normal(keys[2 * l + 1], (p.weights[l].shape[1],))))


@pytest.mark.slow
def test_hyperparameters_are_traced_leaves():
    # vmap over sigma_w and grad over the erf sharpness go through the layers' kernel maps.
    x = jnp.asarray(X)

    @jax.jit
    def sgntk(sw, m):
        net = L.serial(L.Dense(sw, SB), L.Erf(m, "gaussian"), L.Dense(sw, SB))
        return net.kernel(L.input_kernel(x, x)).sgntk

    sws = jnp.array([0.8, 1.0, 1.5])
    grid = jax.vmap(lambda s: sgntk(s, 2.0))(sws)
    for i, s in enumerate(np.asarray(sws)):
        np.testing.assert_allclose(np.asarray(grid[i]), np.asarray(sgntk(float(s), 2.0)), rtol=1e-13)
    f = jax.jit(lambda m: sgntk(1.0, m)[0, 2])
    fd = (f(2.0 + 1e-5) - f(2.0 - 1e-5)) / 2e-5
    np.testing.assert_allclose(float(jax.grad(f)(2.0)), float(fd), rtol=1e-6)


@pytest.mark.skipif(not nt_compat.available(), reason="neural-tangents not installed")
def test_heterogeneous_serial_equals_neural_tangents():
    # With psi' = phi' (erf_m' as the surrogate of erf_m) the SG-NTK is the NTK, which
    # neural-tangents computes independently; two different sharpnesses in one network.
    nt = nt_compat.import_neural_tangents()
    m1, m2 = 0.7, 2.5
    ours = L.serial(L.Dense(SW, SB), L.Erf(m1, S.get("erf", sharpness=m1, dampening=m1)),
                    L.Dense(SW, SB), L.Erf(m2, S.get("erf", sharpness=m2, dampening=m2)),
                    L.Dense(SW, SB))
    _, _, kfn = nt.stax.serial(nt.stax.Dense(8, W_std=SW, b_std=SB), nt.stax.Erf(b=m1),
                               nt.stax.Dense(8, W_std=SW, b_std=SB), nt.stax.Erf(b=m2),
                               nt.stax.Dense(1, W_std=SW, b_std=SB))
    x2 = np.random.default_rng(1).normal(size=(3, 3))
    ref = kfn(jnp.asarray(X), jnp.asarray(x2), ("nngp", "ntk"))
    k = ours.kernel(L.input_kernel(jnp.asarray(X), jnp.asarray(x2)))
    for n in ("ntk", "sgntk", "sg_gram"):
        np.testing.assert_allclose(np.asarray(getattr(k, n)), np.asarray(ref.ntk), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(k.nngp), np.asarray(ref.nngp), rtol=1e-10)


def test_validation():
    with pytest.raises(ValueError, match="sigma_w"):
        L.Dense(0.0)
    with pytest.raises(ValueError, match="sigma_b"):
        L.Dense(1.0, -0.1)
    with pytest.raises(ValueError, match="width"):
        L.Dense(width=0)
    with pytest.raises(ValueError, match="width="):
        L.Dense().init(jax.random.PRNGKey(0), 3)
    with pytest.raises(ValueError, match="sharpness"):
        L.Erf(-1.0)
    with pytest.raises(ValueError, match="unknown surrogate"):
        L.Sign("bogus")
    with pytest.raises(ValueError, match="activation"):
        L.activation_layer("relu6")
    with pytest.raises(ValueError, match="depth"):
        L.mlp(depth=-1)
    with pytest.raises(ValueError, match="layers\\[1\\]"):
        L.serial(L.Dense(), object())
    net = L.serial(L.Dense(width=4), L.Dense(width=1))
    with pytest.raises(ValueError, match="Dense, activation"):
        EMP.network_empirical(net, net.init(jax.random.PRNGKey(0), 3)[1], jnp.asarray(X))
