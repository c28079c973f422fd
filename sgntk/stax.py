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

How: each layer is the activation of :mod:`sgntk.layers` (``layers.Sign`` etc., the same
definition :mod:`sgntk.kernels` uses) wrapped in ``stax.Elementwise``: stax's NTK recursion
multiplies the incoming NTK by ``d_nngp_fn(cov12, var1, var2)`` and keeps ``var1`` (x1's
variance) and ``var2`` (x2's) in order, so passing the layer's mixed expectation
``maps.sgntk = E[phi'(u) psi'(v)]`` as ``d_nngp_fn`` turns the NTK into the SG-NTK (true
derivative at x1, surrogate at x2). Checked against :func:`sgntk.kernels.mlp` and
neural-tangents' own ``stax.Erf``/``stax.Sign`` in ``tests/test_stax.py``. Do not feed the result to
``neural_tangents.predict``: it assumes a symmetric PSD kernel (use :mod:`sgntk.predict`).

``apply_fn`` uses the custom-JVP spikes of :mod:`sgntk.surrogates`, so training it with
autodiff is surrogate-gradient learning, and neural-tangents' ``empirical_ntk_fn`` of it
gives the surrogate Gram ``J~ J~^T`` (for the empirical SG-NTK use
:func:`sgntk.empirical.empirical_kernel` with the true network and this twin).

neural-tangents is optional: these functions import it (through :mod:`sgntk.nt_compat`)
when called. Enable float64 (``jax.enable_x64``) around ``kernel_fn`` for kernel work.
"""
from __future__ import annotations

from . import layers as L
from ._util import renamed_keyword
from .nt_compat import import_neural_tangents

__all__ = ["Sign", "Step", "Erf", "from_layer"]


def from_layer(layer: L.ActivationLayer):
    """neural-tangents ``(init_fn, apply_fn, kernel_fn)`` of an :class:`sgntk.layers.ActivationLayer`.

    ``apply_fn`` is ``layer.apply`` (custom-JVP surrogate twin), ``nngp_fn`` the layer's
    ``maps.nngp`` and ``d_nngp_fn`` its ``maps.sgntk`` (arguments reordered to stax's
    ``(cov12, var1, var2)``).
    """
    nt = import_neural_tangents()
    if not isinstance(layer, L.ActivationLayer):
        raise ValueError(f"layer must be an sgntk.layers activation layer; got {layer!r}")

    def nngp_fn(cov12, var1, var2):
        return layer.maps.nngp(var1, var2, cov12)

    def d_nngp_fn(cov12, var1, var2):
        return layer.maps.sgntk(var1, var2, cov12)

    def forward(x):
        return layer.apply((), x)

    return nt.stax.Elementwise(forward, nngp_fn, d_nngp_fn)


def Sign(surrogate="erf"):
    """``sign`` activation with surrogate derivative psi' (default: erf', the paper's)."""
    return from_layer(L.Sign(surrogate))


def Step(surrogate="fast_sigmoid"):
    """Heaviside activation ``[x > 0]`` with surrogate derivative psi'."""
    return from_layer(L.Step(surrogate))


def Erf(sharpness=None, surrogate="erf", *, m=None):
    """``erf(sharpness x)`` activation (the paper's erf_m); autodiff and the kernel use psi'.

    With ``surrogate=sgntk.surrogates.get("erf", sharpness=m, dampening=m)`` (= erf_m') the
    kernel is the ordinary NTK of ``neural_tangents.stax.Erf(a=1, b=m, c=0)``. ``m=`` is the
    deprecated name of ``sharpness`` (default 1).
    """
    sharpness = renamed_keyword("sharpness", sharpness, "m", m, default=1.0)
    return from_layer(L.Erf(sharpness, surrogate))
