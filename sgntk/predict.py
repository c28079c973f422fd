r"""Predictions of networks trained by gradient flow under a (possibly asymmetric) kernel.

With surrogate-gradient (SG) learning the output of a wide network evolves as

.. math::  \partial_t f_t(x) = -\eta\, I(x, X)\, \nabla_{f(X)} L,
           \qquad I(x, x') = J(x)\, \tilde J(x')^\top,

where :math:`I` is the SG-NTK of Eilers, Memmesheimer & Goedeke, "A generalized neural
tangent kernel for surrogate gradient learning" (NeurIPS 2024).  :math:`I` is **not
symmetric** (the forward Jacobian :math:`J` and the surrogate Jacobian :math:`\tilde J`
differ) and need not be positive definite.  For the ordinary NTK (:math:`\tilde J = J`)
everything below reduces to Lee et al., "Wide neural networks of any depth evolve as
linear models under gradient descent" (NeurIPS 2019): the Gaussian-process mean
:math:`\mu(x)` and covariance :math:`\Sigma(x, x')` of the linearised network trained by
gradient flow (Sec. 2 of that paper).

Loss and time convention
------------------------
MSE loss :math:`L = \frac{1}{2c} \sum_{i,j} (f_j(x_i) - Y_{ij})^2` with the divisor ``c``
chosen by ``loss_normalization``: ``"sum"`` (``c = 1``), ``"mean"`` (``c = y_train.size``,
the mean over all entries -- the convention of ``neural_tangents.predict``) or an explicit
positive number (e.g. ``n_train`` for a per-sample mean with vector outputs).  Gradient
flow with learning rate :math:`\eta` for a time ``t`` gives the linear ODE

.. math::  \partial_t f_t(X) = -\tfrac{\eta}{c} I(X,X)\,(f_t(X) - Y), \qquad
           \partial_t f_t(x) = -\tfrac{\eta}{c} I(x,X)\,(f_t(X) - Y),

(each output column independently, same kernel), solved by

.. math::  f_t(x) = f_0(x) - I(x,X)\, R_t\, (f_0(X) - Y), \qquad
           R_t = \tfrac{\eta}{c}\int_0^t e^{-\frac{\eta}{c} I(X,X) s}\, ds
               = I(X,X)^{-1} E_t, \quad E_t = 1 - e^{-\frac{\eta}{c} I(X,X) t}.

For an initial function :math:`f_0 \sim \mathcal{GP}(0, S)` (``S`` = NNGP, symmetric)
:math:`f_t` is Gaussian with, writing :math:`M_t(x) = I(x,X) R_t`,

.. math::  \mu_t(x) = M_t(x)\, Y, \qquad
           C_t(x,x') = S(x,x') - S(x,X) M_t(x')^\top - M_t(x) S(X,x')
                       + M_t(x)\, S(X,X)\, M_t(x')^\top .

Numerics
--------
* Finite ``t``: :math:`R_t` is the upper-right block of the matrix exponential
  of :math:`\begin{pmatrix} -\frac{\eta t}{c} I & \frac{\eta t}{c} 1 \\ 0 & 0\end{pmatrix}`
  (general, non-symmetric scaling and squaring: the [13/13] Pade approximant of
  ``jax.scipy.linalg.expm`` on the scaled matrix, then blockwise squarings, which keep the
  error at roundoff level even for huge ``t``; squaring the whole augmented matrix, as
  ``expm`` would, loses ~eps * t * ||I|| in :math:`R_t`).  No inverse
  of :math:`I(X,X)` is needed: finite-time predictions are well defined and accurate
  even for singular, ill-conditioned or non-convergent kernels.
* ``t = inf``: :math:`R_\infty = I(X,X)^{-1}` (requires every eigenvalue of
  :math:`I(X,X)` to have positive real part), applied with an LU solve
  (``jnp.linalg.solve``).  No ``eigh``, no Cholesky, no symmetry assumption on ``I``.

Do **not** use ``neural_tangents.predict`` for the SG-NTK: it assumes a symmetric PSD
kernel (``eigh`` of ``k_train_train`` for finite time, with negative eigenvalues clipped to
zero, and a Cholesky solve for ``t = None``), so for an asymmetric ``I`` it silently
returns the prediction of the symmetrised (lower/upper-triangle) kernel.

Diagnostics (``check=True``, the default) raise :class:`ValueError` naming the argument
and the offending numbers for: shape mismatches, non-finite inputs, negative times or
learning rates, an eigenvalue of :math:`I(X,X)` with non-positive real part at
``t = inf`` (for finite ``t`` it is only a :class:`RuntimeWarning`: the finite-time
prediction is still the exact solution, it just grows exponentially with ``t``), a
condition number of :math:`I(X,X)` above ``max_condition`` at ``t = inf``, and
non-finite results (overflow of a diverging flow).  :func:`kernel_diagnostics` reports
the same quantities without raising (jit/vmap friendly).
"""
from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from ._util import is_traced
from ._x64 import float64

