"""Surrogate derivatives psi' for surrogate-gradient learning, in one parameterisation.

Every shape is written as ``psi'(x) = dampening * g(sharpness * x)`` with a normalised
profile ``g`` (``g(0) = 1``, ``int g = 1``), so that

* the peak is ``psi'(0) = dampening`` (gamma) and
* the area is ``int psi' = dampening / sharpness`` (gamma / beta),

after Herranz-Celotti & Rouat ("Stabilizing spiking neuron training", 2024); ``tail`` (q > 1)
sets the tail fatness of ``q_pseudo_spike``. ``x`` is the membrane potential minus the
threshold (or a pre-activation). The profiles (``u = sharpness * x``):

==================  ===========================================  ===================
name                g(u)                                          moments
==================  ===========================================  ===================
triangular          max(1 - |u|, 0)                               closed form
exponential         exp(-2 |u|)                                   closed form
fast_sigmoid        1 / (1 + 2 |u|)^2          (SuperSpike)       quadrature
rectangular         [|2 u| < 1]                                   closed form
sigmoid             4 s(4u) (1 - s(4u)),  s = logistic            quadrature
gaussian            exp(-pi u^2)                                  closed form
cauchy              1 / (1 + (pi u)^2)         (atan)             closed form (mean 0)
q_pseudo_spike      (1 + 2 |u| / (q - 1))^(-q)                    quadrature
erf                 (2 / sqrt(pi)) exp(-u^2)   (note: peak 2/sqrt(pi) gamma, area 2 gamma/beta)
straight_through    1                          (sharpness ignored)
==================  ===========================================  ===================

``erf`` is the exception to the peak/area rule: with the defaults it is the derivative of
``erf(x)``, the surrogate of the sign function used by Eilers, Memmesheimer & Goedeke
(NeurIPS 2024), whose jump is 2.

A :class:`Surrogate` is a pytree: ``shape`` is static, ``dampening``, ``sharpness`` and ``tail``
are array leaves, so a grid of surrogates is one ``jax.vmap``::

    grid = jax.vmap(lambda b: get("fast_sigmoid", sharpness=b))(jnp.logspace(-1, 2, 16))

The spike functions :func:`heaviside` and :func:`sign` are ``jax.custom_jvp`` functions whose
derivative is ``psi'``: autodiff of a network built from them *is* surrogate-gradient learning.
Convention: ``heaviside(x) = 1`` for ``x > 0`` and ``0`` for ``x <= 0`` (as snnTorch and
SpikingJelly); ``sign(0) = 0``. Both have derivative ``psi'(x)`` exactly -- for the sign
function (jump 2) choose a surrogate of area 2 (e.g. ``erf``) if you want the surrogate to
integrate to the jump.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import _quadrature

__all__ = [
    "SHAPES",
    "Surrogate",
    "get",
    "heaviside",
    "sign",
    "gaussian_moment",
]

_SQRT_PI = float(np.sqrt(np.pi))


# --------------------------------------------------------------------------------------
# Normalised profiles g(u) (and g(u)^2 where a closed form of its Gaussian moment exists).
# --------------------------------------------------------------------------------------
def _g_triangular(u, q):
    return jnp.maximum(1.0 - jnp.abs(u), 0.0)


def _g_exponential(u, q):
    return jnp.exp(-2.0 * jnp.abs(u))


def _g_fast_sigmoid(u, q):
    return 1.0 / (1.0 + 2.0 * jnp.abs(u)) ** 2


def _g_rectangular(u, q):
    return jnp.where(jnp.abs(2.0 * u) < 1.0, 1.0, 0.0).astype(jnp.result_type(u, float))


def _g_sigmoid(u, q):
    # 4 s(4u)(1 - s(4u)) = 1 / cosh^2(2u) = 4 e / (1 + e)^2 with e = exp(-4 |u|) in (0, 1]: no
    # overflow, and one exp instead of cosh's two (it is evaluated in the kernels' inner loops).
    e = jnp.exp(-4.0 * jnp.abs(u))
    return 4.0 * e / (1.0 + e) ** 2


def _g_gaussian(u, q):
    return jnp.exp(-jnp.pi * u**2)


def _g_cauchy(u, q):
    return 1.0 / (1.0 + (jnp.pi * u) ** 2)


def _g_q_pseudo_spike(u, q):
    # exp(-q log(1 + 2|u| / (q - 1))) with _quadrature.fast_log instead of XLA's float64 pow
    # (7 against 25 ns per element on the CPU backend); equal to pow to 5e-14 relative for
    # q <= 10 (the exponent's rounding, ~q log(.) * 2e-16), and its derivatives to 3e-13. The
    # surrogate Gram evaluates psi' at every bump's conditional mean (the zero-variance guard
    # of analytic._conditional_moment: 218 bumps per entry), where this is 1.36x overall. The
    # argument is capped at 1e300 (fast_log takes normal floats; the value there is 0, as pow's).
    return jnp.exp(-q * _quadrature.fast_log(jnp.minimum(1.0 + 2.0 * jnp.abs(u) / (q - 1.0),
                                                         1e300)))


def _g_erf(u, q):
    return (2.0 / _SQRT_PI) * jnp.exp(-(u**2))


def _g_straight_through(u, q):
    return jnp.ones_like(u)


_PROFILES: dict[str, Callable] = {
    "triangular": _g_triangular,
    "exponential": _g_exponential,
    "fast_sigmoid": _g_fast_sigmoid,
    "rectangular": _g_rectangular,
    "sigmoid": _g_sigmoid,
    "gaussian": _g_gaussian,
    "cauchy": _g_cauchy,
    "q_pseudo_spike": _g_q_pseudo_spike,
    "erf": _g_erf,
    "straight_through": _g_straight_through,
}
SHAPES: tuple[str, ...] = tuple(_PROFILES)
_ALIASES = {"superspike": "fast_sigmoid", "atan": "cauchy", "arctan": "cauchy",
            "triangle": "triangular", "rect": "rectangular", "boxcar": "rectangular",
            "ste": "straight_through", "q_pseudospike": "q_pseudo_spike"}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Surrogate:
    """A surrogate derivative ``psi'(x) = dampening * g_shape(sharpness * x)``.

    Attributes:
      shape: static profile name, one of :data:`SHAPES`.
      dampening: peak height gamma (array leaf, > 0).
      sharpness: beta, inverse width (array leaf, > 0); area is gamma / beta.
      tail: q > 1 for ``q_pseudo_spike`` (array leaf; unused by other shapes).
    """

    shape: str = dataclasses.field(metadata=dict(static=True))
    dampening: jax.Array | float = 1.0
    sharpness: jax.Array | float = 1.0
    tail: jax.Array | float = 2.0

    def derivative(self, x):
        """psi'(x), elementwise; ``x`` of any shape."""
        x = jnp.asarray(x)
        return self.dampening * _PROFILES[self.shape](self.sharpness * x, self.tail)

    __call__ = derivative

    def profile(self, u):
        """The normalised profile g(u) (peak 1 except for ``erf``)."""
        return _PROFILES[self.shape](u, self.tail)


