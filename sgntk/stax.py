"""neural-tangents ``stax`` layers whose NTK is the surrogate-gradient NTK.

Each function returns the ``(init_fn, apply_fn, kernel_fn)`` triple of
``neural_tangents.stax.Elementwise`` and composes with every other stax layer
(``serial``, ``Dense``, ``Conv``, ``FanOut``/``FanInSum`` residual blocks, ...)::

    from sgntk.nt_compat import import_neural_tangents
    from sgntk import stax as sgstax
    nt = import_neural_tangents()
    init_fn, apply_fn, kernel_fn = nt.stax.serial(
        nt.stax.Dense(512, W_std=1.0, b_std=0.1), sgstax.Sign("erf"),
        nt.stax.Dense(512, W_std=1.0, b_std=0.1), sgstax.Sign("erf"),
        nt.stax.Dense(1, W_std=1.0, b_std=0.1))
    kernel_fn(x1, x2, "ntk")   # = I(x1, x2) = J(x1) J~(x2)^T, the SG-NTK

How: stax's NTK recursion multiplies the incoming NTK by ``d_nngp_fn(cov12, var1, var2)``
and keeps ``var1`` (x1's variance) and ``var2`` (x2's) in order, so passing the mixed
expectation ``E[phi'(u) psi'(v)]`` of :mod:`sgntk.expectations` as ``d_nngp_fn`` turns
the NTK into the SG-NTK (true derivative at x1, surrogate at x2). Do not feed the result to
``neural_tangents.predict``: it assumes a symmetric PSD kernel (use :mod:`sgntk.predict`).

``apply_fn`` uses the custom-JVP spikes of :mod:`sgntk.surrogates`, so training it with
autodiff is surrogate-gradient learning, and neural-tangents' ``empirical_ntk_fn`` of it
gives the surrogate Gram ``J~ J~^T`` (for the empirical SG-NTK use
:func:`sgntk.empirical.empirical_kernel` with the true network and this twin).

neural-tangents is optional: these functions import it (through :mod:`sgntk.nt_compat`)
when called. Enable float64 (``jax.enable_x64``) around ``kernel_fn`` for kernel work.
"""
from __future__ import annotations

from . import expectations as E
from . import surrogates as S
from .nt_compat import import_neural_tangents

__all__ = ["Sign", "Step", "Erf"]


def _layer(activation, surrogate, m, forward):
    nt = import_neural_tangents()
    surrogate = S.get(surrogate)

    def nngp_fn(cov12, var1, var2):
        return E.nngp_expectation(activation, var1, var2, cov12, m)

    def d_nngp_fn(cov12, var1, var2):
        return E.mixed_derivative_expectation(activation, var1, var2, cov12, surrogate, m)

    forward.__name__ = f"{activation}_{surrogate.shape}"
    return nt.stax.Elementwise(forward, nngp_fn, d_nngp_fn)


def Sign(surrogate="erf"):
    """``sign`` activation with surrogate derivative psi' (default: erf', the paper's)."""
    sur = S.get(surrogate)
    return _layer("sign", sur, 1.0, lambda x: S.sign(x, sur))


def Step(surrogate="fast_sigmoid"):
    """Heaviside activation ``[x > 0]`` with surrogate derivative psi'."""
    sur = S.get(surrogate)
    return _layer("step", sur, 1.0, lambda x: S.heaviside(x, sur))


def Erf(m=1.0, surrogate="erf"):
    """``erf(m x)`` activation; autodiff and the kernel use psi' instead of erf_m'.

    With ``surrogate=sgntk.surrogates.get("erf", sharpness=m, dampening=m)`` (= erf_m') the
    kernel is the ordinary NTK of ``neural_tangents.stax.Erf(a=1, b=m, c=0)``.
    """
    from .empirical import _erf_with_surrogate

    sur = S.get(surrogate)
    if not float(m) > 0:
        raise ValueError(f"m must be > 0; got {m!r}")
    return _layer("erf", sur, float(m), lambda x: _erf_with_surrogate(x, m, sur))