__all__ = [
    "Prediction",
    "KernelDiagnostics",
    "gp_predict",
    "nngp_posterior",
    "kernel_diagnostics",
]

#: Largest number of blockwise squarings: covers every finite float64 ``eta * t * ||I|| / c``
#: (< 2**1024).  Only the squarings needed are executed.
_MAX_SQUARINGS = 1100
#: Norm bound of the [13/13] Pade approximant in scaling and squaring (Higham 2005, float64).
_PADE13_THETA = 5.371920351148152
#: Relative asymmetry above which an NNGP matrix is rejected as not symmetric.
_NNGP_SYMMETRY_TOL = 1e-6


class Prediction(NamedTuple):
    """Gaussian prediction on the test points.

    Attributes:
      mean: ``(n_test,)`` or ``(n_test, n_out)`` (shape of ``y_train`` with ``n_test`` rows),
        with a leading ``(n_times,)`` axis if ``t`` was 1-D.
      cov: ``(n_test, n_test)`` covariance (shared by all output columns), with a leading
        ``(n_times,)`` axis if ``t`` was 1-D; ``None`` if it was not requested.
    """

    mean: jax.Array
    cov: Optional[jax.Array]


class KernelDiagnostics(NamedTuple):
    """Spectral diagnostics of a train-train kernel (0-d arrays, or batched).

    Attributes:
      min_real_part: smallest real part of the eigenvalues.  Gradient flow on the training
        set converges (``t = inf`` defined) iff it is ``> 0``.
      critical_eigenvalue: the (complex) eigenvalue attaining ``min_real_part``.
      condition_number: 2-norm condition number ``s_max / s_min`` (``inf`` if numerically
        singular: ``s_min <= n eps s_max``).
      asymmetry: ``||I - I^T||_F / ||I||_F`` (0 for a symmetric kernel, at most 2).
      norm: spectral norm ``s_max``.
    """

    min_real_part: jax.Array
    critical_eigenvalue: jax.Array
    condition_number: jax.Array
    asymmetry: jax.Array
    norm: jax.Array


# --------------------------------------------------------------------------- helpers


def _as_f64(x, name: str):
    try:
        return jnp.asarray(x, dtype=jnp.float64)
    except (TypeError, ValueError) as e:  # complex, object arrays, ...
        raise ValueError(f"`{name}` could not be converted to a float64 array: {e}") from None


def _check_shape(x, name: str, expected: tuple, meaning: str):
    if x.shape != expected:
        raise ValueError(
            f"`{name}` has shape {x.shape}, expected {expected} ({meaning})."
        )


def _check_finite(x, name: str):
    bad = ~jnp.isfinite(x)
    n_bad = int(jnp.sum(bad))
    if n_bad:
        idx = tuple(int(i) for i in np.argwhere(np.asarray(bad))[0])
        raise ValueError(
            f"`{name}` contains {n_bad} non-finite value(s) (first at index {idx}: "
            f"{float(x[idx])})."
        )


def _check_symmetric(x, name: str):
    asym = float(jnp.linalg.norm(x - x.T) / jnp.maximum(jnp.linalg.norm(x), 1e-300))
    if asym > _NNGP_SYMMETRY_TOL:
        raise ValueError(
            f"`{name}` must be a symmetric covariance (NNGP) matrix, but "
            f"||K - K^T||_F / ||K||_F = {asym:.3g} > {_NNGP_SYMMETRY_TOL:g}. "
            f"(Did you pass the asymmetric SG-NTK as an NNGP argument?)"
        )