def _check_positive(name, value, accepted):
    # Only concrete values can be checked; traced values (under jit/vmap) pass through.
    if isinstance(value, jax.core.Tracer):
        return
    arr = np.asarray(value)
    if not np.all(np.isfinite(arr)) or np.any(arr <= accepted):
        raise ValueError(f"{name} must be finite and > {accepted:g}; got {value!r}")


def canonical_shape(name: str) -> str:
    """Resolve a shape name (case-insensitive, common aliases) or raise ValueError listing SHAPES."""
    if not isinstance(name, str):
        raise ValueError(f"surrogate must be a shape name (str) or Surrogate; got {name!r}")
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _PROFILES:
        raise ValueError(f"unknown surrogate {name!r}; valid names: {', '.join(SHAPES)} "
                         f"(aliases: {', '.join(sorted(_ALIASES))})")
    return key


def get(name: str | Surrogate, *, sharpness=1.0, dampening=1.0, tail=None) -> Surrogate:
    """Build a :class:`Surrogate` by name.

    Args:
      name: one of :data:`SHAPES` (or an alias such as ``"superspike"``, ``"atan"``); a
        :class:`Surrogate` is returned unchanged.
      sharpness: beta > 0 (array-like; may be a tracer under ``vmap``).
      dampening: gamma > 0.
      tail: q > 1, only for ``q_pseudo_spike`` (default 2, where it equals ``fast_sigmoid``).

    Raises:
      ValueError: unknown name (valid names listed), sharpness/dampening <= 0, tail <= 1.

    >>> get("fast_sigmoid", sharpness=10.0).derivative(0.0)
    Array(1., dtype=float32, weak_type=True)
    """
    if isinstance(name, Surrogate):
        return name
    shape = canonical_shape(name)
    _check_positive("sharpness", sharpness, 0.0)
    _check_positive("dampening", dampening, 0.0)
    if tail is None:
        tail = 2.0
    elif shape != "q_pseudo_spike":
        raise ValueError(f"tail is only used by 'q_pseudo_spike', not by {shape!r}")
    _check_positive("tail", tail, 1.0)
    return Surrogate(shape, dampening, sharpness, tail)


