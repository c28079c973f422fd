"""Kernels of finite one-hidden-layer LIF networks (any reset, optional recurrence).

Network (NTK parameterisation; raw parameters iid ``N(0, 1)``)::

    d_i[s]  = sigma_w / sqrt(n_in) sum_k W_ki x_k[s] + sigma_b b_i          (input current drive)
    hidden  = sgntk.lif.lif_scan(d, config, w_rec = sigma_rec / sqrt(N) V)  (the one LIF step)
    y(x)    = sum_t kappa_t  sigma_o / sqrt(N)  sum_i w_i S_i[t]

with trained ``w`` (readout), ``W`` (input), ``b`` (bias, if ``sigma_b > 0``) and ``V`` (if
recurrent). The true derivative of the spike is the smoothed ``Theta_m'``
(:func:`true_spike_derivative`, ``m = spike_sharpness``), the surrogate the config's.

Tests: ``tests/test_lif_kernels.py`` (``test_empirical_structured_vs_generic``: the
structured route == generic Jacobians of :func:`sgntk.lif.lif_layer`; wide networks ==
analytic == mean-field Monte Carlo).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from .. import lif as _lif
from .. import monte_carlo as _mc
from .._util import check_int, check_positive
from .._x64 import float64
from ._common import (DEFAULT_SPIKE_SHARPNESS, KERNELS, UNSET, LIFKernel,
                      check_spike_sharpness, prepare, renamed, true_spike_derivative)

__all__ = ["LIFNetParams", "init_lif_net", "lif_empirical", "lif_kernels_networks"]


class LIFNetParams(NamedTuple):
    """Raw ``N(0, 1)`` parameters of the NTK-parameterised LIF network (module docstring).

    w_in ``(n_in, N)``, bias ``(N,)``, w_rec ``(N, N)`` or None, w_out ``(N,)``.
    """

    w_in: jax.Array
    bias: jax.Array
    w_rec: Optional[jax.Array]
    w_out: jax.Array


def init_lif_net(key, n_in: int, width: int, *, recurrent: bool = False) -> LIFNetParams:
    """All raw parameters iid ``N(0, 1)`` (NTK parameterisation; the scales ``sigma_*`` are
    applied by :func:`lif_empirical`). ``w_rec`` is None unless ``recurrent``."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return LIFNetParams(jax.random.normal(k1, (n_in, width)), jax.random.normal(k2, (width,)),
                        jax.random.normal(k3, (width, width)) if recurrent else None,
                        jax.random.normal(k4, (width,)))


def _features(params, x, config, kappa, sw, sb, srec, so, sharp):
    """Per-example output and parameter gradients in structured form (true and surrogate)."""
    n_in, width = params.w_in.shape
    w_in = sw / math.sqrt(n_in) * params.w_in
    w_rec = None if params.w_rec is None else srec / math.sqrt(width) * params.w_rec
    drive = x @ w_in + sb * params.bias
    scale = so / math.sqrt(width)

    def y_of(d, cfg):
        return scale * (kappa @ _lif.lif_scan(d, config=cfg, w_rec=w_rec).spikes) @ params.w_out

    spikes = _lif.lif_scan(drive, config=config, w_rec=w_rec).spikes
    lam_t = jax.grad(y_of)(drive, config.replace(surrogate=true_spike_derivative(sharp)))
    lam_s = jax.grad(y_of)(drive, config)           # dy/d drive, (T, N)
    ro = scale * (kappa @ spikes)                   # dy/dw_out, (N,)

    def grads(lam):
        g = {"w_out": ro, "w_in": sw / math.sqrt(n_in) * x.T @ lam,   # (n_in, N)
             "bias": sb * jnp.sum(lam, 0)}
        if w_rec is not None:
            g["w_rec"] = srec / math.sqrt(width) * spikes.T @ lam     # (N, N)
        return g

    return ro @ params.w_out, grads(lam_t), grads(lam_s)


def _gram(g1, g2):
    return sum(jnp.einsum("p...,q...->pq", g1[k], g2[k]) for k in g1)


def _empirical_impl(params, x1, x2, config, kappa, sw, sb, srec, so, sharp, get):
    f = jax.vmap(lambda x: _features(params, x, config, kappa, sw, sb, srec, so, sharp))
    y1, gt1, gs1 = f(x1)
    y2, _, gs2 = f(x2)
    out = {}
    if "nngp" in get:
        out["nngp"] = y1[:, None] * y2[None, :]
    if "sgntk" in get:
        out["sgntk"] = _gram(gt1, gs2)
    if "sg_gram" in get:
        out["sg_gram"] = _gram(gs1, gs2)
    return LIFKernel(**out)


_empirical_jit = jax.jit(_empirical_impl, static_argnames=("get",))