def _normalization(loss_normalization, y_size: int) -> float:
    if isinstance(loss_normalization, str):
        if loss_normalization == "sum":
            return 1.0
        if loss_normalization == "mean":
            return float(y_size)
        raise ValueError(
            f"`loss_normalization` must be 'sum', 'mean' or a positive number, "
            f"got {loss_normalization!r}."
        )
    c = float(loss_normalization)
    if not (np.isfinite(c) and c > 0):
        raise ValueError(f"`loss_normalization` must be a positive finite number, got {c}.")
    return c


def _roundoff_tol(norm, n: int) -> float:
    return float(n * np.finfo(np.float64).eps * norm)


def _diagnostics(k):
    eig = jnp.linalg.eigvals(k)
    i = jnp.argmin(eig.real, axis=-1)
    crit = jnp.take_along_axis(eig, i[..., None], axis=-1)[..., 0]
    s = jnp.linalg.svd(k, compute_uv=False)
    s_max, s_min = s[..., 0], s[..., -1]
    # Numerically singular (numpy.linalg.matrix_rank's tolerance: s_min <= n eps s_max) -> inf;
    # below it the computed s_min is rounding noise (1e-48 or 1e-17 for the same matrix,
    # depending on the LAPACK path).
    tol = s_max * k.shape[-1] * jnp.finfo(s.dtype).eps
    cond = jnp.where(s_min > tol, s_max / jnp.where(s_min > tol, s_min, 1.0), jnp.inf)
    fro = jnp.linalg.norm(k, axis=(-2, -1))
    asym = jnp.linalg.norm(k - jnp.swapaxes(k, -1, -2), axis=(-2, -1)) / jnp.where(
        fro > 0, fro, 1.0
    )
    return KernelDiagnostics(crit.real, crit, cond, asym, s_max)


_FLOW_HINT = (
    "so gradient flow on the training set does not converge and the t = inf prediction is "
    "undefined. This only matters for t = inf (or very large t): finite-t predictions remain "
    "defined (pass a finite `t`), or regularise with `diag_reg`."
)
_FLOW_COND_HINT = (
    "the t = inf prediction solves with it and would be unreliable. Use a finite `t`, add "
    "`diag_reg`, or raise `max_condition`."
)


def _check_inf_solvable(diag: KernelDiagnostics, n: int, max_condition: float, name: str,
                        what: str, hint: str = _FLOW_HINT, cond_hint: str = _FLOW_COND_HINT):
    lam = complex(diag.critical_eigenvalue)
    tol = _roundoff_tol(float(diag.norm), n)
    if lam.real <= tol:
        raise ValueError(
            f"{what}: `{name}` has an eigenvalue {lam.real:.6g}{lam.imag:+.6g}j whose real "
            f"part is not positive (<= roundoff tolerance {tol:.3g}), {hint}"
        )
    cond = float(diag.condition_number)
    if not cond <= max_condition:
        raise ValueError(
            f"{what}: `{name}` is ill-conditioned: condition number {cond:.3g} > "
            f"max_condition = {max_condition:.3g}; {cond_hint}"
        )


_PADE13_B = (64764752532480000., 32382376266240000., 7771770303897600., 1187353796428800.,
             129060195264000., 10559470521600., 670442572800., 33522128640., 1323241920.,
             40840800., 960960., 16380., 182., 1.)


def _pade13(a):
    """[13/13] Pade approximant of ``expm(a)`` (batched); exact to roundoff for
    ``||a||_1 <= theta_13`` (Higham 2005, the step ``jax.scipy.linalg.expm`` also uses).
    Written out rather than calling ``expm`` (whose degree selection by ``cond`` is ~10x
    slower to compile) since the argument is always pre-scaled."""
    b = _PADE13_B
    hp = jax.lax.Precision.HIGHEST
    mm = partial(jnp.matmul, precision=hp)
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    a2 = mm(a, a)
    a4 = mm(a2, a2)
    a6 = mm(a4, a2)
    u = mm(a, mm(a6, b[13] * a6 + b[11] * a4 + b[9] * a2)
           + b[7] * a6 + b[5] * a4 + b[3] * a2 + b[1] * eye)
    v = mm(a6, b[12] * a6 + b[10] * a4 + b[8] * a2) + b[6] * a6 + b[4] * a4 + b[2] * a2 \
        + b[0] * eye
    return jnp.linalg.solve(v - u, v + u)


