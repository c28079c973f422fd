"""Tests for sgntk.lif (LIF dynamics), sgntk.data (randman etc.) and sgntk.lif_train."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgntk import data, lif, lif_train
from sgntk import surrogates as sg

# tau = dt / ln 2 gives b_syn = b_mem = 1/2 (up to float rounding), so the hand
# computations below are in halves.
TAU_HALF = 1.0 / np.log(2.0)


def _single(w, reset="zero", detach=True, sharpness=5.0, w_rec=None, T=8, spike_steps=(0,)):
    cfg = lif.LIFConfig(tau_mem=TAU_HALF, tau_syn=TAU_HALF, reset=reset, detach_reset=detach,
                        surrogate=sg.get("fast_sigmoid", sharpness=sharpness))
    x = jnp.zeros((T, 1)).at[jnp.array(spike_steps), 0].set(1.0)
    p = lif.LIFParams(jnp.array([[w]], jnp.float32),
                      None if w_rec is None else jnp.array([[w_rec]], jnp.float32))
    return lif.lif_layer(p, x, config=cfg), cfg, x


# ----------------------------------------------------------------------------------------
# Hand-computed single neuron.
# ----------------------------------------------------------------------------------------
def test_single_neuron_fires_at_expected_steps():
    # One input spike at n = 0, weight w = 6, b_syn = b_mem = 1/2, theta = 1:
    #   I[1] = 6, I[2] = 3, I[3] = 1.5, I[4] = 0.75, I[5] = 0.375 (I[n+1] = I[n]/2 + 6 S_in[n])
    #   U[1] = 0, U[2] = 0.5*0 + 0.5*6 = 3  -> S[2] = 1 (U[0] = U[1] = 0: no spike before)
    # reset to zero:   U[3] = (1.5 + 1.5)(1 - 1) = 0, U[4] = 0 + 0.75 = 0.75,
    #                  U[5] = 0.375 + 0.375 = 0.75, U[6] = 0.375 + 0.1875 = 0.5625 -> only S[2]
    # subtraction:     U[3] = 1.5 + 1.5 - 1 = 2 -> S[3] = 1, U[4] = 1 + 0.75 - 1 = 0.75,
    #                  U[5] = 0.375 + 0.375 = 0.75, ... -> S[2], S[3]
    out, _, _ = _single(6.0, reset="zero")
    np.testing.assert_array_equal(np.flatnonzero(out.spikes[:, 0]), [2])
    np.testing.assert_allclose(out.membrane[:7, 0], [0, 0, 3, 0, 0.75, 0.75, 0.5625], atol=1e-5)
    out, _, _ = _single(6.0, reset="subtract")
    np.testing.assert_array_equal(np.flatnonzero(out.spikes[:, 0]), [2, 3])
    np.testing.assert_allclose(out.membrane[:6, 0], [0, 0, 3, 2, 0.75, 0.75], atol=1e-5)
    out, _, _ = _single(6.0, reset="none")
    # free membrane: U[3] = 1.5 + 1.5 = 3, U[4] = 1.5 + 0.75 = 2.25, U[5] = 1.125 + 0.375 = 1.5
    np.testing.assert_allclose(out.membrane[:6, 0], [0, 0, 3, 3, 2.25, 1.5], atol=1e-5)
    np.testing.assert_array_equal(np.flatnonzero(out.spikes[:, 0]), [2, 3, 4, 5])


def test_subthreshold_input_never_spikes_and_equals_psp_kernel():
    out, cfg, _ = _single(0.5, reset="zero", T=60)
    assert float(out.spikes.sum()) == 0.0
    # eps[m+2] = (1-b_m)(b_m^(m+1) - b_s^(m+1))/(b_m - b_s) -> equal decays (1-b)(m+1)b^m
    b = 0.5
    m = np.arange(58)
    eps = np.concatenate([[0, 0], (1 - b) * (m + 1) * b**m])
    np.testing.assert_allclose(out.membrane[:, 0], 0.5 * eps, atol=1e-6)


def test_psp_moments_match_simulation():
    for tau_m, tau_s in [(10.0, 5.0), (20.0, 5.0), (5.0, 5.0), (5.0, 10.0)]:
        cfg = lif.LIFConfig(tau_mem=tau_m, tau_syn=tau_s, reset="none")
        x = jnp.zeros((600, 1)).at[0, 0].set(1.0)
        u = lif.lif_layer(lif.LIFParams(jnp.ones((1, 1))), x, config=cfg).membrane[:, 0]
        eb, eh = lif.psp_moments(tau_m, tau_s)
        np.testing.assert_allclose([eb, eh], [u.sum(), (u**2).sum()], rtol=1e-4)


def test_reset_gradients_detached_vs_differentiable_hand_derivation():
    # Same neuron (w = 6, one input spike at n = 0, theta = 1, b = 1/2). With sharpness 1/2,
    # SuperSpike psi'(x) = 1 / (1 + 2 * 0.5 |x|)^2 = 1 / (1 + |x|)^2.
    #   U[2] = w/2, dU[2]/dw = 1/2; a = b U[2] + (1-b) I[2] = w/4 + w/4 = w/2 = 3, da/dw = 1/2.
    # reset to zero, U[3] = a (1 - R[2]) with S[2] = H(U[2] - 1) = 1:
    #   detached:        dU[3]/dw = (1 - 1) da/dw                     = 0
    #   differentiable:  dU[3]/dw = 0 - a psi'(U[2] - 1) dU[2]/dw = -3 * (1/9) * (1/2) = -1/6
    # subtraction, U[3] = a - theta R[2]:
    #   detached:        dU[3]/dw = 1/2
    #   differentiable:  dU[3]/dw = 1/2 - psi'(2) / 2 = 1/2 - 1/18 = 4/9
    def u3(w, reset, detach):
        return _single(w, reset=reset, detach=detach, sharpness=0.5)[0].membrane[3, 0]

    expected = {("zero", True): 0.0, ("zero", False): -1.0 / 6.0,
                ("subtract", True): 0.5, ("subtract", False): 4.0 / 9.0}
    for (reset, detach), want in expected.items():
        g = jax.grad(u3)(6.0, reset, detach)
        np.testing.assert_allclose(g, want, atol=1e-6, err_msg=f"{reset} detach={detach}")
    # The spike's own gradient is the surrogate: d S[2]/dw = psi'(U[2] - 1) dU[2]/dw = 1/18.
    g = jax.grad(lambda w: _single(w, sharpness=0.5)[0].spikes[2, 0])(6.0)
    np.testing.assert_allclose(g, 1.0 / 18.0, atol=1e-6)


def test_recurrence_on_off():
    # Self-connection v: after S[2] = 1, I[3] = 1.5 + v, so (reset to zero)
    # U[4] = 0 + 0.5 * I[3] = 0.75 + v/2.
    out0, _, _ = _single(6.0)
    outz, _, _ = _single(6.0, w_rec=0.0)
    np.testing.assert_allclose(out0.membrane, outz.membrane, atol=1e-7)
    outv, _, _ = _single(6.0, w_rec=2.0)
    np.testing.assert_allclose(outv.membrane[4, 0], 0.75 + 1.0, atol=1e-5)
    # ... which now crosses threshold at n = 4: recurrence changed the spike train.
    assert float(outv.spikes[4, 0]) == 1.0 and float(out0.spikes[4, 0]) == 0.0


def test_lif_cell_scan_equals_layer():
    key = jax.random.key(1)
    cfg = lif.LIFConfig()
    p = lif.init_lif(key, 5, 7, sigma_w=8.0, recurrent=True)
    x = (jax.random.uniform(jax.random.key(2), (30, 5)) < 0.2).astype(jnp.float32)
    s0 = lif.LIFState(jnp.zeros(7), jnp.zeros(7))
    _, (s, u) = jax.lax.scan(lambda st, xi: lif.lif_cell(p, st, xi, config=cfg), s0, x)
    out = lif.lif_layer(p, x, config=cfg)
    np.testing.assert_allclose(s, out.spikes)
    np.testing.assert_allclose(u, out.membrane, atol=1e-6)
    assert out.spikes.sum() > 0
    # lif_scan (the one scan the kernels' Monte Carlo and finite networks run) on the drive.
    scanned = lif.lif_scan(x @ p.w_in, config=cfg, w_rec=p.w_rec)
    np.testing.assert_array_equal(scanned.spikes, out.spikes)
    np.testing.assert_array_equal(scanned.membrane, out.membrane)


# ----------------------------------------------------------------------------------------
# vmap over batch, ensemble and hyper-parameter grid.
# ----------------------------------------------------------------------------------------
def _batch(key, B=4, T=25, n=6):
    return (jax.random.uniform(key, (B, T, n)) < 0.15).astype(jnp.float32)


@pytest.mark.slow
def test_vmap_batch_and_ensemble_equal_loops():
    cfg = lif.LIFConfig(readout="sum")
    xb = _batch(jax.random.key(3))
    keys = jax.random.split(jax.random.key(4), 3)
    init = lambda k: lif.init_snn(k, 6, 9, 3, init="gaussian", sigma_w=6.0, recurrent=True)
    ens = jax.vmap(init)(keys)
    assert ens.hidden[0].w_in.shape == (3, 6, 9)
    apply = lambda p, x: lif.snn_apply(p, x, config=cfg).logits
    got = jax.jit(jax.vmap(lambda p: jax.vmap(lambda x: apply(p, x))(xb)))(ens)
    for e, k in enumerate(keys):
        p = init(k)
        np.testing.assert_allclose(p.hidden[0].w_in, ens.hidden[0].w_in[e])
        for b in range(xb.shape[0]):
            np.testing.assert_allclose(got[e, b], apply(p, xb[b]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reset, detach, recurrent", [
    ("zero", False, True),  # differentiable reset + recurrence: the default representative
    *[pytest.param(*c, marks=pytest.mark.slow) for c in
      (("zero", True, False), ("subtract", True, True), ("subtract", False, False),
       ("none", True, True))]])
def test_batched_snn_apply_equals_per_example_layer_route(reset, detach, recurrent):
    """snn_apply on a batch (one scan over time, batched matmuls) == lif_layer layer by layer
    + readout_layer per example (the route snn_apply used before), outputs and BPTT gradients,
    to 1e-12 in float64; a single example and vmap over examples agree too."""
    with jax.enable_x64(True):
        cfg = lif.LIFConfig(reset=reset, detach_reset=detach, readout="max")
        p = lif.init_snn(jax.random.key(11), 6, (12, 8), 4, init="gaussian", sigma_w=5.0,
                         recurrent=recurrent)
        p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), p)
        x = _batch(jax.random.key(12), B=5, T=24).astype(jnp.float64)

        def old(q, xe):
            spikes, h = [], xe
            for layer in q.hidden:
                h = lif.lif_layer(layer, h, config=cfg).spikes
                spikes.append(h)
            tr = lif.readout_layer(q.readout, h, config=cfg)
            return lif.SNNOutput(lif.reduce_readout(tr, cfg.readout), tr, tuple(spikes))

        want = jax.vmap(lambda xe: old(p, xe))(x)
        got = lif.snn_apply(p, x, config=cfg)
        assert got.logits.shape == (5, 4) and got.readout.shape == (5, 24, 4)
        assert [s.shape for s in got.spikes] == [(5, 24, 12), (5, 24, 8)]
        assert float(got.spikes[1].sum()) > 10  # deep layer active: the comparison bites
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        one = lif.snn_apply(p, x[2], config=cfg)
        np.testing.assert_allclose(one.logits, want.logits[2], rtol=0, atol=1e-12)
        vm = jax.vmap(lambda xe: lif.snn_apply(p, xe, config=cfg).logits)(x)
        np.testing.assert_allclose(vm, want.logits, rtol=0, atol=1e-12)
        y = jnp.array([0, 1, 2, 3, 0])

        def loss(q, f):
            lg = f(q)
            return -jnp.mean(jax.nn.log_softmax(lg)[jnp.arange(5), y])

        g_new = jax.jit(jax.grad(lambda q: loss(q, lambda r: lif.snn_apply(
            r, x, config=cfg).logits)))(p)
        g_old = jax.jit(jax.grad(lambda q: loss(q, lambda r: jax.vmap(
            lambda xe: old(r, xe).logits)(x))))(p)
        for a, b in zip(jax.tree_util.tree_leaves(g_new), jax.tree_util.tree_leaves(g_old)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_snn_apply_bad_batch_shape():
    p = lif.init_snn(jax.random.key(0), 3, 4, 2, init="gaussian")
    with pytest.raises(ValueError, match=r"\(B, T, n_in\) for a batch"):
        lif.snn_apply(p, jnp.zeros((2, 5, 4)), config=lif.LIFConfig())
    with pytest.raises(ValueError, match=r"shape \(T, n_in\) = \(T, 3\)"):
        lif.snn_apply(p, jnp.zeros((5, 4)), config=lif.LIFConfig())


def test_vmap_over_config_grid():
    p = lif.init_lif(jax.random.key(5), 6, 8, sigma_w=6.0)
    x = _batch(jax.random.key(6), B=1)[0]
    taus = jnp.array([4.0, 10.0, 20.0])
    thetas = jnp.array([0.5, 1.0, 2.0])
    grid = jax.vmap(lambda tm, th: lif.LIFConfig(tau_mem=tm, threshold=th))(taus, thetas)
    got = jax.vmap(lambda c: lif.lif_layer(p, x, config=c).membrane)(grid)
    for i in range(3):
        want = lif.lif_layer(p, x, config=lif.LIFConfig(tau_mem=float(taus[i]),
                                                        threshold=float(thetas[i]))).membrane
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------
# Fluctuation-driven initialisation.
# ----------------------------------------------------------------------------------------
def test_fluctuation_init_hits_target_membrane_statistics():
    # Free membrane (reset="none") of 400 neurons driven by 200 Bernoulli inputs at p = 0.02;
    # temporal mean and std after the transient, averaged over neurons, vs the targets.
    cfg = lif.LIFConfig(reset="none")
    n_in, n, T, p_in = 200, 400, 2000, 0.02
    mean_t, std_t = 0.2, 0.4
    params = lif.init_lif_fluctuation(jax.random.key(7), n_in, n, rate=p_in, config=cfg,
                                      target_mean=mean_t, target_std=std_t)
    x = (jax.random.uniform(jax.random.key(8), (T, n_in)) < p_in).astype(jnp.float32)
    u = np.asarray(lif.lif_layer(params, x, config=cfg).membrane[100:])  # (T', n)
    m_hat = u.mean()
    s_hat = np.sqrt(u.var(axis=0).mean())
    # Per-neuron temporal means scatter (weight draw) with std sqrt(n_in) p eps_bar sigma_w;
    # their average over 400 neurons and the pooled std are accurate to a few percent.
    np.testing.assert_allclose(m_hat, mean_t, atol=0.03)
    np.testing.assert_allclose(s_hat, std_t, rtol=0.06)


def test_fluctuation_init_rejects_impossible_targets():
    with pytest.raises(ValueError, match="target_mean is too large"):
        lif.fluctuation_weight_stats(20, rate=0.01, target_mean=5.0, target_std=0.1,
                                     config=lif.LIFConfig())
    with pytest.raises(ValueError, match="rate"):
        lif.fluctuation_weight_stats(20, rate=2.0, target_mean=0.0, target_std=0.1,
                                     config=lif.LIFConfig())


# ----------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(tau_mem=-1.0), "tau_mem must be finite and > 0"),
    (dict(tau_syn=0.0), "tau_syn must be finite and > 0"),
    (dict(threshold=0.0), "threshold must be finite and > 0"),
    (dict(threshold=-1.0), "threshold"),
    (dict(dt=5.0), "dt must be < tau_syn"),
    (dict(dt=20.0, tau_syn=30.0), "dt must be < tau_mem"),
    (dict(reset="soft"), "reset must be one of"),
    (dict(readout="mean"), "readout must be one of"),
])
def test_bad_config_raises(kwargs, match):
    p = lif.init_lif(jax.random.key(0), 3, 2)
    with pytest.raises(ValueError, match=match):
        lif.lif_layer(p, jnp.zeros((5, 3)), config=lif.LIFConfig(**kwargs))


def test_bad_spike_shape_raises():
    p = lif.init_lif(jax.random.key(0), 3, 2)
    cfg = lif.LIFConfig()
    with pytest.raises(ValueError, match=r"shape \(T, n_in\) = \(T, 3\)"):
        lif.lif_layer(p, jnp.zeros((5, 4)), config=cfg)
    with pytest.raises(ValueError, match="spikes_in must have shape"):
        lif.lif_layer(p, jnp.zeros((2, 5, 3)), config=cfg)  # a batch: vmap instead
    with pytest.raises(ValueError, match="spikes_in must have shape"):
        lif.lif_layer(p, jnp.zeros((3,)), config=cfg)


# ----------------------------------------------------------------------------------------
# Data.
# ----------------------------------------------------------------------------------------
def test_randman_seeded_one_spike_per_unit():
    kw = dict(nb_classes=3, nb_units=7, nb_steps=40, nb_samples=50, dim_manifold=2, seed=11)
    a, b = data.randman(**kw), data.randman(**kw)
    np.testing.assert_array_equal(a.spikes, b.spikes)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.spikes.shape == (150, 40, 7) and a.spikes.dtype == np.float32
    np.testing.assert_array_equal(a.spikes.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.bincount(a.labels), [50, 50, 50])
    c = data.randman(**{**kw, "seed": 12})
    assert not np.array_equal(a.spikes, c.spikes)
    # min-max scaling: per class, each unit fires once at step 0 and once at the last step.
    for k in range(3):
        t = np.argmax(a.spikes[a.labels == k], axis=1)  # (50, 7)
        np.testing.assert_array_equal(t.min(0), 0)
        np.testing.assert_array_equal(t.max(0), 39)


def test_randman_function_spectrum_and_split():
    rng = np.random.default_rng(0)
    f = data.randman_function(rng, 4, 1, alpha=2.0)
    x = np.linspace(0, 1, 201)[:, None]
    y = f(x)
    assert y.shape == (201, 4) and np.all(np.isfinite(y))
    # smooth: alpha = 2 keeps first differences small compared to the range
    assert np.max(np.abs(np.diff(y, axis=0))) < 0.2 * np.ptp(y, axis=0).min()
    d = data.randman(nb_classes=2, nb_units=3, nb_steps=10, nb_samples=100, seed=1)
    s = data.split(d, seed=3)
    assert [len(p.labels) for p in s] == [160, 20, 20]
    np.testing.assert_array_equal(np.bincount(s.test.labels), [10, 10])
    with pytest.raises(ValueError, match="fractions"):
        data.split(d, (0.5, 0.5, 0.5))


def test_unit_circle():
    c = data.unit_circle()
    assert c["x_train"].shape == (15, 2) and c["x_test"].shape == (100, 2)
    np.testing.assert_allclose(np.linalg.norm(c["x_test"], axis=1), 1.0)
    np.testing.assert_allclose(c["a_test"][0], -np.pi)
    np.testing.assert_allclose(c["x_test"][25], [np.sin(-np.pi / 2), np.cos(-np.pi / 2)], atol=1e-15)
    x = np.array([[0.6, 0.8]])
    want = 4 * 0.6 * 0.64 - 0.8 * 0.216 + 1.2 * 0.64 - 0.8 * 0.36 * 0.8
    np.testing.assert_allclose(data.circle_target(x), [want])


def test_latency_digits():
    pytest.importorskip("sklearn")
    d = data.latency_digits(nb_steps=50)
    assert d.spikes.shape == (1797, 50, 64)
    assert d.spikes.sum(axis=1).max() == 1.0
    # brightest pixels (16) fire at t = 0
    from sklearn.datasets import load_digits

    raw = load_digits().data
    n, u = np.nonzero(raw == 16)
    np.testing.assert_array_equal(d.spikes[n, 0, u], 1.0)
    assert np.all(d.spikes.sum(axis=1)[raw == 0] == 0)


# ----------------------------------------------------------------------------------------
# Training.
# ----------------------------------------------------------------------------------------
def test_training_smoke(tmp_path):
    """train_randman end to end (summary written atomically, loss falls); its accuracy is the
    fraction of argmax hits of the per-example route (lif_layer + readout_layer), recomputed
    here from the trained parameters."""
    cfg = dict(nb_classes=3, nb_units=20, nb_steps=50, nb_samples=200, n_hidden=64,
               batch_size=25, epochs=10, seed=0)
    s = lif_train.train_randman(cfg, out_dir=tmp_path, progress=False)
    loss = s["history"]["loss"]
    assert loss[-1] < 0.8 * loss[0]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["test_accuracy"] == s["test_accuracy"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]


def _separable(n_classes=3, per_class=40, T=20, n_in=6, seed=0):
    """Class k: input unit k fires at steps 2 and 6, plus sparse noise on the other units
    (never on units < n_classes), so the label is a function of the input (separable)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per_class)
    x = np.zeros((y.size, T, n_in), np.float32)
    x[:, :, n_classes:] = rng.random((y.size, T, n_in - n_classes)) < 0.1
    x[np.arange(y.size), 2, y] = 1.0
    x[np.arange(y.size), 6, y] = 1.0
    perm = rng.permutation(y.size)
    return data.SpikeData(x[perm], y[perm])


