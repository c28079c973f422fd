"""The LIF surrogate Gram's pair expectation ``E[psi'(u - theta) psi'(v - theta)]`` for the
Gaussian-scale-mixture shapes and gaussian / erf (GitHub issue 9).

Split from :mod:`._fast` (which keeps the orthant probability and the conditional surrogate
moment); :func:`sgntk.lif_kernels.analytic.surrogate_pair_expectation` is the public entry.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .. import _quadrature
from .. import surrogates as _sg

__all__ = ["surrogate_pair_fast", "PAIR_SHAPES"]


# Profiles that are one Gaussian bump, g(u) = w0 exp(-u^2 / (2 s0)): the pair sum below with
# one node and no mass at s = inf.
_ONE_BUMP = {"gaussian": (1.0 / (2.0 * math.pi), 1.0), "erf": (0.5, 2.0 / math.sqrt(math.pi))}
#: shapes whose surrogate Gram entry :func:`surrogate_pair_fast` computes (mixtures of bumps)
PAIR_SHAPES = tuple(_quadrature.GSM_SHAPES) + tuple(_ONE_BUMP)


def surrogate_pair_fast(surrogate: _sg.Surrogate, a, b, r, theta, moment):
    """``E[psi'(u - theta) psi'(v - theta)]``, ``(u, v) ~ N(0, [[a, r], [r, b]])``, for the
    shapes in :data:`PAIR_SHAPES`, elementwise over broadcast ``a, b, r`` (``a > 0``).

    The profile on the ``u`` side is its Gaussian scale mixture ``g(z) = sum_j w_j
    exp(-z^2 / (2 s_j)) + w_inf`` (:func:`sgntk._quadrature.gsm_nodes`; one bump for gaussian
    and erf). In normalised units (``A = beta^2 a``, ``R = beta^2 r``, ``Th = beta theta``) each
    bump times the density of ``u`` is a Gaussian in ``u``::

        N(u; 0, A) exp(-(u - Th)^2 / (2 s)) = sqrt(s / (s + A)) exp(-Th^2 / (2 (s + A)))
                                              N(u; A Th / (s + A), A s / (s + A))

    and ``v | u ~ N(R u / A, B - R^2 / A)``, so the bump's term is that prefactor times the
    conditional moment ``E[psi'(w)]``, ``w ~ N((R / A) A Th / (s + A) - Th, (R / A)^2 A s /
    (s + A) + B - R^2 / A)`` (``/ beta``, ``/ beta^2`` back in the units of psi'), computed by
    ``moment(mean, var)`` (:func:`conditional_moment_fast` behind the zero-variance guard);
    the mass at ``s = inf`` contributes ``w_inf E[psi'(v - theta)]``. Cost per entry: one
    conditional moment per node (32-218 nodes, each moment a closed form or a 32-218 term
    sum), against ~5e6 profile evaluations of the nested quadrature
    (:func:`sgntk.lif_kernels.analytic.surrogate_pair_expectation`'s reference route).
    Checked against ``scipy.integrate.dblquad``
    (``tests/test_lif_kernels.py::test_surrogate_pair_expectation_vs_dblquad``).
    """
    shape = surrogate.shape
    if shape in _ONE_BUMP:
        s0, w0 = _ONE_BUMP[shape]
        s, w, w_inf = jnp.asarray([s0]), jnp.asarray([w0]), 0.0
    else:
        s, w, w_inf = _quadrature.gsm_nodes(shape, surrogate.tail)
    beta = jnp.asarray(surrogate.sharpness)
    big_a, big_r, th = beta**2 * a, beta**2 * r, beta * theta
    kap = big_r / big_a
    cond_var = jnp.maximum(beta**2 * b - big_r * kap, 0.0)

    def term(mean_n, var_n):          # the moment in the units of psi'
        return moment(mean_n / beta, var_n / beta**2)

    def body(acc, node):
        sj, wj = node
        inv = 1.0 / (sj + big_a)
        pref = jnp.sqrt(sj * inv) * jnp.exp(-0.5 * th * th * inv)
        return acc + wj * pref * term(kap * big_a * th * inv - th,
                                      kap * kap * big_a * sj * inv + cond_var), None

    acc0 = w_inf * term(-th + jnp.zeros_like(big_a), beta**2 * b + jnp.zeros_like(big_a))
    acc, _ = jax.lax.scan(body, acc0, (s, w))
    return jnp.asarray(surrogate.dampening) * acc