def _flow_resolvent(k, h, n_iter: int):
    r"""``R = \int_0^h e^{-k s} ds`` (``= k^{-1}(1 - e^{-k h})``) for each ``h`` in ``(T,)``.

    Scaling and squaring on the augmented matrix ``[[-k h, h 1], [0, 0]]`` whose exponential
    is ``[[e^{-k h}, R], [0, 1]]``: the [13/13] Pade approximant (as in
    ``jax.scipy.linalg.expm``) is applied to the matrix scaled by ``2^-s`` (1-norm <=
    theta_13) and the squarings are done on the
    blocks, ``R <- R + e R``, ``e <- e e``, keeping the lower-right block exactly 1.  (Squaring
    the full augmented matrix lets the roundoff of that block grow like ``2^s``, i.e. an
    error ~ eps * h * ||k|| in ``R``.)  No inverse of ``k`` is formed.
    """
    n = k.shape[-1]
    norm1 = jnp.maximum(jnp.max(jnp.sum(jnp.abs(k), axis=0)), 1.0) * h  # ||aug||_1, (T,)
    ratio = jnp.where(norm1 > 0, norm1 / _PADE13_THETA, 1.0)
    s = jnp.clip(jnp.ceil(jnp.log2(ratio)), 0, _MAX_SQUARINGS).astype(jnp.int32)
    hs = (h / 2.0 ** s.astype(h.dtype))[:, None, None]
    eye = jnp.eye(n, dtype=k.dtype)
    top = jnp.concatenate([-hs * k, hs * eye], axis=-1)
    aug = jnp.concatenate([top, jnp.zeros_like(top)], axis=-2)
    ex = _pade13(aug)
    e, r = ex[:, :n, :n], ex[:, :n, n:]
    hp = jax.lax.Precision.HIGHEST

    def square(i, er):
        e, r = er
        do = (i < s)[:, None, None]
        r2 = r + jnp.matmul(e, r, precision=hp)
        e2 = jnp.matmul(e, e, precision=hp)
        return jnp.where(do, e2, e), jnp.where(do, r2, r)

    s_max = jnp.max(s)

    def step(er, i):  # fixed-length scan (reverse-differentiable); idle steps skipped by cond
        return jax.lax.cond(i < s_max, lambda x: square(i, x), lambda x: x, er), None

    (e, r), _ = jax.lax.scan(step, (e, r), jnp.arange(n_iter, dtype=s.dtype))
    return r


def _n_squarings_bound(k, h_max) -> int:
    """Static scan length: enough squarings for the largest ``h``.  Bucketed to {0, 64, max}
    (the scan body compiles once whatever its length; idle steps cost a ``cond`` each)."""
    if is_traced(k, h_max):
        return _MAX_SQUARINGS
    norm1 = max(float(jnp.max(jnp.sum(jnp.abs(k), axis=0))), 1.0) * float(h_max)
    if not norm1 > _PADE13_THETA:
        return 0
    s = int(np.ceil(np.log2(norm1 / _PADE13_THETA)))
    return 64 if s <= 64 else _MAX_SQUARINGS


@partial(jax.jit, static_argnames=("need_fin", "need_inf", "n_iter"))
def _predict_core(k_tx, k_reg, y, ts, rate, s_tt, s_tx, s_xx, *, need_fin, need_inf, n_iter):
    """Mean ``(T, m[, k])`` and cov ``(T, m, m)`` (or None) for times ``ts`` ``(T,)``."""
    n, m = k_reg.shape[0], k_tx.shape[0]
    is_inf = jnp.isinf(ts)
    ms = []
    if need_fin:
        h = jnp.where(is_inf, 0.0, ts) * rate  # (T,)
        ms.append(jnp.einsum("in,tnj->tij", k_tx, _flow_resolvent(k_reg, h, n_iter)))
    if need_inf:
        m_inf = jnp.linalg.solve(k_reg.T, k_tx.T).T  # I(x,X) I(X,X)^{-1}   (LU)
        ms.append(jnp.broadcast_to(m_inf, (ts.shape[0], m, n)))
    m_t = jnp.where(is_inf[:, None, None], ms[1], ms[0]) if len(ms) == 2 else ms[0]
    mean = jnp.einsum("tin,n...->ti...", m_t, y)
    cov = None if s_tt is None else _cov(m_t, s_tt, s_tx, s_xx)
    return mean, cov