def test_training_reaches_the_separable_limit_and_accuracy_matches_per_example_route():
    """A task whose label is a deterministic function of which input unit fires: the known
    limit is 100 % accuracy, and SGL must reach it; the accuracy ``evaluate`` reports (the
    batched ``snn_apply``) equals argmax over the per-example layer-by-layer route."""
    d = _separable()
    splits = data.Split(data.SpikeData(d.spikes[:90], d.labels[:90]),
                        data.SpikeData(d.spikes[90:105], d.labels[90:105]),
                        data.SpikeData(d.spikes[105:], d.labels[105:]))
    cfg = lif_train.TrainConfig(n_hidden=32, batch_size=30, epochs=15, lr=2e-2, seed=0,
                                readout="sum")
    params, hist = lif_train.train(cfg, splits, progress=False)
    lc = lif_train.make_lif_config(cfg)
    test = lif_train.evaluate(params, splits.test.spikes, splits.test.labels, lif_config=lc)
    assert test["accuracy"] == 1.0, (test, hist["train_acc"])

    def per_example(x):
        h = lif.lif_layer(params.hidden[0], x, config=lc).spikes
        return lif.reduce_readout(lif.readout_layer(params.readout, h, config=lc), lc.readout)

    logits = np.stack([np.asarray(per_example(jnp.asarray(x))) for x in splits.test.spikes])
    assert np.mean(logits.argmax(-1) == splits.test.labels) == test["accuracy"]


