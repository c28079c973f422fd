"""Adaptive smoothing gradient learning (ASGL; Wang, Jiang, Lian, Yan & Tang, ICML 2023).

ASGL trains an SNN through a *noisy dual-mode* network: in every hidden LIF layer, at every
step, each neuron's output is either its real spike or a smooth relaxation of it, chosen at
random, and the width of the relaxation is a learnable parameter of each layer::

    v      = U[n] - theta
    S[n]   = m * H(v) + (1 - m) * G(beta_l v),    m ~ Bernoulli(p) per neuron, step, example
    dS/dv  = beta_l g(beta_l v),   dS/dbeta_l = v g(beta_l v)        (for every entry, m = 0 or 1)

``H`` is the Heaviside spike (``H(0) = 0``), ``G`` the smooth step whose derivative is the
surrogate profile ``g`` of :mod:`sgntk.surrogates` (:func:`smooth_step`; ``G(-inf) = 0``,
``G(inf) = 1``), ``beta_l = 1 / alpha_l`` the inverse width of layer ``l``. The backward pass
is the derivative of the smooth branch for *every* entry, spike or smooth: the paper's
"efficient" implementation ``G + stop_gradient(m (H - G))`` (public code, ``model/activation.py``
``EfficientNoisySpikeII``), written here as one ``jax.custom_jvp`` so that the forward is
exactly ``H`` where ``m = 1`` and exactly ``G`` where ``m = 0``. The reset uses ``S[n]`` (the
mixed value), as the public code's ``vmem -= thresh * spike``. Evaluation is on the hard
network (``p = 1``: the plain SNN of :func:`sgntk.lif.snn_apply`).

Limits (``tests/test_asgl.py``): ``p -> 1`` or ``alpha -> 0`` gives the SNN (exactly for
``p = 1``; for ``alpha -> 0``, ``G(beta v) -> H(v)`` for every ``v != 0``); ``p = 0`` gives
the smooth network (every neuron outputs ``G(beta v)``), whose ASGL gradient is its exact
gradient.

Conventions and what differs from the paper's code:

* ``noise_rate`` p is the probability of the *spike* mode (the spikes are the noise injected
  into the smooth network; ``p = 0`` is the smooth network, as the issue states the limits).
  The public code's ``--p`` is the fraction of the *analog* mode, ``1 - noise_rate``; its
  CIFAR-100 command uses ``--p 0.2``, so our default ``noise_rate = 0.8``.
* ``H_alpha`` of the paper is the logistic ``sigmoid(x / alpha)``: sgntk's ``"sigmoid"`` shape
  (``G(u) = s(4u)``) with ``sharpness = 1 / (4 alpha)``. Every other shape of
  :data:`sgntk.surrogates.SHAPES` works through its own ``G`` except ``straight_through``
  (``g = 1`` has no bounded antiderivative: ValueError). ``erf`` (jump 2, for sign) is halved:
  ``G = (1 + erf(u)) / 2``.
* The gradient has unit area (``dampening = sharpness``): it is the derivative of ``G``.
* The width update: the public code learns the raw inverse width ``1/alpha`` per layer with its
  own Adam (lr 3e-4, no weight decay) next to the weights' optimiser; that is
  ``width_param="inverse"`` (sgntk projects it onto ``>= MIN_SHARPNESS`` after each step so the
  smooth branch cannot flip; the public code has no guard). ``width_param="log"`` learns
  ``log(1/alpha)`` instead (positive by construction, steps relative to the width), which
  short runs need: 3e-4 per step on the raw inverse width moves it by < 0.1 in a few hundred
  steps. The public code's noise-rate schedule (``MutiStepNoisyRateScheduler``, factor
  ``gamma``; its CIFAR-100 command uses ``gamma = 1``, i.e. constant) is not implemented: p is
  constant.

Kernels: :func:`empirical_kernels` gives the empirical SG-NTK ``J J~^T`` and surrogate Gram
``J~ J~^T`` of a finite (A)SGL network on a probe batch, averaged over noise masks
(``J``: true Jacobian of the noisy forward, the spike-mode entries' Dirac smoothed to
``Theta_m'`` as in :mod:`sgntk.lif_kernels.empirical`; ``J~``: the (A)SGL quasi-Jacobian).

Training: ``sgntk.lif_train.TrainConfig(mode="asgl", asgl_noise_rate=..., asgl_width_lr=...,
asgl_width_param=...)``.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import lif as _lif
from . import surrogates as _sg
from ._util import check_int, check_positive, is_traced
from ._x64 import float64

__all__ = ["ASGLParams", "WIDTH_PARAMS", "MIN_SHARPNESS", "smooth_step", "noisy_spike",
           "check_shape", "check_noise_rate", "init_params", "sharpness", "raw_width",
           "project", "masks", "spike_fn", "asgl_apply", "empirical_kernels"]

WIDTH_PARAMS = ("inverse", "log")
#: floor of the learned inverse width for ``width_param="inverse"`` (a width of 1000 thresholds)
MIN_SHARPNESS = 1e-3


# --------------------------------------------------------------------------------------
# The smooth branch: G with G' = g (the surrogate profile).
# --------------------------------------------------------------------------------------
def _pos_neg(u, upper):
    """``1/2 + sign(u) (upper(|u|) - 1/2)`` for a profile symmetric about 0."""
    return 0.5 + jnp.sign(u) * (upper(jnp.abs(u)) - 0.5)


def _cdf_triangular(u, q):
    a = jnp.minimum(jnp.abs(u), 1.0)
    return _pos_neg(u, lambda _: 1.0 - 0.5 * (1.0 - a) ** 2)


def _cdf_exponential(u, q):
    return _pos_neg(u, lambda a: 1.0 - 0.5 * jnp.exp(-2.0 * a))


def _cdf_fast_sigmoid(u, q):
    return 0.5 + u / (1.0 + 2.0 * jnp.abs(u))


def _cdf_rectangular(u, q):
    return jnp.clip(u + 0.5, 0.0, 1.0)


def _cdf_sigmoid(u, q):
    return jax.nn.sigmoid(4.0 * u)


def _cdf_gaussian(u, q):
    return 0.5 * (1.0 + jax.scipy.special.erf(math.sqrt(math.pi) * u))


def _cdf_cauchy(u, q):
    return 0.5 + jnp.arctan(math.pi * u) / math.pi


def _cdf_q_pseudo_spike(u, q):
    return _pos_neg(u, lambda a: 1.0 - 0.5 * (1.0 + 2.0 * a / (q - 1.0)) ** (1.0 - q))


def _cdf_erf(u, q):
    return 0.5 * (1.0 + jax.scipy.special.erf(u))


_CDFS = {"triangular": _cdf_triangular, "exponential": _cdf_exponential,
         "fast_sigmoid": _cdf_fast_sigmoid, "rectangular": _cdf_rectangular,
         "sigmoid": _cdf_sigmoid, "gaussian": _cdf_gaussian, "cauchy": _cdf_cauchy,
         "q_pseudo_spike": _cdf_q_pseudo_spike, "erf": _cdf_erf}
# G' = _SCALE * g: every profile has unit area except erf (area 2: the sign function's jump).
_SCALE = {"erf": 0.5}


def check_shape(shape) -> str:
    """Canonical surrogate shape name usable by ASGL, or ValueError (``straight_through``)."""
    name = _sg.canonical_shape(shape.shape if isinstance(shape, _sg.Surrogate) else shape)
    if name not in _CDFS:
        raise ValueError(f"ASGL needs a surrogate shape with a bounded smooth step G (G' = g); "
                         f"{name!r} has none. Accepted: {', '.join(_CDFS)}")
    return name


def smooth_step(shape: str, u, tail=2.0):
    """``G(u) = int_{-inf}^u g`` of a surrogate profile (``G(-inf) = 0``, ``G(inf) = 1``).

    ``u = sharpness * (U - theta)``. Closed forms; ``erf`` is halved (``(1 + erf u) / 2``).
    Checked against ``scipy.integrate.quad`` of the profile in ``tests/test_asgl.py``.
    """
    return _CDFS[check_shape(shape)](jnp.asarray(u), tail)


# --------------------------------------------------------------------------------------
# The noisy dual-mode spike.
# --------------------------------------------------------------------------------------
@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def noisy_spike(shape: str, v, mask, beta, tail, jump_sharpness):
    """ASGL's output ``m H(v) + (1 - m) G(beta v)``, exactly (module docstring).

    Args:
      shape: static canonical shape name (:func:`check_shape`).
      v: membrane minus threshold. mask: 1 (spike mode) or 0 (smooth mode), broadcastable.
      beta: inverse width (> 0). tail: q of ``q_pseudo_spike``.
      jump_sharpness: ``None`` or 0 for ASGL's backward (``G'`` for every entry); ``m > 0``
        makes the spike-mode entries' derivative the smoothed Dirac ``Theta_m'`` instead (the
        *true* derivative of the forward, for the SG-NTK's ``J``).
    The derivative with respect to ``beta`` follows the same rule; ``mask`` and ``tail`` get
    none.
    """
    hard = jnp.where(v > 0, 1.0, 0.0).astype(jnp.result_type(v, float))
    return jnp.where(mask > 0, hard, _CDFS[shape](beta * v, tail))


@noisy_spike.defjvp
def _noisy_spike_jvp(shape, primals, tangents):
    v, mask, beta, tail, jump = primals
    dv, _, dbeta, _, _ = tangents
    out = noisy_spike(shape, v, mask, beta, tail, jump)
    g = _SCALE.get(shape, 1.0) * _sg.Surrogate(shape, 1.0, 1.0, tail).profile(beta * v)
    tangent = g * (beta * dv + v * dbeta)
    if jump is not None:
        m = jnp.asarray(jump)
        dirac = m / math.sqrt(math.pi) * jnp.exp(-(m * v) ** 2)
        tangent = jnp.where((mask > 0) & (m > 0), dirac * dv, tangent)
    return out, tangent


# --------------------------------------------------------------------------------------
# Parameters: the network and one learnable width per hidden layer.
# --------------------------------------------------------------------------------------
class ASGLParams(NamedTuple):
    """``net``: the :class:`sgntk.lif.SNNParams`; ``width``: ``(n_layers,)`` raw width
    parameters (``1/alpha`` for ``width_param="inverse"``, ``log(1/alpha)`` for ``"log"``)."""

    net: _lif.SNNParams
    width: jax.Array


def _check_param(width_param):
    if width_param not in WIDTH_PARAMS:
        raise ValueError(f"width_param must be one of {WIDTH_PARAMS}; got {width_param!r}")


def raw_width(beta, width_param: str = "inverse"):
    """The raw parameter of inverse width ``beta`` (``beta`` or ``log beta``)."""
    _check_param(width_param)
    beta = jnp.asarray(beta, jnp.float32) if not is_traced(beta) else beta
    return beta if width_param == "inverse" else jnp.log(beta)


def sharpness(width, width_param: str = "inverse"):
    """Inverse widths ``beta_l = 1/alpha_l`` from the raw width parameters."""
    _check_param(width_param)
    return width if width_param == "inverse" else jnp.exp(width)


def project(width, width_param: str = "inverse"):
    """After an optimiser step: ``inverse`` widths are clipped to ``>= MIN_SHARPNESS``."""
    return jnp.maximum(width, MIN_SHARPNESS) if width_param == "inverse" else width


def init_params(net: _lif.SNNParams, beta, width_param: str = "inverse") -> ASGLParams:
    """:class:`ASGLParams` with every layer's inverse width ``beta`` (scalar or ``(n_layers,)``)."""
    check_positive("beta (initial inverse surrogate width)", beta)
    n = len(net.hidden)
    b = jnp.broadcast_to(jnp.asarray(beta, jnp.float32), (n,))
    return ASGLParams(net, raw_width(b, width_param))


def check_noise_rate(p):
    """``0 <= p <= 1`` (concrete values); returns ``p``."""
    if is_traced(p):
        return p
    arr = np.asarray(p, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError(f"noise_rate (probability of the spike mode) must be in [0, 1]; got {p!r}")
    return p


def masks(key, batch_shape: tuple, nb_steps: int, sizes: Sequence[int], noise_rate,
          dtype=jnp.float32):
    """Spike-mode masks ``m ~ Bernoulli(noise_rate)``: one ``(*batch_shape, T, n_l)`` per layer."""
    keys = jax.random.split(key, len(sizes))
    return tuple(jax.random.bernoulli(k, noise_rate, (*batch_shape, nb_steps, n)).astype(dtype)
                 for k, n in zip(keys, sizes))


def spike_fn(betas, shape: str, tail=2.0, jump_sharpness=None):
    """The ``snn_apply`` hook ``(layer, v, mask_t) -> S`` of ASGL with inverse widths ``betas``."""
    shape = check_shape(shape)

    def fn(layer, v, mask_t):
        mask_t = jnp.zeros_like(v) if mask_t is None else mask_t
        return noisy_spike(shape, v, mask_t, betas[layer], tail, jump_sharpness)

    return fn


def asgl_apply(params: ASGLParams, spikes_in, *, config: _lif.LIFConfig, noise_rate, key,
               width_param: str = "inverse", noise=None, jump_sharpness=None):
    """Noisy dual-mode forward pass of an :class:`ASGLParams` network (:func:`sgntk.lif.snn_apply`
    with ASGL's spike); autodiff gives ASGL's gradient for the weights and the widths.

    ``config.surrogate`` supplies the shape (and tail); its sharpness and dampening are not
    used (the widths are ``params.width``). ``spikes_in``: ``(T, n_in)`` or ``(B, T, n_in)``.
    ``noise``: the masks (:func:`masks`); drawn from ``key`` with ``noise_rate`` if None.
    """
    check_noise_rate(noise_rate)
    x = jnp.asarray(spikes_in)
    if noise is None:
        sizes = [p.w_in.shape[1] for p in params.net.hidden]
        noise = masks(key, x.shape[:-2], x.shape[-2], sizes, noise_rate, x.dtype)
    fn = spike_fn(sharpness(params.width, width_param), config.surrogate.shape,
                  config.surrogate.tail, jump_sharpness)
    return _lif.snn_apply(params.net, x, config=config, spike_fn=fn, noise=noise)


# --------------------------------------------------------------------------------------
# Empirical kernels of finite (A)SGL networks.
# --------------------------------------------------------------------------------------
def _jacobians(f, params, x, z):
    """Per-example Jacobians of ``f(params, x_i, z_i) -> (n_out,)``, flattened over all
    parameters: ``(B, n_out, n_params)`` (``z``: per-example masks or None)."""
    jac = jax.vmap(jax.jacrev(f), in_axes=(None, 0, 0))(params, x, z)
    leaves = jax.tree_util.tree_leaves(jac)
    b, c = leaves[0].shape[:2]
    return jnp.concatenate([j.reshape(b, c, -1) for j in leaves], axis=2)


@functools.partial(jax.jit, static_argnames=("mode", "shape"))
def _kernels_core(net, x, zs, betas, config, spike_sharpness, *, mode, shape):
    """Mask-averaged ``(1/n_out) sum_c J_c J~_c^T`` and ``J~_c J~_c^T`` (jitted once per
    network shape; widths, masks and config are traced)."""
    from .lif_kernels._common import true_spike_derivative

    n_out = net.readout.w.shape[1]

    def pair(f_true, f_sur, z):
        jt = _jacobians(f_true, net, x, z)
        js = _jacobians(f_sur, net, x, z)
        return (jnp.einsum("icp,jcp->ij", jt, js) / n_out,
                jnp.einsum("icp,jcp->ij", js, js) / n_out)

    if mode == "sgl":
        true_cfg = config.replace(surrogate=true_spike_derivative(spike_sharpness))
        return pair(lambda p, xx, z: _lif.snn_apply(p, xx, config=true_cfg).logits,
                    lambda p, xx, z: _lif.snn_apply(p, xx, config=config).logits, None)

    def make(jump):
        fn = spike_fn(betas, shape, config.surrogate.tail, jump)
        return lambda p, xx, z: _lif.snn_apply(p, xx, config=config, spike_fn=fn,
                                               noise=z).logits

    f_true, f_sur = make(spike_sharpness), make(None)
    sg, gram = jax.lax.map(lambda z: pair(f_true, f_sur, z), zs)
    return sg.mean(0), gram.mean(0)


@float64
def empirical_kernels(net: _lif.SNNParams, x, *, config: _lif.LIFConfig, mode: str = "asgl",
                      beta=None, noise_rate=0.8, key=None, n_masks: int = 4,
                      spike_sharpness: float = 10.0):
    """Empirical SG-NTK and surrogate Gram of a finite network on a probe batch, float64.

    ``K(x_i, x_j) = (1 / n_out) sum_c J_c(x_i) . J~_c(x_j)`` over all weights (hidden and
    readout; the output-trace kernel), ``(B, B)``:

    * ``mode="sgl"``: the plain SNN with ``config.surrogate``: ``J~`` its surrogate
      gradient, ``J`` the true gradient with the spike's Dirac smoothed to ``Theta_m'``
      (``m = spike_sharpness``; :func:`sgntk.lif_kernels._common.true_spike_derivative`).
    * ``mode="asgl"``: the noisy network with inverse widths ``beta`` (scalar or per layer)
      and spike-mode probability ``noise_rate``; ``J~`` is ASGL's gradient, ``J`` the true
      derivative of the noisy forward (``G'`` on smooth entries, ``Theta_m'`` on spike entries);
      averaged over ``n_masks`` mask draws from ``key``.

    Use a linear readout (``config.readout`` ``"sum"`` or ``"last"``) for kernels that mean
    something at large width (see :mod:`sgntk.lif`). Returns ``dict(sgntk, sg_gram)``.
    """
    if mode not in ("sgl", "asgl"):
        raise ValueError(f"mode must be 'sgl' or 'asgl'; got {mode!r}")
    check_positive("spike_sharpness", spike_sharpness)
    config = config.validate()
    net = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), net)
    x = jnp.asarray(x, jnp.float64)
    if x.ndim != 3:
        raise ValueError(f"x must be a batch of spike trains (B, T, n_in); got shape {x.shape}")
    n_layers = len(net.hidden)
    if mode == "sgl":
        shape, betas, zs = config.surrogate.shape, jnp.ones((n_layers,)), None
    else:
        check_noise_rate(noise_rate)
        check_int("n_masks", n_masks, minimum=1)
        shape = check_shape(config.surrogate.shape)
        if beta is None:
            raise ValueError("mode='asgl' needs beta (inverse width, scalar or per layer)")
        check_positive("beta", beta)
        betas = jnp.broadcast_to(jnp.asarray(beta, jnp.float64), (n_layers,))
        key = jax.random.key(0) if key is None else key
        sizes = [p.w_in.shape[1] for p in net.hidden]
        zs = [masks(k, x.shape[:1], x.shape[1], sizes, noise_rate, jnp.float64)
              for k in jax.random.split(key, n_masks)]
        zs = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *zs)  # leaves (n_masks, B, T, n)
    sg, gram = _kernels_core(net, x, zs, betas, config, jnp.asarray(spike_sharpness, jnp.float64),
                             mode=mode, shape=shape)
    out = dict(sgntk=sg, sg_gram=gram)
    for name, k in out.items():
        if not bool(jnp.all(jnp.isfinite(k))):
            raise FloatingPointError(f"non-finite entries in the empirical {name}")
    return out