def _cov(m, nngp_test_test, nngp_test_train, nngp_train_train):
    """S_xx - S_xX M^T - M S_Xx + M S_XX M^T for M of shape (..., m, n)."""
    g = jnp.einsum("in,...jn->...ij", nngp_test_train, m)  # S_xX M^T
    q = jnp.einsum("...in,nk,...jk->...ij", m, nngp_train_train, m)
    c = nngp_test_test - g - jnp.swapaxes(g, -1, -2) + q
    return 0.5 * (c + jnp.swapaxes(c, -1, -2))


# --------------------------------------------------------------------------- public API


@float64
def kernel_diagnostics(k_train_train) -> KernelDiagnostics:
    """Non-raising spectral diagnostics of a train-train kernel ``I(X,X)``.

    Pure ``jnp`` (works under ``jit`` / ``vmap``, e.g. over a grid of surrogates); a
    leading batch shape is allowed.

    Args:
      k_train_train: ``(..., n, n)`` kernel, not necessarily symmetric.

    Returns:
      :class:`KernelDiagnostics` ``(min_real_part, critical_eigenvalue, condition_number,
      asymmetry, norm)``, each of the batch shape ``(...)``.
    """
    k = jnp.asarray(k_train_train, dtype=jnp.float64)
    if k.ndim < 2 or k.shape[-1] != k.shape[-2]:
        raise ValueError(
            f"`k_train_train` must be a (batch of) square matrices, got shape {k.shape}."
        )
    return _diagnostics(k)


def _check_regression_shapes(k_tx, k_xx, y, tx_name, xx_name):
    """Validate (n_test, n_train), (n_train, n_train) and y (n_train[, n_out]); return n, m."""
    if k_xx.ndim != 2 or k_xx.shape[0] != k_xx.shape[1]:
        raise ValueError(
            f"`{xx_name}` must be a square (n_train, n_train) matrix, got shape "
            f"{k_xx.shape}."
        )
    n = k_xx.shape[0]
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(
            f"`y_train` has shape {y.shape}, expected ({n},) or ({n}, n_out) "
            f"(n_train = {n} from `{xx_name}`)."
        )
    if k_tx.ndim != 2 or k_tx.shape[1] != n:
        raise ValueError(
            f"`{tx_name}` has shape {k_tx.shape}, expected (n_test, {n}) "
            f"(n_train = {n} from `{xx_name}`)."
        )
    return n, k_tx.shape[0]


