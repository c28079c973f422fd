"""Analytic MLP kernels: paper check values, known limits, consistency and input validation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgntk import kernels as K
from sgntk import surrogates as S


def circle(angles):
    a = np.asarray(angles, dtype=float)
    return np.stack([np.sin(a), np.cos(a)], axis=1)


PAPER = dict(depth=2, sigma_w=1.0, sigma_b=0.1)


def test_paper_check_values():
    # Eilers et al. 2024 (reference notes Sec. 2): I_sign(0,0) = 2.4908, I_sign(0,pi) = -1.5448.
    k = K.mlp(circle([0.0, np.pi]), activation="sign", surrogate="erf", **PAPER)
    np.testing.assert_allclose(np.asarray(k.sgntk)[0], [2.4908, -1.5448], atol=5e-5)
    # Naive erf_m NTK at delta-angle 0: about 2.9 (m=2), 11.6 (m=5), 131 (m=20).
    diag = [float(K.mlp(circle([0.0]), activation="erf", m=m, which=("ntk",), **PAPER).ntk[0, 0])
            for m in (2, 5, 20)]
    np.testing.assert_allclose(diag, [2.9, 11.6, 131.0], rtol=0.02)


def test_sign_sgntk_closed_form_for_erf_surrogate():
    # Depth 1: I_2 = S_2 + S_1 * Sdot_2 with Sdot = sw^2 (2/pi) [a (1/2 + b) - r^2]^(-1/2).
    x = np.array([[0.3, 1.2], [-0.7, 0.4]])
    sb = 0.3
    k = K.mlp(x, depth=1, activation="sign", surrogate="erf", sigma_b=sb)
    s1 = x @ x.T / 2 + sb**2
    a, b = np.diag(s1)[:, None], np.diag(s1)[None, :]
    rho = np.clip(s1 / np.sqrt(a * b), -1, 1)
    s2 = 2 / np.pi * np.arcsin(rho) + sb**2
    sdot = 2 / np.pi / np.sqrt(a * (0.5 + b) - s1**2)
    np.testing.assert_allclose(np.asarray(k.nngp), s2, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(k.sgntk), s2 + s1 * sdot, rtol=1e-12)
    # Straight-through with sign: Sdot = sw^2 sqrt(2/(pi a)).
    k = K.mlp(x, depth=1, activation="sign", surrogate="straight_through", sigma_b=sb)
    np.testing.assert_allclose(np.asarray(k.sgntk), s2 + s1 * np.sqrt(2 / (np.pi * a)),
                               rtol=1e-12)


def test_sgntk_is_asymmetric_for_unequal_norms_and_symmetric_on_circle():
    x = circle([0.1, 1.0, 2.5]) * np.array([[0.5], [1.0], [2.0]])
    k = K.mlp(x, activation="sign", surrogate="fast_sigmoid", **PAPER)
    i = np.asarray(k.sgntk)
    assert np.max(np.abs(i - i.T)) > 5e-3 * np.max(np.abs(i))  # measured: 7.7e-3
    for name in ("nngp", "sg_gram"):
        g = np.asarray(getattr(k, name))
        np.testing.assert_allclose(g, g.T, rtol=1e-12 if name == "nngp" else 1e-4)
    kc = K.mlp(circle([0.1, 1.0, 2.5]), activation="sign", surrogate="fast_sigmoid", **PAPER)
    np.testing.assert_allclose(np.asarray(kc.sgntk), np.asarray(kc.sgntk).T, rtol=1e-12)


def test_x2_gives_the_transposed_roles():
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(3, 4)), 2 * rng.normal(size=(5, 4))
    kw = dict(activation="step", surrogate="sigmoid", depth=2, sigma_b=0.2, which=("nngp", "sgntk"))
    k12 = K.mlp(x1, x2, **kw)
    kall = K.mlp(np.vstack([x1, x2]), **kw)
    np.testing.assert_allclose(np.asarray(k12.sgntk), np.asarray(kall.sgntk)[:3, 3:], rtol=1e-12)
    # I(x1, x2) != I(x2, x1)^T in general: true and surrogate sides swap.
    k21 = K.mlp(x2, x1, **kw)
    assert not np.allclose(np.asarray(k12.sgntk), np.asarray(k21.sgntk).T, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(k12.nngp), np.asarray(k21.nngp).T, rtol=1e-12)


def test_erf_sgntk_converges_to_sign_like_one_over_m():
    x = circle(np.linspace(-np.pi, np.pi, 9)) * np.linspace(0.6, 1.6, 9)[:, None]
    ref = np.asarray(K.mlp(x, activation="sign", surrogate="erf", **PAPER).sgntk)
    ms = np.array([10.0, 30.0, 100.0, 300.0, 1000.0])
    errs = [np.max(np.abs(np.asarray(K.mlp(x, activation="erf", m=m, surrogate="erf",
                                            **PAPER).sgntk) - ref)) for m in ms]
    slope = np.polyfit(np.log(ms), np.log(errs), 1)[0]
    assert -1.3 < slope < -0.7, (slope, errs)


def test_naive_erf_ntk_diagonal_diverges_off_diagonal_converges():
    x = circle([0.0, 2.0])
    ms = [10.0, 100.0, 1000.0]
    ntks = [np.asarray(K.mlp(x, activation="erf", m=m, which=("ntk",), **PAPER).ntk) for m in ms]
    diag = [t[0, 0] for t in ntks]
    assert diag[0] < diag[1] < diag[2] and diag[2] / diag[1] > 5  # grows ~ m^L
    sign_ntk = np.asarray(K.mlp(x, activation="sign", which=("ntk",), **PAPER).ntk)
    assert np.isinf(sign_ntk[0, 0]) and np.isinf(sign_ntk[1, 1])
    off = [t[0, 1] for t in ntks]
    assert abs(off[2] - sign_ntk[0, 1]) < abs(off[0] - sign_ntk[0, 1])
    assert abs(off[2] - sign_ntk[0, 1]) < 1e-2 * abs(sign_ntk[0, 1])


@pytest.mark.parametrize("m", [0.5, 3.0])
def test_erf_with_its_true_derivative_as_surrogate_gives_the_ntk(m):
    # psi' = erf_m' = m * (2/sqrt(pi)) exp(-(m z)^2) = surrogate "erf" with sharpness = dampening = m.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 3)) * np.array([[0.2], [1.0], [3.0], [0.7], [1.5]])
    sur = S.get("erf", sharpness=m, dampening=m)
    k = K.mlp(x, activation="erf", m=m, surrogate=sur, depth=3, sigma_b=0.4)
    np.testing.assert_allclose(np.asarray(k.sgntk), np.asarray(k.ntk), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(k.sg_gram), np.asarray(k.ntk), rtol=1e-12)


def test_tiling_gives_the_same_kernel():
    rng = np.random.default_rng(3)
    x1, x2 = rng.normal(size=(13, 3)), rng.normal(size=(7, 3))
    kw = dict(activation="sign", surrogate="fast_sigmoid", depth=2, sigma_b=0.1,
              which=("nngp", "sgntk"))
    big = K.mlp(x1, x2, **kw)
    small = K.mlp(x1, x2, tile_size=4, progress=False, **kw)
    assert small.ntk is None and small.sg_gram is None
    for name in ("nngp", "sgntk"):
        np.testing.assert_array_equal(np.asarray(getattr(big, name)), np.asarray(getattr(small, name)))


def test_float64_is_scoped_and_results_are_float64():
    k = K.mlp(circle([0.0, 1.0]), activation="sign", depth=1)
    assert k.sgntk.dtype == jnp.float64
    assert jnp.ones(1).dtype == jnp.float32  # the user's default is untouched


def test_pure_kernel_fn_vmaps_and_differentiates_over_sharpness():
    fn = K.mlp_kernel_fn(depth=2, activation="sign", which=("sgntk",))
    x = jnp.asarray(circle([0.0, 1.0, 2.0]) * np.array([[1.0], [0.5], [2.0]]))
    betas = jnp.array([0.5, 1.0, 4.0])
    with jax.enable_x64(True):
        x = x.astype(jnp.float64)
        grid = jax.vmap(lambda b: fn(x, x, S.get("fast_sigmoid", sharpness=b), 1.0, 0.1).sgntk)(betas)
        for i, b in enumerate(np.asarray(betas)):
            one = K.mlp(np.asarray(x), activation="sign", surrogate=S.get("fast_sigmoid", sharpness=float(b)),
                        depth=2, sigma_b=0.1, which=("sgntk",)).sgntk
            np.testing.assert_allclose(np.asarray(grid[i]), np.asarray(one), rtol=1e-12)
        f = lambda b: fn(x, x, S.get("gaussian", sharpness=b), 1.0, 0.1).sgntk[0, 1]
        g = jax.grad(f)(2.0)
        fd = (f(2.0 + 1e-5) - f(2.0 - 1e-5)) / 2e-5
        np.testing.assert_allclose(float(g), float(fd), rtol=1e-6)


def test_generic_callable_activation_matches_erf_closed_form():
    m = 1.5
    x = np.array([[0.3, 1.0], [1.2, -0.4], [2.0, 0.5]])
    kw = dict(depth=2, sigma_b=0.2, surrogate="fast_sigmoid", which=("nngp", "ntk", "sgntk"))
    closed = K.mlp(x, activation="erf", m=m, **kw)
    generic = K.mlp(x, activation=lambda z: jax.scipy.special.erf(m * z), **kw)
    for name in ("nngp", "ntk", "sgntk"):
        np.testing.assert_allclose(np.asarray(getattr(generic, name)),
                                   np.asarray(getattr(closed, name)), rtol=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(activation="relu6"), "activation"),
    (dict(surrogate="bogus"), "unknown surrogate"),
    (dict(surrogate=S.Surrogate("fast_sigmoid")), None),
    (dict(depth=-1), "depth"),
    (dict(depth=1.5), "depth"),
    (dict(sigma_w=0.0), "sigma_w"),
    (dict(sigma_b=-1.0), "sigma_b"),
    (dict(activation="erf"), "m > 0"),
    (dict(activation="erf", m=0.0), "m must be"),
    (dict(m=2.0), "only used by"),
    (dict(which=("nngp", "foo")), "which"),
    (dict(which=()), "which"),
    (dict(tile_size=0), "tile_size"),
])
def test_bad_parameters_raise_named_errors(kwargs, match):
    kw = dict(depth=1, activation="sign", surrogate="erf") | kwargs
    if match is None:
        K.mlp(circle([0.0]), **kw)
        return
    with pytest.raises(ValueError, match=match):
        K.mlp(circle([0.0]), **kw)


def test_get_is_a_deprecated_alias_of_which():
    x = circle([0.0, 1.0])
    new = K.mlp(x, depth=1, activation="sign", which=("sgntk",))
    with pytest.warns(DeprecationWarning, match="which="):
        old = K.mlp(x, depth=1, activation="sign", get=("sgntk",))
    assert old.nngp is None and new.nngp is None
    np.testing.assert_array_equal(np.asarray(old.sgntk), np.asarray(new.sgntk))
    with pytest.warns(DeprecationWarning):
        fn = K.mlp_kernel_fn(depth=1, activation="sign", get=("nngp",))
    assert fn(jnp.asarray(x), jnp.asarray(x), S.get("erf"), 1.0, 0.0).sgntk is None
    with pytest.raises(ValueError, match="which= only"):
        K.mlp(x, depth=1, activation="sign", which=("nngp",), get=("nngp",))


def test_bad_surrogate_parameters_raise():
    for kw, match in [(dict(sharpness=0.0), "sharpness"), (dict(dampening=-1.0), "dampening")]:
        with pytest.raises(ValueError, match=match):
            K.mlp(circle([0.0]), depth=1, activation="sign", surrogate=S.get("triangular", **kw))


def test_bad_inputs_raise():
    x = circle([0.0, 1.0])
    with pytest.raises(ValueError, match="NaN or inf"):
        K.mlp(np.array([[np.nan, 1.0]]), depth=1, activation="sign")
    with pytest.raises(ValueError, match="NaN or inf"):
        K.mlp(x, np.array([[np.inf, 1.0]]), depth=1, activation="sign")
    with pytest.raises(ValueError, match="feature dimension"):
        K.mlp(x, np.ones((2, 3)), depth=1, activation="sign")
    with pytest.raises(ValueError, match="shape"):
        K.mlp(np.ones((2, 2, 2)), depth=1, activation="sign")


def test_zero_norm_inputs():
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"x1\[0\] has zero norm"):
        K.mlp(x, depth=1, activation="sign", sigma_b=0.0)
    # With a bias, or with a smooth activation, the kernel is defined and finite.
    for kw in (dict(activation="sign", sigma_b=0.1), dict(activation="erf", m=2.0)):
        k = K.mlp(x, depth=2, **kw, which=("nngp", "sgntk", "sg_gram"))
        for name in ("nngp", "sgntk", "sg_gram"):
            assert np.all(np.isfinite(np.asarray(getattr(k, name))))