# --------------------------------------------------------------------------------------
# Spike functions with surrogate derivative.
# --------------------------------------------------------------------------------------
@jax.custom_jvp
def heaviside(x, surrogate: Surrogate):
    """Heaviside step ``[x > 0]`` whose derivative is ``surrogate.derivative(x)``."""
    return jnp.where(x > 0, 1.0, 0.0).astype(jnp.result_type(x, float))


@heaviside.defjvp
def _heaviside_jvp(primals, tangents):
    x, surrogate = primals
    dx, _ = tangents
    return heaviside(x, surrogate), surrogate.derivative(x) * dx


@jax.custom_jvp
def sign(x, surrogate: Surrogate):
    """Sign function (``sign(0) = 0``) whose derivative is ``surrogate.derivative(x)``."""
    return jnp.sign(x).astype(jnp.result_type(x, float))


@sign.defjvp
def _sign_jvp(primals, tangents):
    x, surrogate = primals
    dx, _ = tangents
    return sign(x, surrogate), surrogate.derivative(x) * dx


# --------------------------------------------------------------------------------------
# Gaussian moments E_{w ~ N(mean, var)}[psi'(w)^power].
# --------------------------------------------------------------------------------------
def _gauss_bump_moment(amplitude, s2, m, v):
    """E_{u~N(m, v)}[A exp(-u^2 / (2 s2))] = A sqrt(s2 / (s2 + v)) exp(-m^2 / (2 (s2 + v)))."""
    return amplitude * jnp.sqrt(s2 / (s2 + v)) * jnp.exp(-(m**2) / (2.0 * (s2 + v)))


def _closed_form(shape, power, m, v, q):
    """Closed-form E_{u~N(m,v)}[g(u)^power] in normalised units, or None if there is none."""
    sigma = _quadrature.safe_sqrt(v)
    if shape == "straight_through":
        return jnp.ones_like(m + v)
    if shape == "gaussian":
        return _gauss_bump_moment(1.0, 1.0 / (2.0 * jnp.pi * power), m, v)
    if shape == "erf":
        return _gauss_bump_moment((2.0 / _SQRT_PI) ** power, 1.0 / (2.0 * power), m, v)
    if shape == "rectangular":
        return _quadrature.poly_gauss_integral((1.0,), -0.5, 0.5, m, sigma)
    if shape == "triangular":
        if power == 1:
            left, right = (1.0, 1.0), (1.0, -1.0)
        else:
            left, right = (1.0, 2.0, 1.0), (1.0, -2.0, 1.0)
        return (_quadrature.poly_gauss_integral(left, -1.0, 0.0, m, sigma)
                + _quadrature.poly_gauss_integral(right, 0.0, 1.0, m, sigma))
    if shape == "exponential":
        return _quadrature.exp_abs_gauss(2.0 * power, m, sigma)
    if shape == "cauchy":
        return _quadrature.cauchy_gauss_centered(power, m, sigma)
    return None


