"""ASGL (sgntk.asgl, lif_train mode="asgl"): limits, gradients, training, kernels, validation.

Independent routes: scipy quadrature of the surrogate profiles (the smooth step G), a numpy
LIF loop (the smooth network), plain ``snn_apply`` (the SNN), central finite differences,
``sgntk.empirical.empirical_kernel`` (generic per-example Jacobians).
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate

from sgntk import asgl, data, empirical, lif, lif_train, surrogates

x64 = pytest.mark.usefixtures("x64")  # float64 for the numerical checks (training runs in float32)

SHAPES = tuple(asgl._CDFS)


def _net(key=0, n_in=5, n_hidden=(6, 4), n_out=3, scale=3.0):
    return lif.init_snn(jax.random.key(key), n_in, n_hidden, n_out, init="gaussian",
                        sigma_w=scale, sigma_out=1.0)


def _x(key=1, batch=3, T=12, n_in=5):
    return (jax.random.uniform(jax.random.key(key), (batch, T, n_in)) < 0.3).astype(jnp.float64)


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


@x64
@pytest.mark.parametrize("shape", SHAPES)
def test_smooth_step_is_the_profile_antiderivative(shape):
    sur = surrogates.get(shape, tail=3.0 if shape == "q_pseudo_spike" else None)
    q = sur.tail
    scale = 0.5 if shape == "erf" else 1.0
    g = lambda u: scale * float(sur.profile(jnp.asarray(u, jnp.float64)))  # noqa: E731
    G = lambda u: float(asgl.smooth_step(shape, jnp.asarray(u, jnp.float64), q))  # noqa: E731
    for a, b in [(-3.0, -0.7), (-0.7, 0.2), (0.2, 0.45), (0.45, 4.0), (-0.3, 0.3)]:
        pts = [p for p in (-1.0, -0.5, 0.0, 0.5, 1.0) if a < p < b]
        ref, _ = integrate.quad(g, a, b, points=pts or None, epsabs=1e-13, epsrel=1e-12)
        assert G(b) - G(a) == pytest.approx(ref, abs=1e-11)
    assert G(-1e9) == pytest.approx(0.0, abs=1e-8) and G(1e9) == pytest.approx(1.0, abs=1e-8)
    u = jnp.linspace(-2.3, 2.3, 40)  # not 0 (sign(u) in the closed forms), nor the kinks
    dG = jax.vmap(jax.grad(lambda v: asgl.smooth_step(shape, v, q)))(u)
    np.testing.assert_allclose(dG, scale * sur.profile(u), rtol=1e-12, atol=1e-14)


@x64
def test_straight_through_has_no_smooth_step():
    with pytest.raises(ValueError, match="straight_through"):
        asgl.check_shape("straight_through")


def _apply(net, x, p, beta, shape="sigmoid", key=3, **kw):
    cfg = lif.LIFConfig(surrogate=surrogates.get(shape))
    params = asgl.init_params(_f64(net), beta)
    params = params._replace(width=jnp.asarray(params.width, jnp.float64))
    return asgl.asgl_apply(params, x, config=cfg, noise_rate=p, key=jax.random.key(key), **kw)


def _numpy_smooth_network(net, x, beta, shape, cfg):
    """Independent forward of the smooth network (every output G(beta (U - theta)))."""
    b_syn = math.exp(-cfg.dt / cfg.tau_syn)
    b_mem = math.exp(-cfg.dt / cfg.tau_mem)
    b_ro = math.exp(-cfg.dt / cfg.tau_readout)
    G = lambda u: np.asarray(asgl.smooth_step(shape, jnp.asarray(u)))  # noqa: E731
    h = np.asarray(x)
    for p in net.hidden:
        w = np.asarray(p.w_in, np.float64)
        i = np.zeros((h.shape[0], w.shape[1]))
        u = np.zeros_like(i)
        outs = []
        for t in range(h.shape[1]):
            s = G(beta * (u - cfg.threshold))
            outs.append(s)
            new_i = b_syn * i + h[:, t] @ w
            u = (b_mem * u + (1 - b_mem) * i) * (1 - s)  # reset "zero" with the smooth output
            i = new_i
        h = np.stack(outs, 1)
    w = np.asarray(net.readout.w, np.float64)
    i = np.zeros((h.shape[0], w.shape[1]))
    u = np.zeros_like(i)
    trace = []
    for t in range(h.shape[1]):
        u = b_ro * u + (1 - b_ro) * i
        i = b_syn * i + h[:, t] @ w
        trace.append(u)
    return np.max(np.stack(trace, 1), axis=1)


@x64
@pytest.mark.parametrize("shape", ["sigmoid", pytest.param("fast_sigmoid", marks=pytest.mark.slow),
                                   pytest.param("triangular", marks=pytest.mark.slow)])
def test_noise_rate_zero_is_the_smooth_network(shape):
    net, x = _net(), _x()
    out = _apply(net, x, 0.0, 2.0, shape)
    ref = _numpy_smooth_network(net, x, 2.0, shape, lif.LIFConfig())
    np.testing.assert_allclose(out.logits, ref, rtol=1e-12, atol=1e-12)
    assert np.any((np.asarray(out.spikes[0]) > 0) & (np.asarray(out.spikes[0]) < 1))


@x64
@pytest.mark.parametrize("beta", [0.3, pytest.param(5.0, marks=pytest.mark.slow)])
def test_noise_rate_one_is_the_snn(beta):
    net, x = _net(), _x()
    out = _apply(net, x, 1.0, beta)
    ref = lif.snn_apply(_f64(net), x, config=lif.LIFConfig())
    np.testing.assert_array_equal(out.logits, ref.logits)
    for s, r in zip(out.spikes, ref.spikes):
        np.testing.assert_array_equal(s, r)
    assert sum(float(s.sum()) for s in ref.spikes) > 0


@x64
@pytest.mark.parametrize("shape", [s if s in ("sigmoid", "triangular") else
                                   pytest.param(s, marks=pytest.mark.slow) for s in SHAPES])
def test_width_to_zero_is_the_snn(shape):
    """alpha -> 0 at any noise rate: G(beta v) -> H(v), the noisy network -> the SNN."""
    net, x = _net(), _x()
    ref = lif.snn_apply(_f64(net), x, config=lif.LIFConfig())
    errs = []
    cfg = lif.LIFConfig(surrogate=surrogates.get(shape))
    z = asgl.masks(jax.random.key(3), x.shape[:1], x.shape[1], [6, 4], 0.3, jnp.float64)
    run = jax.jit(lambda b: asgl.asgl_apply(asgl.ASGLParams(_f64(net), jnp.full((2,), b)), x,
                                            config=cfg, noise_rate=0.3, key=None, noise=z).logits)
    for beta in (1e3, 1e5, 1e7, 1e9):
        errs.append(float(jnp.max(jnp.abs(run(jnp.float64(beta)) - ref.logits))))
    assert errs[-1] < 1e-6, errs
    assert errs[-1] <= errs[0]
    if shape in ("triangular", "rectangular"):  # compact profiles: exact once beta |v| > 1
        assert errs[-1] == 0.0


@x64
@pytest.mark.parametrize("width_param", ["log", pytest.param("inverse", marks=pytest.mark.slow)])
def test_gradient_at_noise_rate_zero_matches_finite_differences(width_param):
    """p = 0: ASGL's gradient is the exact gradient of the smooth network (widths, weights)."""
    net, x = _f64(_net()), _x()
    labels = jnp.array([0, 2, 1])
    # differentiable reset: with the default detached reset autodiff is not the exact gradient
    cfg = lif.LIFConfig(surrogate=surrogates.get("sigmoid"), detach_reset=False)
    reg = {k: 0.5 for k in ("lower_strength", "lower_threshold", "upper_strength",
                            "upper_threshold")}
    p0 = asgl.ASGLParams(net, asgl.raw_width(jnp.array([1.5, 0.7], jnp.float64), width_param))

    @jax.jit
    def loss(params):
        return lif_train.asgl_loss_fn(params, x, labels, jax.random.key(0), lif_config=cfg,
                                      reg=reg, noise_rate=0.0, width_param=width_param)[0]

    g = jax.grad(loss)(p0)
    h = 1e-6
    for layer in range(2):
        e = jnp.zeros(2).at[layer].set(h)
        fd = (loss(p0._replace(width=p0.width + e))
              - loss(p0._replace(width=p0.width - e))) / (2 * h)
        assert np.isfinite(float(g.width[layer]))
        assert float(g.width[layer]) == pytest.approx(float(fd), rel=1e-6, abs=1e-10)
    assert abs(float(g.width[0])) > 1e-6
    w = net.hidden[0].w_in
    gw = np.asarray(g.net.hidden[0].w_in)
    ij = np.unravel_index(np.argmax(np.abs(gw)), gw.shape)  # the largest entry (FD rounding
    bump = lambda d: p0._replace(net=p0.net._replace(hidden=(  # noqa: E731   ~1e-10 absolute)
        p0.net.hidden[0]._replace(w_in=w.at[ij].add(d)),) + p0.net.hidden[1:]))
    fd = (loss(bump(h)) - loss(bump(-h))) / (2 * h)
    assert abs(gw[ij]) > 1e-3
    assert float(gw[ij]) == pytest.approx(float(fd), rel=1e-6)