@float64
def gp_predict(
    k_test_train,
    k_train_train,
    y_train,
    *,
    t=None,
    learning_rate: float = 1.0,
    loss_normalization: Union[str, float] = "sum",
    nngp_test_test=None,
    nngp_test_train=None,
    nngp_train_train=None,
    diag_reg: float = 0.0,
    max_condition: float = 1e12,
    check: bool = True,
) -> Prediction:
    r"""Mean and covariance of a network trained by MSE gradient flow under kernel ``I``.

    Solves the linearised dynamics :math:`\partial_t f_t(\cdot) = -\frac{\eta}{c}
    I(\cdot, X)(f_t(X) - Y)` in closed form (see the module docstring; Eilers et al. 2024
    for the SG-NTK; Lee et al. 2019, mean/covariance of the trained GP, for the symmetric
    NTK):

    .. math::  \mu_t(x) = I(x,X) I(X,X)^{-1} E_t Y, \qquad
               E_t = 1 - e^{-\frac{\eta}{c} I(X,X) t},

    .. math::  C_t(x,x') = S(x,x') - S(x,X) E_t^\top I(X,X)^{-\top} I(x',X)^\top
               - I(x,X) I(X,X)^{-1} E_t S(X,x')
               + I(x,X) I(X,X)^{-1} E_t S(X,X) E_t^\top I(X,X)^{-\top} I(x',X)^\top,

    for a zero-mean initial function :math:`f_0 \sim \mathcal{GP}(0, S)`.  (For a given,
    non-random :math:`f_0` add :math:`f_0(x) - I(x,X) I^{-1} E_t f_0(X)` to the mean.)
    With a symmetric ``k`` (ordinary NTK) this equals
    ``neural_tangents.predict.gradient_descent_mse_ensemble(..., get='ntk')``.

    ``I(X,X)^{-1} E_t`` is evaluated without inverting ``I(X,X)`` for finite ``t`` (matrix
    exponential of an augmented matrix), and with an LU solve for ``t = inf``; so the
    conditioning check applies only to ``t = inf``.

    Args:
      k_test_train: ``(n_test, n_train)`` kernel ``I(x, X)`` (rows: test points).  Pass
        ``k_train_train`` itself for predictions on the training set.
      k_train_train: ``(n_train, n_train)`` kernel ``I(X, X)``; need not be symmetric.
      y_train: ``(n_train,)`` or ``(n_train, n_out)`` targets (every output column is
        trained with the same kernel).
      t: training time: ``None`` or ``inf`` (default) for the end of training, a scalar,
        or a 1-D array of times (may contain ``inf``) -> leading time axis on the outputs.
        Times are in units where ``learning_rate * t`` is what matters.
      learning_rate: gradient-flow rate :math:`\eta > 0`.
      loss_normalization: divisor ``c`` of the loss
        :math:`\frac{1}{2c}\sum (f - Y)^2`: ``"sum"`` (``c = 1``, default), ``"mean"``
        (``c = y_train.size``, matching ``neural_tangents.predict``), or a positive
        number (e.g. ``n_train`` for a per-sample mean of vector outputs).  The dynamics
        are :math:`\partial_t f(X) = -\eta I(X,X) (f(X) - Y) / c`.
      nngp_test_test: ``(n_test, n_test)`` NNGP ``S(x, x)`` (symmetric).
      nngp_test_train: ``(n_test, n_train)`` NNGP ``S(x, X)``.
      nngp_train_train: ``(n_train, n_train)`` NNGP ``S(X, X)`` (symmetric).  The three
        NNGP blocks must be given together (-> covariance) or not at all (-> ``cov=None``).
      diag_reg: absolute diagonal regulariser: ``I(X,X) + diag_reg * 1`` is used in the
        dynamics (as ``neural_tangents`` with ``diag_reg_absolute_scale=True``).
      max_condition: largest condition number of ``I(X,X)`` accepted for ``t = inf``.
      check: run the value checks (finiteness, spectrum, conditioning, overflow).  They
        need concrete arrays; pass ``check=False`` inside ``jit`` (shape checks always run).

    Returns:
      :class:`Prediction` ``(mean, cov)``: ``mean`` of shape ``(n_test,)`` /
      ``(n_test, n_out)`` and ``cov`` of shape ``(n_test, n_test)`` or ``None``, each with a
      leading ``(n_times,)`` axis when ``t`` is 1-D.

    Raises:
      ValueError: bad shapes (naming the argument and the expected shape), non-finite
        inputs, ``t < 0``, ``learning_rate <= 0``; for ``t = inf``: an eigenvalue of
        ``I(X,X)`` with real part ``<= 0`` (non-convergent training) or a condition
        number above ``max_condition``; a non-finite result (overflow of diverging flow).

    Warns:
      RuntimeWarning: finite ``t`` with an eigenvalue of ``I(X,X)`` of negative real part
        (training diverges; the prediction is still the exact finite-time solution).
    """
    k_tx = _as_f64(k_test_train, "k_test_train")
    k_xx = _as_f64(k_train_train, "k_train_train")
    y = _as_f64(y_train, "y_train")

    # ---- shapes
    n, m = _check_regression_shapes(k_tx, k_xx, y, "k_test_train", "k_train_train")
    nngp = {"nngp_test_test": nngp_test_test, "nngp_test_train": nngp_test_train,
            "nngp_train_train": nngp_train_train}
    given = [k for k, v in nngp.items() if v is not None]
    if given and len(given) != 3:
        missing = [k for k in nngp if k not in given]
        raise ValueError(
            f"The covariance needs all three NNGP blocks; got {given} but not {missing}."
        )
    want_cov = bool(given)
    if want_cov:
        s_tt = _as_f64(nngp_test_test, "nngp_test_test")
        s_tx = _as_f64(nngp_test_train, "nngp_test_train")
        s_xx = _as_f64(nngp_train_train, "nngp_train_train")
        _check_shape(s_tt, "nngp_test_test", (m, m), "(n_test, n_test)")
        _check_shape(s_tx, "nngp_test_train", (m, n), "(n_test, n_train)")
        _check_shape(s_xx, "nngp_train_train", (n, n), "(n_train, n_train)")

    # ---- scalars / times
    c = _normalization(loss_normalization, y.size)
    t_arr = jnp.inf if t is None else t
    if is_traced(t_arr):
        t_arr = jnp.asarray(t_arr, dtype=jnp.float64)
        t_concrete = None
    else:
        t_concrete = np.asarray(t_arr, dtype=np.float64)
        t_arr = jnp.asarray(t_concrete)
    if t_arr.ndim > 1:
        raise ValueError(f"`t` must be a scalar or a 1-D array of times, got shape {t_arr.shape}.")
    scalar_t = t_arr.ndim == 0
    ts = jnp.atleast_1d(t_arr)

    if check:
        arrays = [(k_tx, "k_test_train"), (k_xx, "k_train_train"), (y, "y_train")]
        if want_cov:
            arrays += [(s_tt, "nngp_test_test"), (s_tx, "nngp_test_train"),
                       (s_xx, "nngp_train_train")]
        if is_traced(*(a for a, _ in arrays), learning_rate, diag_reg) or t_concrete is None:
            raise TypeError(
                "gp_predict(check=True) needs concrete (non-traced) inputs to run its "
                "diagnostics; pass check=False when calling it inside jit/vmap/grad."
            )
        for a, name in arrays:
            _check_finite(a, name)
        if want_cov:
            _check_symmetric(s_tt, "nngp_test_test")
            _check_symmetric(s_xx, "nngp_train_train")
        lr = float(learning_rate)
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"`learning_rate` must be positive and finite, got {lr}.")
        if not np.isfinite(float(diag_reg)):
            raise ValueError(f"`diag_reg` must be finite, got {diag_reg}.")
        if np.any(np.isnan(t_concrete)) or np.any(t_concrete < 0):
            raise ValueError(f"`t` must be >= 0 (inf allowed), got {t_concrete}.")

    k_reg = k_xx + diag_reg * jnp.eye(n, dtype=k_xx.dtype)
    rate = learning_rate / c

    is_inf = jnp.isinf(ts)
    need_inf = True if t_concrete is None else bool(np.any(np.isinf(t_concrete)))
    need_fin = True if t_concrete is None else bool(np.any(np.isfinite(t_concrete)))

    if check:
        diag = _diagnostics(k_reg)
        name = "k_train_train" + (" + diag_reg * 1" if float(diag_reg) else "")
        if need_inf:
            _check_inf_solvable(diag, n, float(max_condition), name, "gp_predict(t=inf)")
        if need_fin:
            lam = complex(diag.critical_eigenvalue)
            if lam.real < -_roundoff_tol(float(diag.norm), n):
                t_max = float(np.max(t_concrete[np.isfinite(t_concrete)]))
                growth = -lam.real * float(rate) * t_max
                warnings.warn(
                    f"`{name}` has an eigenvalue {lam.real:.6g}{lam.imag:+.6g}j with negative "
                    f"real part: gradient flow diverges along it.  Finite-t predictions are the "
                    f"exact solution of the linear dynamics but grow like "
                    f"exp({growth:.3g}) at t = {t_max:g}.",
                    RuntimeWarning,
                    stacklevel=3,
                )

    # ---- M_t = I(x,X) R_t,  R_t = I^{-1} E_t   (T, m, n)
    n_iter = 0
    if need_fin:
        h_max = (jnp.max(jnp.where(is_inf, 0.0, ts)) if t_concrete is None
                 else float(np.max(np.where(np.isinf(t_concrete), 0.0, t_concrete))))
        n_iter = _n_squarings_bound(k_reg, h_max * rate)
    if not want_cov:
        s_tt = s_tx = s_xx = None
    mean, cov = _predict_core(k_tx, k_reg, y, ts, jnp.asarray(rate, jnp.float64), s_tt, s_tx,
                              s_xx, need_fin=need_fin, need_inf=need_inf, n_iter=n_iter)

    if check:
        bad = ~jnp.isfinite(mean).reshape(ts.shape[0], -1).all(axis=1)
        if cov is not None:
            bad = bad | ~jnp.isfinite(cov).reshape(ts.shape[0], -1).all(axis=1)
        if bool(jnp.any(bad)):
            raise ValueError(
                f"gp_predict produced non-finite values at t = {np.asarray(ts)[np.asarray(bad)]} "
                f"(overflow: the flow diverges, see the eigenvalues of `k_train_train` via "
                f"kernel_diagnostics)."
            )

    if scalar_t:
        mean = mean[0]
        cov = None if cov is None else cov[0]
    return Prediction(mean, cov)


