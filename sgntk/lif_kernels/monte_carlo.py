"""Mean-field Monte Carlo of the infinite-width LIF kernels, any reset.

Neurons of the infinite feed-forward layer are iid: sample single-neuron drive trajectories
``d = F z`` (``z ~ N(0, I)``, ``F F^T = G`` over all inputs and times jointly, ``G_ss'(x, x') =
sigma_w^2/n_in <x[s], x'[s']> + sigma_b^2``), run the neuron with :func:`sgntk.lif.lif_scan`
(the one LIF step, with the reset of the config, detached or not), and average ``(kappa .
S(x)) (kappa . S(x'))`` (readout part) and the input part. The neuron's gradient w.r.t. its
input weights and bias is ``g(x) = sum_s lambda_s(x) (sigma_w/sqrt(n_in) x[s], sigma_b)`` with
the backpropagated sensitivity ``lambda_s(x) = d(kappa . S(x))/d d[s]``, so::

    g(x) . g~(x') = sum_{s,s'} lambda_s(x) lambda~_s'(x') G_ss'(x, x') = (F_x^T lambda(x)) . (F_x'^T lambda~(x'))

Without reset ``lambda_s = sum_t kappa_t H'(U_t - theta) k(t - s)`` and the estimator's mean is
exactly the analytic kernel (:func:`sgntk.lif_kernels.lif_kernels`, same ``spike_sharpness``).

Depth ``L > 1`` (layer by layer, any reset; all inputs ``X = [x1; x2]`` and times jointly).
Forward: sample neurons of layer ``l`` from the Gaussian drive ``N(0, G^l)``, run them, estimate
the spike second moments ``Q^l = E[S S^T]`` and factor ``G^{l+1} = sigma_w^2 Q^l + sigma_b^2``
(``eigh``). Backward (the gradient-independence of the infinite-width limit): the field that
reaches neuron ``i`` of layer ``l`` from above, ``g_i[t] = sum_m sigma_w/sqrt(N) W_im
lambda^{l+1}_m[t]``, is a Gaussian process independent of the neuron's own forward pass, jointly
over the true-derivative and the surrogate chains with covariance ``sigma_w^2 Pi^{l+1}``,
``Pi^{l+1} = E[(lambda^T, lambda^S)(lambda^T, lambda^S)^T]`` of layer ``l + 1`` (top layer:
``g = kappa`` and a factor ``sigma_o^2``). Sampling ``g`` with the neuron and pulling it back
through the neuron's scan (one ``vjp`` per chain) gives ``lambda^l``, hence ``Pi^l`` and the layer's
weight-and-bias term ``E[(F_l^T lambda^T)(x) . (F_l^T lambda^S)(x')]`` (``F_l F_l^T = G^l``). The
kernel is the sum of the layers' terms and the readout term ``sigma_o^2 E[(kappa . S^L)(kappa .
S^L)']``. Without reset its mean is the analytic recursion (test: analytic == this == finite
networks); the estimated inner covariances make it biased at O(1/n_neurons), far below the
standard error, which is taken over independent replicates of the whole pipeline.
Tests: ``test_analytic_vs_mc_vs_networks``, ``test_reset_mc_vs_networks``,
``test_reset_and_recurrence_change_kernel``.

QIF neurons (``config.neuron == "qif"``, :mod:`sgntk.lif`) run through the same
:func:`sgntk.lif.lif_scan`, so this estimator and the finite networks of :mod:`.empirical`
give their kernels unchanged; the true derivative is the smoothed jump of ``S = H((theta -
theta_peak)/pi)``. There is no analytic route (QIF has no reset-free form). Test:
``tests/test_qif.py::test_qif_mc_kernels_vs_networks`` (slow).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import lif as _lif
from .. import monte_carlo as _mc
from .._util import check_int
from .._x64 import float64
from ._common import (DEFAULT_SPIKE_SHARPNESS, KERNELS, UNSET, LIFKernel,
                      check_spike_sharpness, prepare, renamed, true_spike_derivative)
from .empirical import lif_kernels_networks

__all__ = ["lif_kernels_mc"]


def _drive_factor(x, sw, sb):
    """``F`` ``(P, T, r)`` with ``F F^T = G`` (drive covariance over inputs and times)."""
    P, T, n_in = x.shape
    f = np.concatenate([sw / math.sqrt(n_in) * x, np.full((P, T, 1), sb)], axis=2)
    if sb == 0:
        f = f[..., :-1]
    if f.shape[2] > P * T:   # compress: same covariance, fewer Gaussian variables
        u, s, _ = np.linalg.svd(f.reshape(P * T, -1), full_matrices=False)
        f = (u * s).reshape(P, T, -1)
    return f


def _mf_block(key, factor, kappa, config, sharp, block, n1):
    """Mean over ``block`` sampled neurons of the per-neuron kernel contributions.

    One forward pass per derivative (``jax.vjp``: the spikes and the pullback of the true- and
    the surrogate-derivative chains; the spikes are the same Heaviside values in both), the
    readout weights ``kappa`` as the cotangent of every neuron's spike train. ``factor`` covers
    ``[x1; x2]`` with ``x1`` its first ``n1`` inputs, or (``n1 = None``) only ``x1 = x2``: the
    kernels of ``x1`` with itself from one simulation of each input.
    """
    P, T, r = factor.shape
    z = jax.random.normal(key, (block, r), factor.dtype)
    drive = jnp.einsum("ptr,br->tbp", factor, z).reshape(T, block * P)   # neurons x inputs
    cfg_true = config.replace(surrogate=true_spike_derivative(sharp))
    spikes, pull_t = jax.vjp(lambda d: _lif.lif_scan(d, config=cfg_true).spikes, drive)
    _, pull_s = jax.vjp(lambda d: _lif.lif_scan(d, config=config).spikes, drive)
    cot = jnp.broadcast_to(kappa[:, None], spikes.shape)
    o = (kappa @ spikes).reshape(block, P)
    at = jnp.einsum("tbp,ptr->bpr", pull_t(cot)[0].reshape(T, block, P), factor)
    as_ = jnp.einsum("tbp,ptr->bpr", pull_s(cot)[0].reshape(T, block, P), factor)
    one, two = (slice(None), slice(None)) if n1 is None else (slice(None, n1), slice(n1, None))
    ro = jnp.einsum("bp,bq->pq", o[:, one], o[:, two]) / block
    return LIFKernel(ro,
                     ro + jnp.einsum("bpr,bqr->pq", at[:, one], as_[:, two]) / block,
                     ro + jnp.einsum("bpr,bqr->pq", as_[:, one], as_[:, two]) / block)


@float64
def lif_kernels_mc(x1, x2=None, *, config: _lif.LIFConfig, readout_weights=UNSET, sigma_w=1.0,
                   sigma_b=0.0, sigma_o=1.0, spike_sharpness=UNSET, n_neurons: int = 100_000,
                   block: int = 256, batch_size: int = 16, seed: int = 0,
                   recurrent: bool = False, width: int = 1000, sigma_rec=1.0,
                   progress: bool | None = None, depth: int = 1, replicates: int = 10,
                   kappa=UNSET, m=UNSET) -> _mc.MCEstimate:
    """Mean-field Monte-Carlo estimate of the infinite-width kernels, any reset.

    Feed-forward (default): ``n_neurons`` single-neuron drive trajectories are sampled from
    the Gaussian process jointly over all inputs of ``x1`` and ``x2`` and all times
    (``d = F z``), the neuron is run with the reset of ``config`` (detached or
    differentiable), and the kernels are the averages of ``(kappa . S(x))(kappa . S(x'))``
    plus the input-weight part ``(F_x^T lambda(x)) . (F_x'^T lambda~(x'))`` (module
    docstring), scaled by ``sigma_o^2``. Samples are means over ``block`` neurons
    (``n_neurons // block`` samples, ``batch_size`` blocks per vectorised call); the
    standard error is over block means. Without reset its mean is exactly
    :func:`lif_kernels` with the same ``spike_sharpness`` (old name ``m``, deprecated;
    default :data:`DEFAULT_SPIKE_SHARPNESS`). ``readout_weights`` (old name ``kappa``) as in
    :func:`lif_kernels`.

    ``recurrent=True``: the mean-field reduction to one neuron does not hold; the estimate
    is :func:`lif_kernels_networks` with ``n_networks = max(2, n_neurons // width)``
    networks of ``width`` (finite-width bias O(1/width)).

    ``depth > 1`` (feed-forward only): layer-by-layer mean field (module docstring):
    ``replicates`` independent runs of the whole pipeline, each with ``n_neurons //
    replicates`` neurons per layer and sweep; mean and standard error over the replicates
    (so the error includes the noise of the estimated inner-layer covariances).

    Returns:
      :class:`sgntk.monte_carlo.MCEstimate` with ``mean`` and ``stderr`` :class:`LIFKernel` s.
    Tests: ``test_analytic_vs_mc_vs_networks``, ``test_reset_and_recurrence_change_kernel``,
    ``tests/test_lif_kernels_deep.py``.
    """
    weights = renamed("readout_weights", readout_weights, "kappa", kappa, None)
    sharp = renamed("spike_sharpness", spike_sharpness, "m", m, DEFAULT_SPIKE_SHARPNESS)
    depth = check_int("depth", depth, minimum=1)
    if recurrent and depth > 1:
        raise ValueError("recurrent=True is only implemented for depth = 1")
    if recurrent:
        return lif_kernels_networks(
            x1, x2, config=config, width=width, n_networks=max(2, n_neurons // width),
            readout_weights=weights, recurrent=True, sigma_w=sigma_w, sigma_b=sigma_b,
            sigma_rec=sigma_rec, sigma_o=sigma_o, spike_sharpness=sharp, seed=seed,
            batch_size=1, progress=progress)
    x1, x2, cfg, kap, _, sw, sb, so = prepare(x1, x2, config, weights, KERNELS, sigma_w,
                                              sigma_b, sigma_o)
    sharp = check_spike_sharpness(sharp, allow_none=False)
    block = check_int("block", block, minimum=1)
    n_samples = n_neurons // block
    if n_samples < 2:
        raise ValueError(f"n_neurons // block must be >= 2; got {n_neurons} // {block}")
    if depth > 1:
        replicates = check_int("replicates", replicates, minimum=2)
        if n_neurons // (block * replicates) < 1:
            raise ValueError(f"n_neurons must be >= block * replicates = {block * replicates}; "
                             f"got {n_neurons}")
        return _lif_kernels_mc_deep(x1, x2, cfg, kap, sw, sb, so, sharp, depth, n_neurons,
                                    block, replicates, seed)
    # K(x1, x1) (x2=None: prepare returns x1 itself): each input simulated once, not twice
    n1, xs = (None, x1) if x2 is x1 else (x1.shape[0], np.concatenate([x1, x2]))
    factor = jnp.asarray(_drive_factor(xs, sw, sb))
    kj = jnp.asarray(kap)

    def sample(key):
        k = _mf_block(key, factor, kj, cfg, sharp, block, n1)
        return jax.tree_util.tree_map(lambda v: so**2 * v, k)

    return _mc.estimate(sample, jax.random.PRNGKey(seed), n_samples, batch_size=batch_size,
                        progress=progress)


# --------------------------------------------------------------------------------------
# Deep feed-forward networks: layer-by-layer mean field.
# --------------------------------------------------------------------------------------
def _psd_factor(m, rel=1e-12):
    """``F`` with ``F F^T = m`` for a (numerically) positive semi-definite ``m`` (eigh; negative
    rounding-level eigenvalues dropped)."""
    w, v = np.linalg.eigh(0.5 * (m + m.T))
    keep = w > rel * max(w.max(), 0.0)
    return v[:, keep] * np.sqrt(w[keep])


def _deep_block(key, f_fwd, f_bwd, kappa, config, sharp, block, last):
    """One block of ``block`` iid neurons of one hidden layer (mean field).

    ``f_fwd`` ``(P, T, r)``: factor of the layer's drive covariance over all inputs and times;
    ``f_bwd`` ``(2, P, T, rb)``: factor of the joint covariance of the backward fields
    (true-derivative chain, surrogate chain) that reach the layer's spikes from above (None at
    the top layer, where the field is the readout weight ``kappa``). Returns block means of the
    spike second moments ``Q`` ``(P, T, P, T)``, the sensitivities' joint second moments ``Pi``
    ``(2, P, T, 2, P, T)``, the readout products ``o o^T`` ``(P, P)`` and the layer's kernel
    contributions ``(F^T lambda^a) . (F^T lambda^b)`` ``(P, P)`` for (a, b) = (true, surrogate),
    (surrogate, surrogate).
    """
    P, T, r = f_fwd.shape
    kz, kg = jax.random.split(key)
    z = jax.random.normal(kz, (block, r), f_fwd.dtype)
    drive = jnp.einsum("ptr,br->tbp", f_fwd, z).reshape(T, block * P)
    cfg_true = config.replace(surrogate=true_spike_derivative(sharp))
    spikes, pull_t = jax.vjp(lambda d: _lif.lif_scan(d, config=cfg_true).spikes, drive)
    _, pull_s = jax.vjp(lambda d: _lif.lif_scan(d, config=config).spikes, drive)
    if last:
        cot_t = cot_s = jnp.broadcast_to(kappa[:, None], (T, block * P))
    else:
        zg = jax.random.normal(kg, (block, f_bwd.shape[-1]), f_fwd.dtype)
        g = jnp.einsum("aptr,br->atbp", f_bwd, zg).reshape(2, T, block * P)
        cot_t, cot_s = g[0], g[1]
    lam = jnp.stack([pull_t(cot_t)[0], pull_s(cot_s)[0]]).reshape(2, T, block, P)
    s = spikes.reshape(T, block, P)
    o = jnp.einsum("t,tbp->bp", kappa, s)
    proj = jnp.einsum("atbp,ptr->abpr", lam, f_fwd)
    return dict(q=jnp.einsum("tbp,sbq->ptqs", s, s) / block,
                pi=jnp.einsum("atbp,csbq->aptcqs", lam, lam) / block,
                oo=jnp.einsum("bp,bq->pq", o, o) / block,
                k_ts=jnp.einsum("bpr,bqr->pq", proj[0], proj[1]) / block,
                k_ss=jnp.einsum("bpr,bqr->pq", proj[1], proj[1]) / block)


_deep_block_jit = jax.jit(_deep_block, static_argnames=("block", "last"))


def _deep_replicate(key, factor1, kappa, config, sharp, sw, sb, so, depth, n_blocks, block):
    """One estimate of the depth-``depth`` kernels over the joint inputs (all pairs)."""
    P, T, _ = factor1.shape
    keys = jax.random.split(key, 2 * depth)

    def sweep(k, f_fwd, f_bwd, last):
        acc = None
        for kb in jax.random.split(k, n_blocks):
            out = _deep_block_jit(kb, f_fwd, f_bwd, kappa, config, sharp, block=block, last=last)
            acc = out if acc is None else jax.tree_util.tree_map(jnp.add, acc, out)
        return jax.tree_util.tree_map(lambda v: np.asarray(v) / n_blocks, acc)

    # Forward: the drive covariance of layer l + 1 is sw^2 E[S S^T] + sb^2 of layer l.
    factors = [factor1]
    for layer in range(depth - 1):
        q = sweep(keys[layer], jnp.asarray(factors[-1]), None, True)["q"]
        g = sw**2 * q.reshape(P * T, P * T) + sb**2
        factors.append(_psd_factor(g).reshape(P, T, -1))
    # Backward: top layer (readout field kappa), then fields of covariance sw^2 Pi from above.
    total_ts = total_ss = nngp = 0.0
    f_bwd = None
    for layer in reversed(range(depth)):
        last = layer == depth - 1
        out = sweep(keys[depth + layer], jnp.asarray(factors[layer]),
                    None if f_bwd is None else jnp.asarray(f_bwd), last)
        scale = so**2 if last else 1.0
        total_ts = total_ts + scale * out["k_ts"]
        total_ss = total_ss + scale * out["k_ss"]
        if last:
            nngp = so**2 * out["oo"]
        if layer > 0:
            pi = scale * sw**2 * out["pi"].reshape(2 * P * T, 2 * P * T)
            f_bwd = _psd_factor(pi).reshape(2, P, T, -1)
    return LIFKernel(nngp, nngp + total_ts, nngp + total_ss)


def _lif_kernels_mc_deep(x1, x2, cfg, kap, sw, sb, so, sharp, depth, n_neurons, block,
                         replicates, seed):
    n1 = x1.shape[0]
    sym = x2 is x1           # K(x1, x1): each input simulated once
    factor1 = _drive_factor(x1 if sym else np.concatenate([x1, x2]), sw, sb)
    n_blocks = max(1, n_neurons // (block * replicates))
    keys = jax.random.split(jax.random.PRNGKey(seed), replicates)
    reps = [_deep_replicate(k, factor1, jnp.asarray(kap), cfg, sharp, sw, sb, so, depth,
                            n_blocks, block) for k in keys]
    stack = jax.tree_util.tree_map(lambda *v: np.stack(v) if sym else np.stack(v)[:, :n1, n1:],
                                   *reps)
    mean = jax.tree_util.tree_map(lambda v: jnp.asarray(v.mean(0)), stack)
    err = jax.tree_util.tree_map(lambda v: jnp.asarray(v.std(0, ddof=1) / math.sqrt(replicates)),
                                 stack)
    return _mc.MCEstimate(mean, err, replicates)
