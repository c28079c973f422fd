"""Shared pieces of :mod:`sgntk.lif_kernels`: result container, readout weights, the smoothed
true spike derivative, and validation (including the deprecated keywords ``kappa``/``m``).

Everything here is internal to the package; the public names are re-exported by
``sgntk/lif_kernels/__init__.py``.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import lif as _lif
from .. import surrogates as _sg
from .._util import check_positive

KERNELS = ("nngp", "sgntk", "sg_gram")
#: Default sharpness ``m`` of the smoothed true spike derivative for finite networks and MC.
DEFAULT_SPIKE_SHARPNESS = 10.0
DEFAULT_M = DEFAULT_SPIKE_SHARPNESS  # old name, kept for compatibility


class _Unset:
    def __repr__(self):
        return "<unset>"


#: Sentinel of a keyword that was not passed (``None`` is a meaningful value of some).
UNSET = _Unset()


class LIFKernel(NamedTuple):
    """Kernels between ``x1`` (n1 examples) and ``x2`` (n2); each ``(n1, n2)`` or None.

    nngp: output covariance (empirical: the sample ``y(x1) y(x2)^T``).
    sgntk: ``J(x1) J~(x2)^T`` (true/smoothed derivative at x1, surrogate at x2).
    sg_gram: ``J~(x1) J~(x2)^T``.
    """

    nngp: jax.Array | None = None
    sgntk: jax.Array | None = None
    sg_gram: jax.Array | None = None


def renamed(new: str, new_value, old: str, old_value, default):
    """Resolve a keyword renamed from ``old`` to ``new`` (issue 14, item 6).

    Passing ``old`` still works but warns (``DeprecationWarning``); passing both raises.
    Returns the value to use (``default`` if neither was given).
    """
    if old_value is UNSET:
        return default if new_value is UNSET else new_value
    if new_value is not UNSET:
        raise ValueError(f"give {new}= or its deprecated name {old}=, not both")
    warnings.warn(f"the keyword {old}= is deprecated; use {new}= (same meaning)",
                  DeprecationWarning, stacklevel=3)
    return old_value


def true_spike_derivative(spike_sharpness) -> _sg.Surrogate:
    """``Theta_m'(z) = m/sqrt(pi) exp(-m^2 z^2)`` (unit area, std ``1/(sqrt(2) m)``), ``m =
    spike_sharpness``, as a Surrogate.

    It is ``surrogates.get("gaussian", sharpness=m/sqrt(pi), dampening=m/sqrt(pi))``, the
    derivative of ``(1 + erf(m z))/2`` -> Heaviside as ``m -> inf`` (half of ``erf_m'``,
    the Heaviside having jump 1 where sign has 2).
    """
    c = jnp.asarray(spike_sharpness) / math.sqrt(math.pi)
    return _sg.Surrogate("gaussian", c, c)


def readout_weights(T: int, mode="sum", *, config: _lif.LIFConfig | None = None):
    """Temporal readout weights ``kappa`` ``(T,)`` of a linear readout ``y = sum_t kappa_t (...)[t]``.

    Args:
      T: number of steps. mode: ``"sum"`` (ones), ``"last"`` (one-hot at ``T - 1``) or an
        array ``(T,)``. ``"max"`` raises: max-over-time is not kernel-compatible.
      config: if given, fold in :func:`sgntk.lif.readout_layer`'s leaky readout, so that
        ``reduce_readout(readout_layer(W_o, S), mode) == kappa @ S @ W_o``:
        ``kappa_s = sum_n c_n k_ro(n + 1 - s)`` with ``k_ro`` the impulse response
        (:func:`sgntk.lif.impulse_response`) with ``b_ro`` as membrane decay (trace[n] is
        ``U_o[n+1]``). Test: ``tests/test_lif_kernels.py::test_readout_weights``.
    """
    if isinstance(mode, str):
        if mode == "max":
            raise ValueError(
                "readout 'max' (max over time) is not kernel-compatible: the winning time step "
                "depends on the random initialisation, so the infinite-width kernel is not "
                "deterministic. Use 'sum', 'last' or a fixed weight vector (you may still train "
                "with 'max')")
        if mode == "sum":
            c = np.ones(T)
        elif mode == "last":
            c = np.zeros(T)
            c[-1] = 1.0
        else:
            raise ValueError(f"readout_weights must be 'sum', 'last' or an array of shape (T,) "
                             f"= ({T},); got {mode!r}")
    else:
        c = np.asarray(mode, dtype=np.float64)
        if c.shape != (T,) or not np.all(np.isfinite(c)):
            raise ValueError(f"readout_weights (kappa) must have shape (T,) = ({T},) with finite "
                             f"entries; got shape {c.shape}")
    if config is None:
        return c
    b_ro = np.asarray(_lif.decay(config.tau_readout, config.dt), dtype=np.float64)
    k = np.asarray(_lif.impulse_response(T + 1, config, mem_decay=b_ro), dtype=np.float64)
    n = np.arange(T)
    lag = n[:, None] + 1 - n[None, :]          # [n, s] -> n + 1 - s
    kmat = np.where(lag >= 0, k[np.clip(lag, 0, T)], 0.0)
    return c @ kmat


# --------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------
def spike_batch(name, x, n_in=None, T=None):
    """Spike trains as float64 ``(n, T, n_in)`` (one train ``(T, n_in)`` gets a leading axis)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"{name} must be spike trains of shape (n, T, n_in) (or one train "
                         f"(T, n_in)) with all sizes >= 1; got shape {np.shape(x)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf entries")
    if T is not None and arr.shape[1] != T:
        raise ValueError(f"{name} has T = {arr.shape[1]} time steps but x1 has {T}")
    if n_in is not None and arr.shape[2] != n_in:
        raise ValueError(f"{name} has n_in = {arr.shape[2]} input channels but "
                         f"{n_in} were expected")
    return arr


def check_spike_sharpness(value, allow_none):
    """``spike_sharpness`` (``m``): None (exact delta, analytic kernel only) or finite > 0."""
    if value is None:
        if allow_none:
            return None
        raise ValueError("spike_sharpness (m, sharpness of the smoothed true spike derivative) "
                         "must be a finite number > 0 for finite networks and Monte Carlo")
    return check_positive("spike_sharpness (m)", value)


def check_get(get):
    get = tuple(get)
    bad = [k for k in get if k not in KERNELS]
    if bad or not get:
        raise ValueError(f"which (old name get) must be a non-empty subset of {KERNELS}; got {get!r}")
    return get


def check_config(config):
    """Validated :class:`sgntk.lif.LIFConfig` with float64 leaves."""
    if not isinstance(config, _lif.LIFConfig):
        raise ValueError(f"config must be a sgntk.lif.LIFConfig; got {type(config).__name__}")
    config.validate()
    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), config)


def prepare(x1, x2, config, weights, get, sigma_w, sigma_b, sigma_o):
    """Validate the common arguments; ``weights`` None means ``config.readout``."""
    x1 = spike_batch("x1", x1)
    x2 = x1 if x2 is None else spike_batch("x2", x2, x1.shape[2], x1.shape[1])
    cfg = check_config(config)
    kap = readout_weights(x1.shape[1], config.readout if weights is None else weights)
    return (x1, x2, cfg, kap, check_get(get), check_positive("sigma_w", sigma_w),
            check_positive("sigma_b", sigma_b, inclusive=True),
            check_positive("sigma_o", sigma_o))