@float64
def nngp_posterior(
    nngp_test_train,
    nngp_train_train,
    y_train,
    *,
    nngp_test_test=None,
    diag_reg: float = 0.0,
    max_condition: float = 1e12,
    check: bool = True,
) -> Prediction:
    r"""Exact Bayesian GP posterior with the NNGP prior (baseline).

    .. math::  \mu(x) = S(x,X) (S(X,X) + \sigma^2)^{-1} Y, \qquad
               C(x,x') = S(x,x') - S(x,X) (S(X,X) + \sigma^2)^{-1} S(X,x'),

    (Lee et al. 2018, "Deep neural networks as Gaussian processes"; equals
    ``neural_tangents.predict.gp_inference`` / ``gradient_descent_mse_ensemble(t=None,
    get='nngp')`` for ``diag_reg = 0``).  Uses an LU solve.

    Args:
      nngp_test_train: ``(n_test, n_train)`` NNGP ``S(x, X)``.
      nngp_train_train: ``(n_train, n_train)`` symmetric NNGP ``S(X, X)``.
      y_train: ``(n_train,)`` or ``(n_train, n_out)`` targets.
      nngp_test_test: ``(n_test, n_test)`` NNGP ``S(x, x)``; needed for ``cov``.
      diag_reg: absolute observation-noise variance :math:`\sigma^2` added to ``S(X,X)``.
      max_condition: largest accepted condition number of ``S(X,X) + diag_reg``.
      check: run the value checks (need concrete arrays).

    Returns:
      :class:`Prediction` with ``mean`` ``(n_test,)`` / ``(n_test, n_out)`` and ``cov``
      ``(n_test, n_test)`` (``None`` without ``nngp_test_test``).
    """
    s_tx = _as_f64(nngp_test_train, "nngp_test_train")
    s_xx = _as_f64(nngp_train_train, "nngp_train_train")
    y = _as_f64(y_train, "y_train")
    n, m = _check_regression_shapes(s_tx, s_xx, y, "nngp_test_train", "nngp_train_train")
    s_tt = None
    if nngp_test_test is not None:
        s_tt = _as_f64(nngp_test_test, "nngp_test_test")
        _check_shape(s_tt, "nngp_test_test", (m, m), "(n_test, n_test)")
    k = s_xx + diag_reg * jnp.eye(n, dtype=s_xx.dtype)
    if check:
        arrays = [(s_tx, "nngp_test_train"), (s_xx, "nngp_train_train"), (y, "y_train")]
        if s_tt is not None:
            arrays.append((s_tt, "nngp_test_test"))
        if is_traced(*(a for a, _ in arrays), diag_reg):
            raise TypeError(
                "nngp_posterior(check=True) needs concrete inputs; pass check=False inside jit."
            )
        for a, name in arrays:
            _check_finite(a, name)
        _check_symmetric(s_xx, "nngp_train_train")
        if s_tt is not None:
            _check_symmetric(s_tt, "nngp_test_test")
        name = "nngp_train_train" + (" + diag_reg * 1" if float(diag_reg) else "")
        _check_inf_solvable(
            _diagnostics(k), n, float(max_condition), name, "nngp_posterior",
            hint="so it is not positive definite and the posterior is undefined; add "
                 "observation noise with `diag_reg`.",
            cond_hint="the posterior solve would be unreliable; add `diag_reg` or raise "
                      "`max_condition`.")
    w = jnp.linalg.solve(k, s_tx.T).T  # S(x,X) K^{-1}   (K symmetric)
    mean = w @ y
    cov = None
    if s_tt is not None:
        cov = s_tt - w @ s_tx.T
        cov = 0.5 * (cov + cov.T)
    return Prediction(mean, cov)
