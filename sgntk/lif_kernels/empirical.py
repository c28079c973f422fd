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

import functools
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

__all__ = ["LIFNetParams", "LIFDeepParams", "init_lif_net", "init_lif_deep", "lif_empirical",
           "lif_kernels_networks"]


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


def _empirical_impl(params, x1, x2, config, kappa, sw, sb, srec, so, sharp, get,
                    conditional_nngp=False):
    """``x2 = None``: the kernels of ``x1`` with itself, its features computed once."""
    f = jax.vmap(lambda x: _features(params, x, config, kappa, sw, sb, srec, so, sharp))
    y1, gt1, gs1 = f(x1)
    y2, _, gs2 = (y1, gt1, gs1) if x2 is None else f(x2)
    readout = lambda: gs1["w_out"] @ gs2["w_out"].T   # dy/dw_out Gram: E[y y^T | spikes]
    return _assemble(get, y1, y2, lambda: _gram(gt1, gs2), lambda: _gram(gs1, gs2),
                     readout if conditional_nngp else None)


def _assemble(get, y1, y2, sgntk, sg_gram, nngp=None) -> LIFKernel:
    """The requested kernels: ``nngp`` the sample ``y1 y2^T`` (or the given thunk: the
    readout-weight Gram, see :func:`lif_kernels_networks`); ``sgntk`` / ``sg_gram`` are
    computed by the given thunks only when asked for."""
    out = {"nngp": nngp or (lambda: y1[:, None] * y2[None, :]), "sgntk": sgntk,
           "sg_gram": sg_gram}
    return LIFKernel(**{k: out[k]() for k in get})


_empirical_jit = jax.jit(_empirical_impl, static_argnames=("get",))


@float64
def lif_empirical(params: LIFNetParams, x1, x2=None, *, config: _lif.LIFConfig,
                  readout_weights=UNSET, sigma_w=1.0, sigma_b=0.0, sigma_rec=1.0, sigma_o=1.0,
                  spike_sharpness=UNSET, which: Sequence[str] = UNSET, get=UNSET, mesh=None,
                  tiles=None, tile_size: int = 256, progress: Optional[bool] = None,
                  kappa=UNSET, m=UNSET) -> LIFKernel:
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

    Deep feed-forward networks (:class:`LIFDeepParams`, :func:`init_lif_deep`): the same
    structure layer by layer, ``dy/dW^l = sigma_w/sqrt(n_{l-1}) S^{l-1}^T Lambda^l`` with
    ``Lambda^l = dy/d d^l`` from one backward pass (:func:`_deep_features`).

    Args:
      params: :class:`LIFNetParams` (:func:`init_lif_net`) or :class:`LIFDeepParams`. x1, x2: spike trains as in
        :func:`lif_kernels`. config: :class:`sgntk.lif.LIFConfig` (any reset, detached or
        not). readout_weights (old name ``kappa``): as in :func:`lif_kernels`. sigma_*: NTK
        scales (``sigma_rec`` only used if ``params.w_rec`` is not None). spike_sharpness
        (old name ``m``): sharpness of the smoothed true derivative, default
        :data:`DEFAULT_SPIKE_SHARPNESS`. mesh / tiles / tile_size / progress: as in
        :func:`sgntk.lif_kernels.lif_kernels` (tiles of input pairs on every device of a
        ``jax.sharding.Mesh``, or streamed to ``<tiles>/<name>.npy``; :func:`sgntk.sharding.map_tiles`).
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
    sym = x2 is x1          # prepare returns x1 itself for x2=None: features computed once
    if isinstance(params, LIFDeepParams):
        if params.w[0].shape[0] != x1.shape[2]:
            raise ValueError(f"params.w[0] has {params.w[0].shape[0]} inputs but the spike trains "
                             f"have n_in = {x1.shape[2]}")
        args = (cfg, jnp.asarray(kap), sw, sb, so, sharp)
        fn = _deep_empirical_jit
    else:
        if params.w_in.shape[0] != x1.shape[2]:
            raise ValueError(f"params.w_in has {params.w_in.shape[0]} inputs but the spike "
                             f"trains have n_in = {x1.shape[2]}")
        args = (cfg, jnp.asarray(kap), sw, sb, srec, so, sharp)
        fn = _empirical_jit
    p64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), params)
    if mesh is not None or tiles is not None:   # sharded / on disk (sgntk.sharding)
        from .. import sharding
        return LIFKernel(**sharding.map_tiles(
            _tile_fn(fn, get), x1, x2, args=(p64,) + args, mesh=mesh,
            tile=check_int("tile_size", tile_size, minimum=1), out=tiles, progress=progress))
    return fn(p64, jnp.asarray(x1), None if sym else jnp.asarray(x2), *args, get=get)