@x64
def test_gradient_finite_and_spike_mode_is_sgl():
    """0 < p < 1: finite gradients; p = 1 with the width frozen: ASGL's weight gradient is the
    fixed-width SGL gradient with the unit-area surrogate G' (dampening = sharpness)."""
    net, x = _f64(_net()), _x()
    labels = jnp.array([0, 2, 1])
    beta = 1.5
    reg = lif_train._reg(lif_train.TrainConfig())
    reg = {k: jnp.float64(v) for k, v in reg.items()}
    cfg = lif.LIFConfig(surrogate=surrogates.get("sigmoid", sharpness=beta, dampening=beta))
    params = asgl.ASGLParams(net, jnp.full((2,), beta, jnp.float64))
    grad = jax.jit(jax.grad(lambda q, p: lif_train.asgl_loss_fn(
        q, x, labels, jax.random.key(5), lif_config=cfg, reg=reg, noise_rate=p)[0]))
    for p in (0.3, 0.8):
        g = grad(params, jnp.float64(p))
        assert all(np.all(np.isfinite(a)) for a in jax.tree_util.tree_leaves(g))
        assert np.all(np.asarray(g.width) != 0)
    g1 = grad(params, jnp.float64(1.0))
    g_sgl = jax.grad(lambda q: lif_train.loss_fn(q, x, labels, lif_config=cfg, reg=reg)[0])(net)
    for a, b in zip(jax.tree_util.tree_leaves(g1.net), jax.tree_util.tree_leaves(g_sgl)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def _tiny_splits():
    ds = data.randman(nb_classes=3, nb_units=8, nb_steps=12, nb_samples=10, seed=0)
    return data.split(ds, (0.6, 0.2, 0.2), seed=0)


def test_short_training_changes_the_width_and_evaluates_the_hard_network():
    splits = _tiny_splits()
    cfg = lif_train.TrainConfig(n_hidden=8, batch_size=6, epochs=2, surrogate="sigmoid",
                                beta=2.0, mode="asgl", asgl_width_param="log",
                                asgl_width_lr=0.1)
    seen = []
    params, hist = lif_train.train(cfg, splits, progress=False,
                                   callback=lambda e, p: seen.append(e))
    assert seen == [0, 1, 2]
    assert isinstance(params, asgl.ASGLParams)
    beta = np.asarray(hist["sharpness"])
    assert beta.shape == (2, 1) and np.all(np.isfinite(beta)) and np.all(beta > 0)
    assert abs(beta[-1, 0] - 2.0) > 0.05  # lr 0.1 in log space, 2 x 3 steps: the width moved
    lc = lif_train.make_lif_config(cfg)
    ev = lif_train.evaluate(params, splits.val.spikes, splits.val.labels, lif_config=lc)
    hard = lif.snn_apply(params.net, jnp.asarray(splits.val.spikes), config=lc)
    acc = float(np.mean(np.argmax(hard.logits, -1) == splits.val.labels))
    assert ev["accuracy"] == pytest.approx(acc)
    assert hist["val_acc"][-1] == pytest.approx(acc)


@pytest.mark.slow
def test_inverse_width_stays_above_the_floor():
    """``"inverse"`` (the public code's raw 1/alpha) with a huge lr is projected onto the floor."""
    cfg = lif_train.TrainConfig(n_hidden=8, batch_size=6, epochs=1, surrogate="sigmoid",
                                beta=2.0, mode="asgl", asgl_width_param="inverse",
                                asgl_width_lr=5.0)
    _, hist = lif_train.train(cfg, _tiny_splits(), progress=False)
    assert np.all(np.asarray(hist["sharpness"]) >= asgl.MIN_SHARPNESS)


def test_sgl_mode_is_the_default_and_returns_plain_params():
    assert lif_train.TrainConfig().mode == "sgl"
    splits = _tiny_splits()
    params, hist = lif_train.train(lif_train.TrainConfig(n_hidden=8, batch_size=6, epochs=1),
                                   splits, progress=False)
    assert isinstance(params, lif.SNNParams) and "sharpness" not in hist


@pytest.mark.parametrize("field,value,match", [
    ("mode", "adaptive", "mode must be one of"),
    ("asgl_noise_rate", 1.5, "noise_rate"),
    ("asgl_noise_rate", -0.1, "noise_rate"),
    ("asgl_width_lr", 0.0, "asgl_width_lr"),
    ("asgl_width_param", "softplus", "asgl_width_param"),
    ("surrogate", "straight_through", "straight_through"),
    ("dampening", 2.0, "dampening"),
])
def test_config_validation(field, value, match):
    cfg = dataclasses.replace(lif_train.TrainConfig(mode="asgl", surrogate="sigmoid"),
                              **{field: value})
    with pytest.raises(ValueError, match=match):
        lif_train.validate(cfg)
    with pytest.raises(ValueError, match=match):
        lif_train.train(cfg, _tiny_splits(), progress=False)


@x64
def test_kernel_argument_errors():
    net, x = _net(), _x()
    cfg = lif.LIFConfig(surrogate=surrogates.get("sigmoid"))
    with pytest.raises(ValueError, match="mode"):
        asgl.empirical_kernels(net, x, config=cfg, mode="ntk")
    with pytest.raises(ValueError, match="beta"):
        asgl.empirical_kernels(net, x, config=cfg, mode="asgl")
    with pytest.raises(ValueError, match="noise_rate"):
        asgl.empirical_kernels(net, x, config=cfg, beta=1.0, noise_rate=2.0)
    with pytest.raises(ValueError, match="n_masks"):
        asgl.empirical_kernels(net, x, config=cfg, beta=1.0, n_masks=0)
    with pytest.raises(ValueError, match="init_params|beta"):
        asgl.init_params(net, -1.0)


@x64
@pytest.mark.slow
def test_empirical_kernels_vs_generic_jacobians():
    """The mask-averaged kernels == sgntk.empirical.empirical_kernel per output, one mask."""
    net, x = _f64(_net()), _x(batch=4)
    beta = 1.3
    cfg = lif.LIFConfig(surrogate=surrogates.get("sigmoid", sharpness=beta, dampening=beta),
                        readout="sum")
    key = jax.random.key(7)
    k = asgl.empirical_kernels(net, x, config=cfg, beta=beta, noise_rate=0.5, key=key,
                               n_masks=1, spike_sharpness=4.0)
    z = asgl.masks(jax.random.split(key, 1)[0], (4,), x.shape[1], [6, 4], 0.5, jnp.float64)
    betas = jnp.full((2,), beta)

    def f(jump, c):
        fn = asgl.spike_fn(betas, "sigmoid", 2.0, jump)
        return lambda p, xz: lif.snn_apply(p, xz[0], config=cfg, spike_fn=fn,
                                           noise=xz[1]).logits[c]

    generic = jax.jit(lambda n, xz: (
        sum(empirical.empirical_kernel(f(4.0, c), f(None, c), n, xz) for c in range(3)) / 3,
        sum(empirical.empirical_kernel(f(None, c), f(None, c), n, xz) for c in range(3)) / 3))
    sg, gram = generic(net, (x, z))
    np.testing.assert_allclose(k["sgntk"], sg, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(k["sg_gram"], gram, rtol=1e-10, atol=1e-12)
    assert not np.allclose(k["sgntk"], k["sg_gram"])


@x64
@pytest.mark.slow
def test_empirical_kernels_spike_mode_is_sgl():
    """p = 1 (spike mode everywhere): the ASGL kernels == the SGL ones with surrogate G'."""
    net, x = _f64(_net()), _x(batch=4)
    beta = 1.3
    cfg = lif.LIFConfig(surrogate=surrogates.get("sigmoid", sharpness=beta, dampening=beta),
                        readout="sum")
    k1 = asgl.empirical_kernels(net, x, config=cfg, beta=beta, noise_rate=1.0, n_masks=2,
                                spike_sharpness=4.0)
    ks = asgl.empirical_kernels(net, x, config=cfg, mode="sgl", spike_sharpness=4.0)
    np.testing.assert_allclose(k1["sg_gram"], ks["sg_gram"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(k1["sgntk"], ks["sgntk"], rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_experiment_smoke(tmp_path):
    """experiments/asgl/run.py --smoke runs, writes one file per unit and resumes."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "experiments", "asgl", "run.py")
    spec = importlib.util.spec_from_file_location("asgl_run", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--smoke", "--out", str(tmp_path), "--no-progress", "--task", "randman"]) == 0
    files = sorted(p.name for p in (tmp_path / "randman").iterdir())
    assert len(files) == 5  # 2 widths x 2 modes, and the kernel grid
    mtimes = [os.path.getmtime(tmp_path / "randman" / n) for n in files]
    assert mod.main(["--smoke", "--out", str(tmp_path), "--no-progress", "--task", "randman"]) == 0
    assert mtimes == [os.path.getmtime(tmp_path / "randman" / n) for n in files]
