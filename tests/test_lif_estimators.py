"""Estimators of the LIF kernels: ``lif_kernels_networks(nngp_estimator="conditional")``, the
readout-weight Gram estimator of the NNGP (exact per network against a direct forward pass;
unbiased against the analytic kernel; smaller standard error than the one-sample ``y y^T``),
and the mean-field Monte Carlo of ``K(x, x)`` that simulates each input once."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgntk import lif
from sgntk import lif_kernels as LK
from sgntk import surrogates as sg


def _spikes(seed, n, T, n_in, rate):
    return (np.random.default_rng(seed).random((n, T, n_in)) < rate).astype(np.float64)


def _cfg(reset):
    return lif.LIFConfig(tau_mem=10.0, tau_syn=5.0, threshold=0.5, reset=reset, readout="sum",
                         surrogate=sg.get("fast_sigmoid", sharpness=5.0))


# 6-13 s each on 2 cores: the default run keeps the deep case, -m slow adds the recurrent one
@pytest.mark.parametrize("reset,recurrent,depth", [
    pytest.param("zero", True, 1, marks=pytest.mark.slow), ("subtract", False, 2)])
def test_conditional_nngp_is_readout_gram(reset, recurrent, depth):
    """Per network: sigma_o^2 / N sum_i c_i(x) c_i(x'), c_i = sum_t kappa_t S_i[t], recomputed
    here from the drawn parameters with lif.lif_scan."""
    x, x2 = _spikes(0, 4, 12, 6, 0.3), _spikes(1, 3, 12, 6, 0.3)
    cfg, width, so, sw, srec, seed = _cfg(reset), 32, 1.3, 4.0, 0.7, 5
    kappa = np.linspace(0.5, 1.5, 12)
    est = LK.lif_kernels_networks(x, x2, config=cfg, width=width, n_networks=2, depth=depth,
                                  recurrent=recurrent, sigma_w=sw, sigma_rec=srec, sigma_o=so,
                                  readout_weights=kappa, seed=seed, which=("nngp",),
                                  nngp_estimator="conditional", progress=False)
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.PRNGKey(seed), 2)

        def readout(key, xs):
            if depth == 1:
                p = LK.init_lif_net(key, 6, width, recurrent=recurrent)
                ws, wr = (p.w_in,), srec / math.sqrt(width) * p.w_rec if recurrent else None
            else:
                ws, wr = LK.init_lif_deep(key, 6, width, depth).w, None
            s = jnp.asarray(xs)
            for w in ws:
                s = jax.vmap(lambda d: lif.lif_scan(d, config=cfg, w_rec=wr).spikes)(
                    s @ (sw / math.sqrt(w.shape[0]) * w))
            return so / math.sqrt(width) * jnp.einsum("t,ptn->pn", jnp.asarray(kappa), s)

        ref = np.mean([readout(k, x) @ readout(k, x2).T for k in keys], 0)
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(est.mean.nngp, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.slow
def test_conditional_nngp_unbiased_and_less_noisy():
    """No reset: the mean over networks of both estimators against the analytic NNGP (z-test,
    |z| < 4.5 over the 9 entries); the conditional one's standard error is smaller."""
    x = _spikes(2, 3, 20, 10, 0.25)
    cfg = _cfg("none")
    an = LK.lif_kernels(x, config=cfg, which=("nngp",), sigma_b=0.3).nngp
    kw = dict(config=cfg, width=256, n_networks=24, sigma_b=0.3, seed=3, which=("nngp",),
              progress=False)
    cond = LK.lif_kernels_networks(x, nngp_estimator="conditional", **kw)
    samp = LK.lif_kernels_networks(x, nngp_estimator="sample", **kw)
    for est in (cond, samp):
        z = np.abs(np.asarray(est.mean.nngp) - np.asarray(an)) / np.asarray(est.stderr.nngp)
        assert z.max() < 4.5, z
    assert np.all(np.asarray(cond.stderr.nngp) < np.asarray(samp.stderr.nngp))


def test_nngp_estimator_rejects_unknown():
    with pytest.raises(ValueError, match="nngp_estimator"):
        LK.lif_kernels_networks(_spikes(0, 2, 5, 3, 0.3), config=_cfg("none"), width=4,
                                n_networks=2, nngp_estimator="rao")


@pytest.mark.parametrize("reset", ["zero", pytest.param("none", marks=pytest.mark.slow)])
def test_mc_self_kernel_simulates_each_input_once(reset):
    """``lif_kernels_mc(x)`` (one simulation per input) == ``lif_kernels_mc(x, copy of x)``
    (``[x; x]`` simulated): the drive factor of ``x`` and the Gaussian draws are the same, so
    mean and standard error agree to rounding."""
    x = _spikes(4, 3, 15, 4, 0.3)
    kw = dict(config=_cfg(reset), sigma_b=0.3, n_neurons=2048, block=256, seed=1, progress=False)
    one = LK.lif_kernels_mc(x, **kw)
    two = LK.lif_kernels_mc(x, x.copy(), **kw)
    for name in LK.KERNELS:
        a, b = np.asarray(getattr(one.mean, name)), np.asarray(getattr(two.mean, name))
        assert a.shape == (3, 3) and np.abs(a).max() > 0
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.abs(a).max())
        np.testing.assert_allclose(getattr(one.stderr, name), getattr(two.stderr, name),
                                   rtol=1e-6, atol=1e-12 * np.abs(a).max())