def test_surrogate_gradient_equals_hand_chain_rule():
    """BPTT through the batched ``snn_apply`` vs an independent route. Without reset the
    membrane is linear in the input weights, ``U[t] = sum_s k(t - s) (S_in[s] @ W)`` with the
    closed-form impulse response :func:`lif.impulse_response`, so the surrogate gradient is
    ``dL/dW[j, i] = sum_t dL/dS_i[t] psi'(U_i[t] - theta) sum_s k(t - s) S_in_j[s]``;
    ``dL/dS`` (the readout is linear in the spikes) and ``dL/dW_o`` are checked by central
    differences. float64."""
    with jax.enable_x64(True):
        cfg = lif.LIFConfig(reset="none", readout="sum",
                            surrogate=sg.get("fast_sigmoid", sharpness=2.0))
        p = lif.init_snn(jax.random.key(3), 6, 9, 3, init="gaussian", sigma_w=5.0)
        p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), p)
        x = _batch(jax.random.key(4), B=5, T=30, n=6).astype(jnp.float64)
        y = jnp.array([0, 1, 2, 0, 1])
        import optax

        def ce(logits):
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        g = jax.grad(lambda q: ce(lif.snn_apply(q, x, config=cfg).logits))(p)
        out = lif.snn_apply(p, x, config=cfg)
        spikes = out.spikes[0]  # (B, T, n)
        assert 0.05 < float(spikes.mean()) < 0.5  # the surrogate path is exercised

        @jax.jit
        def loss_of_spikes(s, w_o):
            tr = jax.vmap(lambda si: lif.readout_layer(lif.ReadoutParams(w_o), si,
                                                       config=cfg))(s)
            return ce(tr.sum(1))

        dl_ds = jax.grad(loss_of_spikes)(spikes, p.readout.w)
        # dL/dS and dL/dW_o by central differences (the loss is smooth in both)
        h = 1e-5
        for idx in [(0, 3, 2), (2, 17, 5), (4, 29, 8)]:
            e = jnp.zeros_like(spikes).at[idx].set(h)
            fd = (loss_of_spikes(spikes + e, p.readout.w)
                  - loss_of_spikes(spikes - e, p.readout.w)) / (2 * h)
            np.testing.assert_allclose(dl_ds[idx], fd, rtol=1e-6, atol=1e-10)
        for idx in [(0, 0), (4, 2), (8, 1)]:
            e = jnp.zeros_like(p.readout.w).at[idx].set(h)
            fd = (loss_of_spikes(spikes, p.readout.w + e)
                  - loss_of_spikes(spikes, p.readout.w - e)) / (2 * h)
            np.testing.assert_allclose(g.readout.w[idx], fd, rtol=1e-6, atol=1e-10)
        # hidden weights: the hand chain rule through the linear membrane
        T = x.shape[1]
        k = lif.impulse_response(T, cfg)
        kmat = jnp.where(jnp.arange(T)[:, None] >= jnp.arange(T)[None, :],
                         k[jnp.clip(jnp.arange(T)[:, None] - jnp.arange(T)[None, :], 0)], 0.0)
        u = jnp.einsum("ts,bsj,ji->bti", kmat, x, p.hidden[0].w_in)
        np.testing.assert_allclose(u >= 1.0 + 0, spikes > 0)  # same membrane, same spikes
        psi = cfg.surrogate.derivative(u - 1.0)
        want = jnp.einsum("bti,ts,bsj->ji", dl_ds * psi, kmat, x)
        np.testing.assert_allclose(g.hidden[0].w_in, want, rtol=1e-9, atol=1e-12)


