"""Empirical kernels of finite networks: ``J(x1) J~(x2)^T``, ``J~ J~^T`` and ``J J^T``.

Two routes, checked against each other in ``tests/test_empirical.py``:

* **General** (:func:`empirical_kernel`, :func:`empirical_kernels`): any pair of JAX
  functions ``f(params, x) -> scalar`` sharing ``params``; ``f_true`` is the network with the
  true activation derivative, ``f_surrogate`` its twin whose spikes are
  :func:`sgntk.surrogates.sign`/``heaviside`` (custom JVP = psi'). The kernel is
  ``sum over parameter leaves of J1 J2^T`` from per-example Jacobians (``vmap(grad)``).
* **Structured MLP fast path** (:func:`mlp_empirical`): for the NTK-parameterised MLP of
  :mod:`sgntk.kernels` the per-layer gradient is an outer product of a backward vector and
  a forward activation, so (Eilers et al. 2024, Eq. 5)::

      J(x) J~(x')^T = sum_l (delta_l(x) . delta~_l(x')) (sigma_w^2/n_{l-1} a_{l-1}(x) . a_{l-1}(x')
                                                         + sigma_b^2)

  with ``a_0 = x``, ``a_l = phi(h_l)``, ``delta_{L+1} = 1`` and
  ``delta_l = phi'(h_l) * (sigma_w/sqrt(n_l) W_{l+1}^T delta_{l+1})`` (``psi'`` for
  ``delta~``). Only matrix products of size (batch x width): no Jacobians are formed.

Jump activations: the exact derivative of ``sign``/``step`` in a finite network is zero
almost surely, so ``J(x)`` only has read-out entries. ``jump_width=eps`` replaces the Dirac
delta by ``c N(0, eps^2)`` (c the jump), the smoothed true derivative that converges to the
infinite-width SG-NTK as eps -> 0 after width -> inf (bias O(eps^2)).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import expectations as E
from .kernels import MLPKernel
from .surrogates import Surrogate
from .surrogates import get as get_surrogate

__all__ = ["MLPParams", "mlp_init", "mlp_apply", "mlp_surrogate_apply", "mlp_empirical",
           "empirical_kernel", "empirical_kernels", "activation_fns"]


class MLPParams(NamedTuple):
    """Parameters of an NTK-parameterised MLP: ``weights[l]: (n_l, n_{l+1})``, ``biases[l]: (n_{l+1},)``."""

    weights: tuple
    biases: tuple


def mlp_init(key, in_dim: int, width: int, depth: int) -> MLPParams:
    """All weights and biases iid N(0, 1) (NTK parameterisation); output dimension 1."""
    dims = [in_dim] + [width] * depth + [1]
    keys = jax.random.split(key, 2 * (depth + 1))
    ws = tuple(jax.random.normal(keys[2 * i], (dims[i], dims[i + 1])) for i in range(depth + 1))
    bs = tuple(jax.random.normal(keys[2 * i + 1], (dims[i + 1],)) for i in range(depth + 1))
    return MLPParams(ws, bs)


def activation_fns(activation, *, m=1.0, jump_width=None):
    """``(phi, phi_prime)`` for a finite network: forward activation and true derivative.

    For jumps ``phi_prime`` is 0 (exact, almost surely) or, with ``jump_width=eps``, the
    smoothed delta ``c exp(-z^2/(2 eps^2)) / sqrt(2 pi eps^2)``.
    """
    activation = E.check_activation(activation)
    if activation in E.JUMPS:
        c = E.JUMPS[activation]
        phi = jnp.sign if activation == "sign" else (lambda z: jnp.where(z > 0, 1.0, 0.0))
        if jump_width is None:
            return phi, jnp.zeros_like
        eps = jump_width
        return phi, lambda z: c * jnp.exp(-0.5 * (z / eps) ** 2) / (jnp.sqrt(2 * jnp.pi) * eps)
    if activation == "erf":
        return (lambda z: jax.scipy.special.erf(m * z),
                lambda z: 2.0 * m / jnp.sqrt(jnp.pi) * jnp.exp(-(m * z) ** 2))
    return activation, jnp.vectorize(jax.grad(activation))


def _forward(params: MLPParams, x, phi, sigma_w, sigma_b):
    """Pre-activations h_l and activations a_l (a_0 = x) for a batch x: (n, d)."""
    acts, pres = [x], []
    a = x
    for w, b in zip(params.weights, params.biases):
        h = sigma_w / jnp.sqrt(a.shape[-1]) * a @ w + sigma_b * b
        pres.append(h)
        a = phi(h)
        acts.append(a)
    return pres, acts[:-1]


def mlp_apply(params: MLPParams, x, *, activation, sigma_w=1.0, sigma_b=0.0, m=1.0):
    """Network output f(x) for a batch ``x: (n, d)`` -> ``(n,)`` (true forward pass)."""
    phi, _ = activation_fns(activation, m=m)
    pres, _ = _forward(params, x, phi, sigma_w, sigma_b)
    return pres[-1][..., 0]


def mlp_surrogate_apply(params: MLPParams, x, *, activation, surrogate: Surrogate,
                        sigma_w=1.0, sigma_b=0.0, m=1.0):
    """The same forward pass, but autodiff sees psi' (custom-JVP spikes): SGL's network.

    For ``erf`` the forward value is ``erf(m z)`` and the derivative psi'.
    """
    from . import surrogates as S

    surrogate = get_surrogate(surrogate)
    activation = E.check_activation(activation)
    if activation == "sign":
        phi = lambda z: S.sign(z, surrogate)  # noqa: E731
    elif activation == "step":
        phi = lambda z: S.heaviside(z, surrogate)  # noqa: E731
    elif activation == "erf":
        phi = lambda z: _erf_with_surrogate(z, m, surrogate)  # noqa: E731
    else:
        raise ValueError("mlp_surrogate_apply supports 'sign', 'step' and 'erf'; for another "
                         "activation write its surrogate twin with jax.custom_jvp")
    pres, _ = _forward(params, x, phi, sigma_w, sigma_b)
    return pres[-1][..., 0]


@jax.custom_jvp
def _erf_with_surrogate(z, m, surrogate):
    return jax.scipy.special.erf(m * z)


@_erf_with_surrogate.defjvp
def _erf_with_surrogate_jvp(primals, tangents):
    z, m, surrogate = primals
    return _erf_with_surrogate(z, m, surrogate), surrogate.derivative(z) * tangents[0]


def _backward(params, pres, dphi, sigma_w):
    """Backward vectors delta_l (batch, n_l) for l = 1..L+1, delta_{L+1} = 1."""
    delta = jnp.ones_like(pres[-1])
    deltas = [delta]
    for l in range(len(params.weights) - 1, 0, -1):
        w = params.weights[l]
        delta = dphi(pres[l - 1]) * (sigma_w / jnp.sqrt(w.shape[0]) * delta @ w.T)
        deltas.append(delta)
    return deltas[::-1]


def mlp_empirical(params: MLPParams, x1, x2=None, *, activation, surrogate,
                  sigma_w=1.0, sigma_b=0.0, m=1.0, jump_width=None,
                  get=("nngp", "ntk", "sgntk", "sg_gram")) -> MLPKernel:
    """Empirical kernels of one finite MLP by the structured fast path (module docstring).

    Args:
      params: :class:`MLPParams`.
      x1: ``(n1, d)``; x2: ``(n2, d)`` (default x1).
      activation, surrogate, sigma_w, sigma_b, m: as :func:`sgntk.kernels.mlp`.
      jump_width: smoothing of the Dirac derivative of jump activations (None: exact, 0).
      get: which kernels to compute (the others are None; unneeded backward passes are skipped).
    Returns:
      :class:`~sgntk.kernels.MLPKernel` with ``nngp = f(x1) f(x2)^T`` (one sample of the
      output covariance), ``ntk = J J^T``, ``sgntk = J(x1) J~(x2)^T``, ``sg_gram = J~ J~^T``.
    """
    x2 = x1 if x2 is None else x2
    surrogate = get_surrogate(surrogate)
    phi, dphi = activation_fns(activation, m=m, jump_width=jump_width)
    p1, a1 = _forward(params, x1, phi, sigma_w, sigma_b)
    p2, a2 = _forward(params, x2, phi, sigma_w, sigma_b)
    feats = [sigma_w**2 / u.shape[-1] * u @ v.T + sigma_b**2 for u, v in zip(a1, a2)]
    backward = functools.lru_cache(maxsize=None)(
        lambda side, true: _backward(params, p1 if side == 1 else p2,
                                     dphi if true else surrogate.derivative, sigma_w))

    def contract(true1, true2):
        return sum((u @ v.T) * f for u, v, f in zip(backward(1, true1), backward(2, true2), feats))

    return MLPKernel(nngp=p1[-1] @ p2[-1].T if "nngp" in get else None,
                     ntk=contract(True, True) if "ntk" in get else None,
                     sgntk=contract(True, False) if "sgntk" in get else None,
                     sg_gram=contract(False, False) if "sg_gram" in get else None)


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