@functools.lru_cache(maxsize=16)
def _tile_fn(fn, get):
    """``(xa, xb, params, *args) -> LIFKernel``: the tile function of :func:`sgntk.sharding.map_tiles`."""
    return lambda xa, xb, params, *args: fn(params, xa, xb, *args, get=get)


@float64
def lif_kernels_networks(x1, x2=None, *, config: _lif.LIFConfig, width: int, n_networks: int,
                         readout_weights=UNSET, recurrent: bool = False, sigma_w=1.0,
                         sigma_b=0.0, sigma_rec=1.0, sigma_o=1.0, spike_sharpness=UNSET,
                         seed: int = 0, batch_size: int = 4, which: Sequence[str] = UNSET, get=UNSET,
                         progress: bool | None = None, depth: int = 1,
                         nngp_estimator: str = "sample", kappa=UNSET,
                         m=UNSET) -> _mc.MCEstimate:
    """Monte-Carlo average of :func:`lif_empirical` over ``n_networks`` networks of ``width``.

    ``nngp_estimator``: ``"sample"`` averages :func:`lif_empirical`'s one-sample ``y y^T``;
    ``"conditional"`` averages its expectation over the readout weights given the hidden
    spikes, the readout-weight Gram ``sigma_o^2 / N sum_i c_i(x1) c_i(x2)`` with ``c_i =
    sum_t kappa_t S_i[t]`` (Rao-Blackwellised: the same mean, far smaller variance; no extra
    forward pass).

    The estimator of the infinite-width kernels for recurrent networks (bias O(1/width));
    for feed-forward networks its mean equals the mean-field kernel at every width (neurons
    are iid and ``E[w_i w_j] = delta_ij``), so it cross-checks :func:`lif_kernels_mc`.
    ``depth > 1``: feed-forward networks of ``depth`` hidden layers of ``width``
    (:func:`init_lif_deep`); their mean has an O(1/width) finite-width bias (the inner drives
    are only asymptotically Gaussian).
    Returns :class:`sgntk.monte_carlo.MCEstimate` of :class:`LIFKernel` s.
    Tests: ``test_analytic_vs_mc_vs_networks``, ``test_reset_mc_vs_networks``,
    ``tests/test_lif_kernels_deep.py``.
    """
    get = renamed("which", which, "get", get, KERNELS)   # get= is the old name
    weights = renamed("readout_weights", readout_weights, "kappa", kappa, None)
    sharp = renamed("spike_sharpness", spike_sharpness, "m", m, DEFAULT_SPIKE_SHARPNESS)
    x1, x2, cfg, kap, get, sw, sb, so = prepare(x1, x2, config, weights, get, sigma_w,
                                                sigma_b, sigma_o)
    srec = check_positive("sigma_rec", sigma_rec, inclusive=True)
    sharp = check_spike_sharpness(sharp, allow_none=False)
    width = check_int("width", width, minimum=1)
    depth = check_int("depth", depth, minimum=1)
    if recurrent and depth > 1:
        raise ValueError("recurrent=True is only implemented for depth = 1")
    if nngp_estimator not in ("sample", "conditional"):
        raise ValueError(f"nngp_estimator must be 'sample' or 'conditional', got {nngp_estimator!r}")
    # x2=None (prepare returns x1 itself): each network's features are computed once
    x1j, x2j, kj = jnp.asarray(x1), None if x2 is x1 else jnp.asarray(x2), jnp.asarray(kap)
    # One module-level compiled function per (width, depth, recurrence, kernels, shapes): a grid
    # of calls (sgntk select) reuses it instead of compiling a new closure every time.
    batched = functools.partial(_networks_batch, x1=x1j, x2=x2j, config=cfg, kappa=kj, sw=sw,
                                sb=sb, srec=srec, so=so, sharp=sharp, width=width, depth=depth,
                                recurrent=bool(recurrent), get=get,
                                conditional_nngp=nngp_estimator == "conditional")
    return _mc.estimate(None, jax.random.PRNGKey(seed), n_networks, batch_size=batch_size,
                        progress=progress, batched_fn=batched)


@functools.partial(jax.jit, static_argnames=("width", "depth", "recurrent", "get",
                                             "conditional_nngp"))