def test_superspike_beta_convention():
    c = lif_train.make_lif_config(lif_train.TrainConfig(beta=10.0))
    x = jnp.array([0.0, 0.1, -0.3])
    np.testing.assert_allclose(c.surrogate.derivative(x), 1.0 / (10.0 * jnp.abs(x) + 1.0) ** 2,
                               rtol=1e-6)


def test_tail_reaches_the_q_pseudo_spike_surrogate():
    """TrainConfig(tail=q) trains q_pseudo_spike with psi'(x) = (1 + 2 beta |x| / (q - 1))^-q;
    a tail for another shape is an error naming the parameter."""
    c = lif_train.make_lif_config(lif_train.TrainConfig(surrogate="q_pseudo_spike", beta=3.0,
                                                        tail=4.0))
    x = jnp.array([0.0, 0.1, -0.7])
    np.testing.assert_allclose(c.surrogate.derivative(x),
                               (1.0 + 2.0 * 3.0 * jnp.abs(x) / 3.0) ** -4.0, rtol=1e-6)
    with pytest.raises(ValueError, match="tail"):
        lif_train.make_lif_config(lif_train.TrainConfig(surrogate="fast_sigmoid", tail=4.0))


@pytest.mark.slow
def test_randman_reference_accuracy(tmp_path):
    s = lif_train.train_randman(lif_train.TrainConfig(seed=0), out_dir=tmp_path, progress=False)
    assert s["test_accuracy"] >= 0.9
