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
Tests: ``test_analytic_vs_mc_vs_networks``, ``test_reset_mc_vs_networks``,
``test_reset_and_recurrence_change_kernel``.
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
    """Mean over ``block`` sampled neurons of the per-neuron kernel contributions."""
    P, T, r = factor.shape
    z = jax.random.normal(key, (block, r), factor.dtype)
    drive = jnp.einsum("ptr,br->tbp", factor, z).reshape(T, block * P)   # neurons x inputs

    def out(d, cfg):
        return jnp.sum(kappa @ _lif.lif_scan(d, config=cfg).spikes)

    o = (kappa @ _lif.lif_scan(drive, config=config).spikes).reshape(block, P)
    lt = jax.grad(out)(drive, config.replace(surrogate=true_spike_derivative(sharp)))
    ls = jax.grad(out)(drive, config)
    at = jnp.einsum("tbp,ptr->bpr", lt.reshape(T, block, P), factor)
    as_ = jnp.einsum("tbp,ptr->bpr", ls.reshape(T, block, P), factor)
    ro = jnp.einsum("bp,bq->pq", o[:, :n1], o[:, n1:]) / block
    return LIFKernel(ro,
                     ro + jnp.einsum("bpr,bqr->pq", at[:, :n1], as_[:, n1:]) / block,
                     ro + jnp.einsum("bpr,bqr->pq", as_[:, :n1], as_[:, n1:]) / block)


@float64
def lif_kernels_mc(x1, x2=None, *, config: _lif.LIFConfig, readout_weights=UNSET, sigma_w=1.0,
                   sigma_b=0.0, sigma_o=1.0, spike_sharpness=UNSET, n_neurons: int = 100_000,
                   block: int = 256, batch_size: int = 16, seed: int = 0,
                   recurrent: bool = False, width: int = 1000, sigma_rec=1.0,
                   progress: bool | None = None, kappa=UNSET, m=UNSET) -> _mc.MCEstimate:
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

    Returns:
      :class:`sgntk.monte_carlo.MCEstimate` with ``mean`` and ``stderr`` :class:`LIFKernel` s.
    Tests: ``test_analytic_vs_mc_vs_networks``, ``test_reset_and_recurrence_change_kernel``.
    """
    weights = renamed("readout_weights", readout_weights, "kappa", kappa, None)
    sharp = renamed("spike_sharpness", spike_sharpness, "m", m, DEFAULT_SPIKE_SHARPNESS)
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
    n1 = x1.shape[0]
    factor = jnp.asarray(_drive_factor(np.concatenate([x1, x2]), sw, sb))
    kj = jnp.asarray(kap)

    def sample(key):
        k = _mf_block(key, factor, kj, cfg, sharp, block, n1)
        return jax.tree_util.tree_map(lambda v: so**2 * v, k)

    return _mc.estimate(sample, jax.random.PRNGKey(seed), n_samples, batch_size=batch_size,
                        progress=progress)