def _networks_batch(keys, *, x1, x2, config, kappa, sw, sb, srec, so, sharp, width, depth,
                    recurrent, get, conditional_nngp):
    """:func:`lif_empirical` of the networks :func:`init_lif_net` (``depth = 1``) or
    :func:`init_lif_deep` draws from ``keys`` (vmapped)."""
    def sample(key):
        if depth > 1:
            params = init_lif_deep(key, x1.shape[2], width, depth)
            return _deep_empirical_impl(params, x1, x2, config, kappa, sw, sb, so, sharp, get,
                                        conditional_nngp)
        params = init_lif_net(key, x1.shape[2], width, recurrent=recurrent)
        return _empirical_impl(params, x1, x2, config, kappa, sw, sb, srec, so, sharp, get,
                               conditional_nngp)

    return jax.vmap(sample)(keys)


# --------------------------------------------------------------------------------------
# Deep feed-forward networks.
# --------------------------------------------------------------------------------------
class LIFDeepParams(NamedTuple):
    """Raw ``N(0, 1)`` parameters of a feed-forward LIF network with ``len(w)`` hidden layers.

    w: tuple of ``(n_in, N)``, ``(N, N)``, ...; bias: tuple of ``(N,)``; w_out ``(N,)``.
    """

    w: tuple
    bias: tuple
    w_out: jax.Array


def init_lif_deep(key, n_in: int, width: int, depth: int) -> LIFDeepParams:
    """All raw parameters iid ``N(0, 1)`` for ``depth`` hidden LIF layers of ``width`` neurons."""
    depth = check_int("depth", depth, minimum=1)
    keys = jax.random.split(key, 2 * depth + 1)
    ws = tuple(jax.random.normal(keys[2 * i], (n_in if i == 0 else width, width))
               for i in range(depth))
    bs = tuple(jax.random.normal(keys[2 * i + 1], (width,)) for i in range(depth))
    return LIFDeepParams(ws, bs, jax.random.normal(keys[-1], (width,)))


def _deep_features(params, x, config, kappa, sw, sb, so, sharp):
    """Output, per-layer inputs ``S^{l-1}`` and drive sensitivities ``Lambda^l`` (true, surrogate).

    ``d^l = sigma_w / sqrt(n_{l-1}) S^{l-1} W^l + sigma_b b^l`` (``S^0 = x``), ``S^l =
    lif_scan(d^l)``, ``y = sigma_o / sqrt(N) (kappa . S^L) w_out``; ``Lambda^l = dy / d d^l``
    by one backward pass through zero perturbations of every drive.
    """
    width = params.w_out.shape[0]
    scale = so / math.sqrt(width)

    def forward(eps, cfg):
        s, inputs = x, []
        for w, b, e in zip(params.w, params.bias, eps):
            inputs.append(s)
            d = s @ (sw / math.sqrt(w.shape[0]) * w) + sb * b + e
            s = _lif.lif_scan(d, config=cfg).spikes
        return scale * (kappa @ s) @ params.w_out, (inputs, s)

    zeros = tuple(jnp.zeros((x.shape[0], w.shape[1]), x.dtype) for w in params.w)
    cfg_true = config.replace(surrogate=true_spike_derivative(sharp))
    lam_t, (inputs, s_last) = jax.grad(forward, has_aux=True)(zeros, cfg_true)
    lam_s, _ = jax.grad(forward, has_aux=True)(zeros, config)
    y = scale * (kappa @ s_last) @ params.w_out
    return y, tuple(inputs), lam_t, lam_s, scale * (kappa @ s_last)


def _deep_empirical_impl(params, x1, x2, config, kappa, sw, sb, so, sharp, get,
                         conditional_nngp=False):
    """Kernels as sums over layers of ``sum_{t,t'} G^l_tt' (Lambda^l Lambda~^l^T)_tt'`` with the
    empirical drive covariance ``G^l = sigma_w^2 / n_{l-1} S^{l-1} S'^{l-1}^T + sigma_b^2``
    (the Gram of the weight and bias gradients), plus the readout Gram."""
    f = jax.vmap(lambda x: _deep_features(params, x, config, kappa, sw, sb, so, sharp))
    y1, in1, lt1, ls1, ro1 = f(x1)
    y2, in2, _, ls2, ro2 = (y1, in1, lt1, ls1, ro1) if x2 is None else f(x2)
    readout = jnp.einsum("pn,qn->pq", ro1, ro2)

    def layers(lam1, lam2):
        total = readout
        for w, s1, s2, a1, a2 in zip(params.w, in1, in2, lam1, lam2):
            g = sw**2 / w.shape[0] * jnp.einsum("ptk,qsk->pqts", s1, s2) + sb**2
            total = total + jnp.einsum("pqts,ptn,qsn->pq", g, a1, a2)
        return total

    return _assemble(get, y1, y2, lambda: layers(lt1, ls2), lambda: layers(ls1, ls2),
                     (lambda: readout) if conditional_nngp else None)


_deep_empirical_jit = jax.jit(_deep_empirical_impl, static_argnames=("get",))