@float64
def lif_empirical(params: LIFNetParams, x1, x2=None, *, config: _lif.LIFConfig,
                  readout_weights=UNSET, sigma_w=1.0, sigma_b=0.0, sigma_rec=1.0, sigma_o=1.0,
                  spike_sharpness=UNSET, which: Sequence[str] = UNSET, get=UNSET, kappa=UNSET,
                  m=UNSET) -> LIFKernel:
    """Empirical kernels of one finite LIF network (all parameters trained).

    Structured route: one backward pass per example gives ``Lambda = dy/d drive`` ``(T, N)``
    (through the reset and the recurrence, with the smoothed true derivative
    ``Theta_m'`` or the surrogate), and every parameter gradient is a contraction of it:
    ``dy/dW = sigma_w/sqrt(n_in) x^T Lambda``, ``dy/db = sigma_b sum_t Lambda_t``,
    ``dy/dV = sigma_rec/sqrt(N) S^T Lambda`` (the recurrent input ``S[n] V`` enters where
    ``d[n]`` does), ``dy/dw = sigma_o/sqrt(N) S^T kappa``. Kernels are the sums of the
    per-parameter Gram matrices. Checked against the generic
    :func:`sgntk.empirical.empirical_kernel` on :func:`sgntk.lif.lif_layer`
    (``test_empirical_structured_vs_generic``).

    Args:
      params: :class:`LIFNetParams` (:func:`init_lif_net`). x1, x2: spike trains as in
        :func:`lif_kernels`. config: :class:`sgntk.lif.LIFConfig` (any reset, detached or
        not). readout_weights (old name ``kappa``): as in :func:`lif_kernels`. sigma_*: NTK
        scales (``sigma_rec`` only used if ``params.w_rec`` is not None). spike_sharpness
        (old name ``m``): sharpness of the smoothed true derivative, default
        :data:`DEFAULT_SPIKE_SHARPNESS`.
    Returns:
      :class:`LIFKernel`; ``nngp`` is the sample ``y(x1) y(x2)^T``.
    """
    get = renamed("which", which, "get", get, KERNELS)   # get= is the old name
    weights = renamed("readout_weights", readout_weights, "kappa", kappa, None)
    sharp = renamed("spike_sharpness", spike_sharpness, "m", m, DEFAULT_SPIKE_SHARPNESS)
    x1, x2, cfg, kap, get, sw, sb, so = prepare(x1, x2, config, weights, get, sigma_w,
                                                sigma_b, sigma_o)
    srec = check_positive("sigma_rec", sigma_rec, inclusive=True)
    sharp = check_spike_sharpness(sharp, allow_none=False)
    if params.w_in.shape[0] != x1.shape[2]:
        raise ValueError(f"params.w_in has {params.w_in.shape[0]} inputs but the spike trains "
                         f"have n_in = {x1.shape[2]}")
    p64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), params)
    return _empirical_jit(p64, jnp.asarray(x1), jnp.asarray(x2), cfg, jnp.asarray(kap), sw, sb,
                          srec, so, sharp, get=get)


@float64
def lif_kernels_networks(x1, x2=None, *, config: _lif.LIFConfig, width: int, n_networks: int,
                         readout_weights=UNSET, recurrent: bool = False, sigma_w=1.0,
                         sigma_b=0.0, sigma_rec=1.0, sigma_o=1.0, spike_sharpness=UNSET,
                         seed: int = 0, batch_size: int = 4, which: Sequence[str] = UNSET, get=UNSET,
                         progress: bool | None = None, kappa=UNSET,
                         m=UNSET) -> _mc.MCEstimate:
    """Monte-Carlo average of :func:`lif_empirical` over ``n_networks`` networks of ``width``.

    The estimator of the infinite-width kernels for recurrent networks (bias O(1/width));
    for feed-forward networks its mean equals the mean-field kernel at every width (neurons
    are iid and ``E[w_i w_j] = delta_ij``), so it cross-checks :func:`lif_kernels_mc`.
    Returns :class:`sgntk.monte_carlo.MCEstimate` of :class:`LIFKernel` s.
    Tests: ``test_analytic_vs_mc_vs_networks``, ``test_reset_mc_vs_networks``.
    """
    get = renamed("which", which, "get", get, KERNELS)   # get= is the old name
    weights = renamed("readout_weights", readout_weights, "kappa", kappa, None)
    sharp = renamed("spike_sharpness", spike_sharpness, "m", m, DEFAULT_SPIKE_SHARPNESS)
    x1, x2, cfg, kap, get, sw, sb, so = prepare(x1, x2, config, weights, get, sigma_w,
                                                sigma_b, sigma_o)
    srec = check_positive("sigma_rec", sigma_rec, inclusive=True)
    sharp = check_spike_sharpness(sharp, allow_none=False)
    width = check_int("width", width, minimum=1)
    n_in = x1.shape[2]
    x1j, x2j, kj = jnp.asarray(x1), jnp.asarray(x2), jnp.asarray(kap)

    def sample(key):
        params = init_lif_net(key, n_in, width, recurrent=recurrent)
        return _empirical_impl(params, x1j, x2j, cfg, kj, sw, sb, srec, so, sharp, get)

    return _mc.estimate(sample, jax.random.PRNGKey(seed), n_networks, batch_size=batch_size,
                        progress=progress)