def gaussian_moment(surrogate: Surrogate, mean=0.0, var=1.0, *, power: int = 1):
    """``E_{w ~ N(mean, var)}[psi'(w)^power]`` for ``power`` in {1, 2}.

    Closed forms (normal CDF / erfcx) for triangular, rectangular, exponential, gaussian,
    erf, straight-through and cauchy (mean 0); a fixed composite Gauss-Legendre rule in the
    log-distance to the two feature points ``0`` and ``mean`` (see
    :mod:`sgntk._quadrature`) otherwise, tabulated in log-variance when ``mean`` is the
    constant 0 (the case the kernels need: one table lookup per input pair). Accuracy: 1e-10 relative for closed forms,
    1e-8 for quadrature, for sharpness up to 1e4 (``tests/test_surrogates.py``).

    Args:
      surrogate: a :class:`Surrogate`.
      mean, var: broadcastable arrays, ``var >= 0`` (``var = 0`` gives ``psi'(mean)^power``).
      power: 1 or 2 (static).
    Returns:
      array of the broadcast shape of ``mean``, ``var`` and the surrogate's parameters.
    """
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2; got {power!r}")
    s = surrogate
    beta = jnp.asarray(s.sharpness)
    if s.shape == "straight_through":
        beta = jnp.ones_like(beta)
    m = beta * jnp.asarray(mean)
    v = beta**2 * jnp.maximum(jnp.asarray(var), 0.0)
    m, v = jnp.broadcast_arrays(m, v)
    if _is_zero(mean):  # the kernels' case; derivative finite (0) at var = 0
        centred = _quadrature.zero_variance_safe(
            lambda v_, q: _centred_moment(s.shape, power, v_, q))
        out = centred(v, jnp.asarray(s.tail, dtype=v.dtype))
    else:
        out = _closed_form(s.shape, power, m, v, s.tail) if s.shape != "cauchy" else None
        if out is None:
            out = _quadrature.gauss_expectation(_powered_profile(s.shape, s.tail, power), m, v)
    return jnp.asarray(s.dampening) ** power * out


def _powered_profile(shape, tail, power):
    prof = _PROFILES[shape]
    return lambda u: prof(u, tail) ** power


def _centred_moment(shape, power, v, tail):
    """E_{u~N(0, v)}[g(u)^power] in normalised units: closed form or table lookup (~1e-10)."""
    if shape == "exponential":   # E[exp(-k|u|)] = erfcx(k sigma / sqrt 2) for a centred Gaussian
        return _quadrature.exp_abs_gauss_centred(2.0 * power, _quadrature.safe_sqrt(v))
    if shape == "rectangular" or (shape == "triangular" and power == 1):
        # rectangular: P(|u| < 1/2) = erf(x / 2), triangular: E[(1 - |u|)_+] = erf(x) -
        # (2 / (x sqrt pi)) (1 - e^{-x^2}), x = 1 / sqrt(2 v) (sigma T1(1/sigma) of
        # sgntk._quadrature's piecewise comment; both terms O(x) for small x: no cancellation
        # beyond a factor 2). One erfc (+ one expm1) instead of poly_gauss_integral's both
        # branches (4 erfc + 24-node rule). v clamped at 1e-200 (finite derivative; the value
        # is g(0) to all digits there).
        x = 1.0 / jnp.sqrt(2.0 * jnp.maximum(v, 1e-200))
        if shape == "rectangular":
            return _quadrature.erf_fast(0.5 * x)
        # x -> 0 (v -> inf, or v overflowing to inf): the two terms cancel to (x - x^3/6)/sqrt(pi)
        # + O(x^5); the series below x = 1e-4 (and no 0/0 at x = 0).
        small = x < 1e-4
        xs = jnp.where(small, 1.0, x)
        return jnp.where(small, (x - x**3 / 6.0) / _SQRT_PI,
                         _quadrature.erf_fast(xs) + jnp.expm1(-xs * xs) / (xs * _SQRT_PI))
    out = _closed_form(shape, power, jnp.zeros_like(v), v, tail)
    if out is None:
        out = _quadrature.centered_expectation(_powered_profile(shape, tail, power), v)
    return out


def _is_zero(x) -> bool:
    if isinstance(x, jax.core.Tracer):
        return False
    return bool(np.all(np.asarray(x) == 0))
