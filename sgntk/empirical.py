"""Empirical kernels of finite networks: ``J(x1) J~(x2)^T``, ``J~ J~^T`` and ``J J^T``.

Two routes, checked against each other in ``tests/test_empirical.py``:

* **General** (:func:`empirical_kernel`, :func:`empirical_kernels`): any pair of JAX
  functions ``f(params, x) -> scalar`` sharing ``params``; ``f_true`` is the network with the
  true activation derivative, ``f_surrogate`` its twin whose spikes are
  :func:`sgntk.surrogates.sign`/``heaviside`` (custom JVP = psi'). The kernel is
  ``sum over parameter leaves of J1 J2^T`` from per-example Jacobians (``vmap(grad)``).
* **Structured fast path** (:func:`network_empirical`; :func:`mlp_empirical` for the MLP):
  for a chain ``Dense, phi, Dense, ..., Dense`` of :mod:`sgntk.layers` (the MLP of
  :mod:`sgntk.kernels` is one) the per-layer gradient is an outer product of a backward
  vector and a forward activation, so (Eilers et al. 2024, Eq. 5)::

      J(x) J~(x')^T = sum_l (delta_l(x) . delta~_l(x')) (sigma_w^2/n_{l-1} a_{l-1}(x) . a_{l-1}(x')
                                                         + sigma_b^2)

  with ``a_0 = x``, ``a_l = phi(h_l)``, ``delta_{L+1} = 1`` and
  ``delta_l = phi'(h_l) * (sigma_w/sqrt(n_l) W_{l+1}^T delta_{l+1})`` (``psi'`` for
  ``delta~``). Only matrix products of size (batch x width): no Jacobians are formed. The
  pieces come from the layers themselves: forward ``Dense.apply`` and ``phi = layer.fn``,
  backward the VJP of ``Dense.apply`` and ``layer.derivative``/``layer.surrogate_derivative``,
  the feature term ``Dense.param_gram``. :func:`mlp_init`, :func:`mlp_apply` and
  :func:`mlp_surrogate_apply` are ``layers.mlp(...).init/apply`` (true / surrogate twin).

Jump activations: the exact derivative of ``sign``/``step`` in a finite network is zero
almost surely, so ``J(x)`` only has read-out entries. ``jump_width=eps`` replaces the Dirac
delta by ``c N(0, eps^2)`` (c the jump), the smoothed true derivative that converges to the
infinite-width SG-NTK as eps -> 0 after width -> inf (bias O(eps^2)).
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from . import layers as L
from ._util import renamed_keyword
from .kernels import KERNELS, MLPKernel, check_which
from .layers import MLPParams
from .surrogates import Surrogate
from .surrogates import get as get_surrogate

__all__ = ["MLPParams", "mlp_init", "mlp_apply", "mlp_surrogate_apply", "mlp_empirical",
           "network_empirical", "empirical_kernel", "empirical_kernels", "activation_fns"]


def mlp_init(key, in_dim: int, width: int, depth: int) -> MLPParams:
    """All weights and biases iid N(0, 1) (NTK parameterisation); output dimension 1.

    ``layers.mlp(depth=depth, width=width).init(key, in_dim)``: layer ``l``'s weights come
    from ``jax.random.split(key, 2 (depth + 1))[2 l]``, its biases from ``[2 l + 1]``.
    """
    return L.mlp(depth=depth, width=width).init(key, in_dim)[1]


def activation_fns(activation, *, m=1.0, jump_width=None):
    """``(phi, phi_prime)`` for a finite network: forward activation and true derivative.

    For jumps ``phi_prime`` is 0 (exact, almost surely) or, with ``jump_width=eps``, the
    smoothed delta ``c exp(-z^2/(2 eps^2)) / sqrt(2 pi eps^2)``
    (``layers.activation_layer(activation, sharpness=m)``'s ``fn`` and ``derivative``).
    """
    layer = L.activation_layer(activation, sharpness=m)
    return layer.fn, functools.partial(layer.derivative, jump_width=jump_width)


def _mlp(params: MLPParams, activation, surrogate, sigma_w, sigma_b, m):
    return L.mlp(depth=len(params.weights) - 1, activation=activation, surrogate=surrogate,
                 sigma_w=sigma_w, sigma_b=sigma_b, sharpness=m)


def mlp_apply(params: MLPParams, x, *, activation, sigma_w=1.0, sigma_b=0.0, m=1.0):
    """Network output f(x) for a batch ``x: (n, d)`` -> ``(n,)`` (true forward pass; autodiff
    gives the true derivative: 0 through sign/step, erf_m' through erf)."""
    return _mlp(params, activation, None, sigma_w, sigma_b, m).apply(params, x)[..., 0]


def mlp_surrogate_apply(params: MLPParams, x, *, activation, surrogate: Surrogate,
                        sigma_w=1.0, sigma_b=0.0, m=1.0):
    """The same forward pass, but autodiff sees psi' (custom-JVP spikes): SGL's network.

    For ``erf`` the forward value is ``erf(m z)`` and the derivative psi'; a smooth callable
    activation keeps its value and gets psi' as derivative.
    """
    sur = get_surrogate(surrogate)
    return _mlp(params, activation, sur, sigma_w, sigma_b, m).apply(params, x)[..., 0]


def network_empirical(network: L.Network, params, x1, x2=None, *, jump_width=None,
                      which: Sequence[str] = KERNELS) -> MLPKernel:
    """Empirical kernels of one finite network ``serial(Dense, phi, Dense, ..., Dense)``.

    Args:
      network: a :class:`sgntk.layers.Network` whose layers alternate
        :class:`~sgntk.layers.DenseLayer` and :class:`~sgntk.layers.ActivationLayer`, starting
        and ending with a Dense layer (the last one of width 1).
      params: its per-layer params (``network.init(key, d)[1]``, or
        :func:`sgntk.layers.mlp_layer_params` of an :class:`MLPParams`).
      x1: ``(n1, d)``; x2: ``(n2, d)`` (default x1).
      jump_width: smoothing of the Dirac derivative of jump activations (None: exact, 0).
      which: kernels to compute (the others are None; unneeded backward passes are skipped).
    Returns:
      :class:`~sgntk.kernels.MLPKernel` with ``nngp = f(x1) f(x2)^T`` (one sample of the
      output covariance), ``ntk = J J^T``, ``sgntk = J(x1) J~(x2)^T``, ``sg_gram = J~ J~^T``
      (module docstring for the formula; J~ uses each activation's surrogate).
    """
    layers = network.layers
    dense, acts = layers[0::2], layers[1::2]
    if not (len(layers) % 2 == 1 and all(isinstance(d, L.DenseLayer) for d in dense)
            and all(isinstance(a, L.ActivationLayer) for a in acts)):
        raise ValueError("network_empirical needs layers Dense, activation, Dense, ..., Dense; "
                         f"got {[type(x).__name__ for x in layers]}")
    dparams = params[0::2]
    x2 = x1 if x2 is None else x2

    def forward(x):
        """Inputs a_{l-1} of every Dense layer and its outputs h_l."""
        ins, pres, a = [], [], x
        for l, (layer, p) in enumerate(zip(dense, dparams)):
            ins.append(a)
            pres.append(layer.apply(p, a))
            if l < len(acts):
                a = acts[l].fn(pres[-1])
        return ins, pres

    (in1, pre1), (in2, pre2) = forward(x1), forward(x2)

    @functools.lru_cache(maxsize=None)
    def backward(side, true):
        """delta_l for every Dense layer (delta_{L+1} = 1): VJP of Dense.apply times phi'/psi'."""
        ins, pres = (in1, pre1) if side == 1 else (in2, pre2)
        delta = jnp.ones_like(pres[-1])
        deltas = [delta]
        for l in range(len(dense) - 1, 0, -1):
            _, vjp = jax.vjp(functools.partial(dense[l].apply, dparams[l]), ins[l])
            act = acts[l - 1]
            d = (act.derivative(pres[l - 1], jump_width) if true
                 else act.surrogate_derivative(pres[l - 1]))
            delta = d * vjp(delta)[0]
            deltas.append(delta)
        return deltas[::-1]

    feats = [layer.param_gram(u, v) for layer, u, v in zip(dense, in1, in2)]

    def contract(true1, true2):
        return sum((u @ v.T) * f for u, v, f in zip(backward(1, true1), backward(2, true2), feats))

    return MLPKernel(nngp=pre1[-1] @ pre2[-1].T if "nngp" in which else None,
                     ntk=contract(True, True) if "ntk" in which else None,
                     sgntk=contract(True, False) if "sgntk" in which else None,
                     sg_gram=contract(False, False) if "sg_gram" in which else None)


def mlp_empirical(params: MLPParams, x1, x2=None, *, activation, surrogate,
                  sigma_w=1.0, sigma_b=0.0, m=1.0, jump_width=None,
                  which: Optional[Sequence[str]] = None,
                  get: Optional[Sequence[str]] = None) -> MLPKernel:
    """Empirical kernels of one finite MLP by the structured fast path (module docstring).

    Args:
      params: :class:`MLPParams`.
      x1: ``(n1, d)``; x2: ``(n2, d)`` (default x1).
      activation, surrogate, sigma_w, sigma_b, m: as :func:`sgntk.kernels.mlp`.
      jump_width: smoothing of the Dirac derivative of jump activations (None: exact, 0).
      which: which kernels to compute (the others are None; unneeded backward passes are
        skipped); ``get=`` is its deprecated old name.
    Returns:
      :class:`~sgntk.kernels.MLPKernel` with ``nngp = f(x1) f(x2)^T`` (one sample of the
      output covariance), ``ntk = J J^T``, ``sgntk = J(x1) J~(x2)^T``, ``sg_gram = J~ J~^T``.
    """
    which = check_which(renamed_keyword("which", which, "get", get, default=KERNELS))
    net = _mlp(params, activation, get_surrogate(surrogate), sigma_w, sigma_b, m)
    return network_empirical(net, L.mlp_layer_params(params), x1, x2, jump_width=jump_width,
                             which=which)


# --------------------------------------------------------------------------------------
# General route: any pair of functions f(params, x) -> scalar.
# --------------------------------------------------------------------------------------
def _jacobians(f: Callable, params, x):
    return jax.vmap(jax.grad(f), in_axes=(None, 0))(params, x)


def empirical_kernel(f1: Callable, f2: Callable, params, x1, x2=None):
    """``J_1(x1) J_2(x2)^T = sum_p d f1(x1)/dp  d f2(x2)/dp``, shape ``(n1, n2)``.

    ``f1, f2: (params, x) -> scalar`` for a single example ``x``; batches are vmapped.
    With ``f1`` the true network and ``f2`` its surrogate twin this is the SG-NTK.
    """
    x2 = x1 if x2 is None else x2
    j1, j2 = _jacobians(f1, params, x1), _jacobians(f2, params, x2)
    prods = jax.tree_util.tree_map(
        lambda a, b: a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1).T, j1, j2)
    return sum(jax.tree_util.tree_leaves(prods))


def empirical_kernels(f_true: Callable, f_surrogate: Callable, params, x1, x2=None) -> MLPKernel:
    """``ntk = J J^T``, ``sgntk = J J~^T``, ``sg_gram = J~ J~^T`` and ``nngp = f f^T`` of one network."""
    x2 = x1 if x2 is None else x2
    out1 = jax.vmap(f_true, in_axes=(None, 0))(params, x1)
    out2 = jax.vmap(f_true, in_axes=(None, 0))(params, x2)
    return MLPKernel(nngp=out1[:, None] * out2[None, :],
                     ntk=empirical_kernel(f_true, f_true, params, x1, x2),
                     sgntk=empirical_kernel(f_true, f_surrogate, params, x1, x2),
                     sg_gram=empirical_kernel(f_surrogate, f_surrogate, params, x1, x2))

