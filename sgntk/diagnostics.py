r"""Diagnostics of surrogate-gradient trainability from the SG-NTK and the backward pass.

Everything here is computed *before training* from quantities sgntk already has: the SG-NTK
``I(X, X)`` of a network on a data sample (analytic for MLPs, :func:`sgntk.kernels.mlp`;
analytic, mean-field Monte Carlo or finite-network Monte Carlo for LIF layers,
:mod:`sgntk.lif_kernels`), and the surrogate's Gaussian moments
(:func:`sgntk.surrogates.gaussian_moment`). The kernel functions are pure ``jnp`` on a
``(..., n, n)`` kernel, so a whole grid of kernels is one ``jax.vmap``; :func:`mlp_diagnostics_fn`
vmaps over surrogate and initialisation parameters end to end.

Spectrum of the SG-NTK (:func:`spectrum`)
  * ``min_real_part`` -- smallest real part of the eigenvalues of ``I(X, X)``. Kernel-regime
    SGL converges on the training set only if it is positive (Eilers et al. 2024, Sec. 3;
    :mod:`sgntk.predict`).
  * ``condition_number`` -- ``s_max / s_min`` (singular values).
  * ``effective_rank`` -- ``exp(H(p))``, ``p_i = s_i / sum_j s_j`` (Roy & Vetterli 2007,
    "The effective rank", EUSIPCO), between 1 and n; singular values because ``I`` is not
    symmetric.
  * ``asymmetry`` -- ``||I - I^T||_F / ||I||_F`` (0 for a symmetric kernel, at most 2).
  * ``alignment`` -- centred kernel-target alignment (Cortes, Mohri & Rostamizadeh 2012,
    JMLR 13:795, Def. 4): ``<K_c, Y_c>_F / (||K_c||_F ||Y_c||_F)`` with ``K_c = H I H``,
    ``Y_c = H Y Y^T H``, ``H = 1 - 11^T/n``; only the symmetric part of ``I`` contributes.

What the kernel predicts for training (MSE, discrete gradient descent in function space,
``f <- f - (eta/c) I(X, X) (f - Y)``, the linearisation of SGL; ``c`` the loss divisor as in
:func:`sgntk.predict.gp_predict`)
  * :func:`max_stable_learning_rate` -- ``eta_max = min_i 2 c Re(lambda_i) / |lambda_i|^2``
    (``|1 - eta lambda / c| < 1`` for every eigenvalue); 0 when an eigenvalue has a
    non-positive real part (no step size converges).
  * :func:`predicted_loss` -- the loss after each of ``steps`` steps,
    ``L_n = 1/(2c) (||A^n r_0||^2 + tr(A^n S A^{nT}))``, ``A = 1 - (eta/c) I``, ``r_0 = -Y``
    (zero-mean initial function) and the optional NNGP ``S(X, X)`` (the initial function's
    covariance). For small ``eta`` it tends to the gradient-flow loss of
    :func:`sgntk.predict.gp_predict` at ``t = n eta``.
  * :func:`kernel_regression` -- test predictions of the same dynamics after ``steps``
    (or ``t = inf``: ``I(x, X) I(X, X)^{-1} Y``), with their MSE and argmax accuracy.

Backward gain (vanishing / exploding surrogate gradients)
  * :func:`mlp_backward_gain` -- the mean-field ``chi`` of signal propagation (Schoenholz et al.
    2017, "Deep information propagation", eq. for chi_1) for the *surrogate* backward pass:
    ``chi_l = sigma_w^2 E_{h ~ N(0, q_l)}[psi'(h)^2]`` with ``q_l`` the forward variance of
    layer ``l`` (average over the inputs), and the gain from the output to layer ``l``,
    ``G_l = prod_{k >= l} chi_k`` = ``E sum_i (d~f / d h_{l,i})^2`` at infinite width.
  * :func:`lif_backward_gain` -- Monte Carlo over finite LIF networks (the package's one LIF
    step, :func:`sgntk.lif.lif_step`): the mean squared membrane adjoint
    ``g(t) = E[(d~ <a, U[T-1]> / d U_i[t])^2]`` for a random unit-variance ``a``, through the
    reset (detached or differentiable) and the recurrence, with standard errors over networks;
    ``log10 g(0)`` is the gain over the whole window, ``g(0)^(1/(T-1))`` the gain per step.
  * :func:`herranz_celotti_gain` -- the baseline predictor: Herranz-Celotti & Rouat's
    Glorot-like condition for the LIF recurrence ("Stabilizing spiking neuron training",
    arXiv:2202.00282), as they state it: the backward variance through one time step
    ``E[lambda^2] + ((n - 1) E[w_rec^2] + E[theta^2]) E_v[psi'(v)^2]`` should equal 1,
    with ``lambda = exp(-dt / tau_mem)`` the membrane decay, ``w_rec`` the recurrent weights
    (``E[w_rec^2] = sigma_rec^2 / n``; 0 without recurrence) and ``v = U - theta`` at
    initialisation, here the free membrane's Gaussian (variance from
    :func:`sgntk.lif_kernels.membrane_covariance`, averaged over the sample and the steps).
    Their condition does not distinguish a detached from a differentiable reset (the
    ``theta^2`` term is always there), which is one reason it cannot rank reset modes.

Tests (each against an independent route): ``tests/test_diagnostics.py``.
"""
from __future__ import annotations

import functools

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import lif as _lif
from . import surrogates as _sg
from ._util import check_int, check_positive
from ._x64 import float64
from .predict import kernel_diagnostics

__all__ = [
    "Spectrum",
    "spectrum",
    "effective_rank",
    "centred_alignment",
    "max_stable_learning_rate",
    "predicted_loss",
    "kernel_regression",
    "KernelRegression",
    "BackwardGain",
    "mlp_backward_gain",
    "mlp_forward_variances",
    "lif_backward_gain",
    "herranz_celotti_gain",
    "mlp_diagnostics_fn",
    "one_hot_targets",
]


# ------------------------------------------------------------------------------ helpers
def _norm_c(loss_normalization, y_size):
    if isinstance(loss_normalization, str):
        if loss_normalization == "sum":
            return 1.0
        if loss_normalization == "mean":
            return float(y_size)
        raise ValueError("loss_normalization must be 'sum', 'mean' or a positive number; got "
                         f"{loss_normalization!r}")
    return float(check_positive("loss_normalization", loss_normalization))


def _square(name, k):
    k = jnp.asarray(k)
    if k.ndim < 2 or k.shape[-1] != k.shape[-2]:
        raise ValueError(f"`{name}` must be a (batch of) square matrices (..., n, n); got "
                         f"shape {k.shape}")
    return k


def _targets(name, y, n):
    y = jnp.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"`{name}` must have shape (n,) or (n, n_out) with n = {n} rows; got "
                         f"{tuple(jnp.shape(y))}")
    return y


def one_hot_targets(labels, n_classes: Optional[int] = None):
    """Centred one-hot targets ``e_label - 1/C`` ``(n, C)`` for integer class labels."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array; got dtype {labels.dtype}, "
                         f"shape {labels.shape}")
    c = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    return np.eye(c)[labels] - 1.0 / c


# ------------------------------------------------------------------------------ spectrum
class Spectrum(NamedTuple):
    """Spectral diagnostics of ``I(X, X)`` (0-d arrays, or the batch shape).

    Attributes: ``min_real_part``, ``condition_number``, ``effective_rank``, ``asymmetry``,
    ``alignment`` (NaN when no targets were given), ``norm`` (spectral norm). Definitions in
    the module docstring.
    """

    min_real_part: jax.Array
    condition_number: jax.Array
    effective_rank: jax.Array
    asymmetry: jax.Array
    alignment: jax.Array
    norm: jax.Array


def effective_rank(k):
    """``exp(entropy)`` of the normalised singular values of ``k`` ``(..., n, n)``."""
    s = jnp.linalg.svd(_square("k", k), compute_uv=False)
    p = s / jnp.maximum(jnp.sum(s, -1, keepdims=True), jnp.finfo(s.dtype).tiny)
    h = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), -1)
    return jnp.exp(h)


def centred_alignment(k, y):
    """Centred kernel-target alignment of ``k`` ``(..., n, n)`` with targets ``y`` ``(n,)``/``(n, c)``.

    ``<HKH, HYY^TH>_F / (||HKH||_F ||HYY^TH||_F)`` (Cortes et al. 2012); in [-1, 1].
    """
    k = _square("k", k)
    n = k.shape[-1]
    y = _targets("y", y, n)
    kc = k - k.mean(-1, keepdims=True)
    kc = kc - kc.mean(-2, keepdims=True)
    yc = y - y.mean(0, keepdims=True)
    yy = yc @ yc.T
    num = jnp.sum(kc * yy, (-2, -1))
    den = jnp.linalg.norm(kc, axis=(-2, -1)) * jnp.linalg.norm(yy)
    return num / jnp.where(den > 0, den, 1.0)


def spectrum(k, y=None) -> Spectrum:
    """All spectral diagnostics of ``k = I(X, X)`` (``(..., n, n)``, any leading batch).

    Pure ``jnp`` (jit/vmap). ``y``: optional targets for the alignment.
    """
    k = _square("k", k)
    d = kernel_diagnostics(k)
    al = (jnp.full(k.shape[:-2], jnp.nan) if y is None else centred_alignment(k, y))
    return Spectrum(d.min_real_part, d.condition_number, effective_rank(k), d.asymmetry, al,
                    d.norm)


# ------------------------------------------------------------------------------ training
def max_stable_learning_rate(k, *, loss_normalization="sum"):
    """Largest learning rate of stable discrete GD ``f <- f - (eta/c) I (f - Y)``.

    ``eta_max = min_i 2 c Re(lambda_i) / |lambda_i|^2`` over the eigenvalues of ``I(X, X)``:
    below it every mode contracts (``|1 - eta lambda / c| < 1``), above it one grows. 0 if
    some eigenvalue has a non-positive real part. Pure ``jnp``, batched over leading axes.
    Test: ``test_stable_learning_rate_vs_diverging_run``.
    """
    k = _square("k", k)
    c = _norm_c(loss_normalization, k.shape[-1])
    lam = jnp.linalg.eigvals(k)
    re, mod2 = lam.real, jnp.abs(lam) ** 2
    bound = jnp.where(re > 0, 2.0 * c * re / jnp.where(mod2 > 0, mod2, 1.0), 0.0)
    return jnp.min(bound, -1)


def predicted_loss(k, y, *, steps: int, learning_rate, loss_normalization="sum", nngp=None,
                   f0=None):
    """Kernel-predicted MSE loss after ``0..steps`` steps of gradient descent, ``(steps + 1,)``.

    ``L_n = 1/(2c) (||A^n r_0||^2 + tr(A^n S A^{nT}))`` with ``A = 1 - (eta/c) I(X, X)``,
    ``r_0 = f0 - Y`` (``f0`` default 0: the mean initial function) and ``S`` = ``nngp``
    (``S(X, X)``, the initial function's covariance; omitted if None). ``y`` ``(n,)`` or
    ``(n, c_out)`` (every output trained with the same kernel). A ``lax.scan`` of ``steps``
    matrix-vector updates; jit/vmap over ``k``, ``y`` and ``learning_rate``.
    Test: ``test_predicted_loss_vs_kernel_gd`` and ``..._vs_wide_network``.
    """
    k = _square("k", k)
    if k.ndim != 2:
        raise ValueError(f"`k` must be one (n, n) kernel (jax.vmap for a batch); got {k.shape}")
    n = k.shape[-1]
    y = _targets("y", y, n)
    steps = check_int("steps", steps, minimum=0)
    c = _norm_c(loss_normalization, y.size)
    r0 = -y if f0 is None else _targets("f0", f0, n) - y
    s0 = None if nngp is None else _square("nngp", nngp)
    return _loss_curve(k, r0, s0, jnp.asarray(learning_rate) / c, c, steps=steps)


@functools.partial(jax.jit, static_argnames=("steps",))
def _loss_curve(k, r0, s0, a_step, c, *, steps):
    """The scan of :func:`predicted_loss` (compiled once per shape and ``steps``, not per call)."""
    n_out = r0.shape[1]

    def loss(r, s):
        out = 0.5 / c * jnp.sum(r**2)
        if s is not None:  # every output column has the initial covariance S
            out = out + 0.5 / c * n_out * jnp.trace(s)
        return out

    def body(carry, _):
        r, s = carry
        r = r - a_step * (k @ r)
        if s is not None:
            s = s - a_step * (k @ s)
            s = s - a_step * (s @ k.T)
        return (r, s), loss(r, s)

    _, losses = jax.lax.scan(body, (r0, s0), None, length=steps)
    return jnp.concatenate([loss(r0, s0)[None], losses])


class KernelRegression(NamedTuple):
    """Kernel-predicted test outputs ``(n_test, c_out)`` and their ``mse`` and ``accuracy``
    (argmax over outputs against argmax of the targets; NaN for one output column)."""

    prediction: jax.Array
    mse: jax.Array
    accuracy: jax.Array


def kernel_regression(k_test_train, k_train_train, y_train, y_test, *, steps=None,
                      learning_rate=1.0, loss_normalization="sum") -> KernelRegression:
    """Test predictions of the linearised SGL dynamics from a zero-mean initial function.

    ``steps=None``: ``t = inf``, ``f(x) = I(x, X) I(X, X)^{-1} Y`` (LU solve; meaningful only if
    every eigenvalue of ``I(X, X)`` has a positive real part). Otherwise ``steps`` discrete GD
    steps: ``f(x) <- f(x) - (eta/c) I(x, X) r``, ``r <- r - (eta/c) I(X, X) r``, ``r_0 = -Y``.
    """
    kxx = _square("k_train_train", k_train_train)
    ktx = jnp.asarray(k_test_train)
    n = kxx.shape[-1]
    y = _targets("y_train", y_train, n)
    if ktx.ndim != 2 or ktx.shape[1] != n:
        raise ValueError(f"`k_test_train` must have shape (n_test, {n}); got {ktx.shape}")
    yt = _targets("y_test", y_test, ktx.shape[0])
    if steps is None:
        pred = ktx @ jnp.linalg.solve(kxx, y)
    else:
        steps = check_int("steps", steps, minimum=0)
        a = jnp.asarray(learning_rate) / _norm_c(loss_normalization, y.size)
        pred = _gd_prediction(ktx, kxx, y, a, steps=steps)
    mse = jnp.mean((pred - yt) ** 2)
    acc = (jnp.mean(jnp.argmax(pred, -1) == jnp.argmax(yt, -1)) if yt.shape[1] > 1
           else jnp.nan)
    return KernelRegression(pred, mse, acc)


@functools.partial(jax.jit, static_argnames=("steps",))
def _gd_prediction(ktx, kxx, y, a, *, steps):
    """``steps`` GD steps of :func:`kernel_regression` (compiled once per shape and ``steps``)."""
    def body(carry, _):
        f, r = carry
        return (f - a * (ktx @ r), r - a * (kxx @ r)), None

    (pred, _), _ = jax.lax.scan(body, (jnp.zeros((ktx.shape[0], y.shape[1]), y.dtype), -y),
                                None, length=steps)
    return pred


# ------------------------------------------------------------------------------ backward gain
class BackwardGain(NamedTuple):
    """Backward gain of the surrogate gradient.

    Attributes:
      chi: per layer (MLP, ``(depth,)``, input side first) or the geometric-mean gain per time
        step (LIF, scalar).
      gain: ``G_l = prod_{k >= l} chi_k`` per layer (MLP) or ``g(t)`` per time step (LIF,
        ``(T,)``; ``g(T-1) = 1``).
      stderr: standard error of ``gain`` (Monte Carlo; zeros for the analytic MLP route).
      log10_total: ``log10`` of the gain from the output to the input layer (MLP) or over the
        whole window, ``log10 max_t g(t)`` (LIF).
    """

    chi: jax.Array
    gain: jax.Array
    stderr: jax.Array
    log10_total: jax.Array


def _second_moment(activation, q, m):
    """``E_{h ~ N(0, q)}[phi(h)^2]`` for sign, step and erf(m h)."""
    if activation == "sign":
        return jnp.ones_like(q)
    if activation == "step":
        return 0.5 * jnp.ones_like(q)
    if activation == "erf":
        return 2.0 / jnp.pi * jnp.arcsin(2.0 * m**2 * q / (1.0 + 2.0 * m**2 * q))
    raise ValueError(f"activation must be 'sign', 'step' or 'erf' for the backward gain; got "
                     f"{activation!r}")


def mlp_forward_variances(x, *, depth: int, activation, sigma_w=1.0, sigma_b=0.0, m=1.0):
    """Pre-activation variances ``q_l`` ``(depth, n)`` of the hidden layers, per input.

    ``q_1 = sigma_w^2 |x|^2 / n0 + sigma_b^2``, ``q_{l+1} = sigma_w^2 E[phi(h)^2] + sigma_b^2``
    (NTK parameterisation of :mod:`sgntk.layers`).
    """
    x = jnp.asarray(x)
    q = sigma_w**2 * jnp.sum(x**2, -1) / x.shape[-1] + sigma_b**2
    out = [q]
    for _ in range(depth - 1):
        q = sigma_w**2 * _second_moment(activation, q, m) + sigma_b**2
        out.append(q)
    return jnp.stack(out)


def mlp_backward_gain(x, *, depth: int, activation, surrogate, sigma_w=1.0, sigma_b=0.0,
                      m=1.0) -> BackwardGain:
    """Mean-field surrogate backward gain of an MLP (analytic; pure, vmap/grad-able).

    ``chi_l = sigma_w^2 E_{h ~ N(0, q_l)}[psi'(h)^2]`` averaged over the inputs ``x`` ``(n, d)``
    (the readout's weights ``sigma_w / sqrt(n_L)`` carry the last factor), ``G_l =
    prod_{k >= l} chi_k`` = ``E sum_i (d~f/dh_{l,i})^2`` at infinite width. For erf
    activations the surrogate replaces ``erf_m'`` as in SGL. Test:
    ``test_mlp_backward_gain_vs_finite_networks``.
    """
    depth = check_int("depth", depth, minimum=1)
    sur = _sg.get(surrogate) if isinstance(surrogate, str) else surrogate
    q = mlp_forward_variances(x, depth=depth, activation=activation, sigma_w=sigma_w,
                              sigma_b=sigma_b, m=m)
    chi = sigma_w**2 * jnp.mean(_sg.gaussian_moment(sur, 0.0, q, power=2), -1)
    gain = jnp.cumprod(chi[::-1])[::-1]
    return BackwardGain(chi, gain, jnp.zeros_like(gain), jnp.log10(gain[0]))


@float64
def lif_backward_gain(x, *, config: _lif.LIFConfig, sigma_w=1.0, recurrent: bool = False,
                      sigma_rec=1.0, width: int = 256, n_networks: int = 8,
                      seed: int = 0) -> BackwardGain:
    """Monte-Carlo surrogate backward gain through time of one LIF layer.

    For each of ``n_networks`` networks (:func:`sgntk.lif.init_lif`: ``W ~ N(0, sigma_w^2 /
    n_in)``, ``V ~ N(0, sigma_rec^2 / width)``) and each input of ``x`` ``(P, T, n_in)``,
    the membrane adjoint ``d~ <a, U[T-1]> / d U[t]`` (``a ~ N(0, 1)`` per neuron) is computed
    by autodiff through :func:`sgntk.lif.lif_step` (so exactly the BPTT of training: reset
    detached or differentiable per ``config``, recurrence, surrogate ``config.surrogate``);
    ``g(t)`` is its mean square over neurons and inputs relative to ``t = T - 1`` (so
    ``g(T-1) = 1``), averaged over networks (standard error over networks); ``chi =
    g(0)^(1/(T-1))`` is the geometric-mean gain per step over the window and ``log10_total =
    log10 max_t g(t)`` (> 0: the surrogate gradient grows backwards in time). Test:
    ``test_lif_backward_gain_exact_explosion``.
    """
    config.validate()
    x = jnp.asarray(x, jnp.float64)
    if x.ndim != 3:
        raise ValueError(f"x must be spike trains (P, T, n_in); got shape {x.shape}")
    width = check_int("width", width, minimum=1)
    n_networks = check_int("n_networks", n_networks, minimum=2)
    check_positive("sigma_w", sigma_w)
    T, n_in = x.shape[1], x.shape[2]
    cfg = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), config)

    keys = jax.random.split(jax.random.PRNGKey(seed), n_networks)
    g = []
    for key in keys:  # one compiled function per (shapes, static config fields)
        k1, k2 = jax.random.split(key)
        p = _lif.init_lif(k1, n_in, width, sigma_w=sigma_w, recurrent=recurrent,
                          sigma_rec=sigma_rec, dtype=jnp.float64)
        a = jax.random.normal(k2, (width,), jnp.float64)
        g.append(_membrane_adjoint_sq(x, p.w_in, p.w_rec, a, cfg))
    g = jnp.stack(g)  # (n_networks, T)
    g = g / g[:, -1:]  # g(T-1) = mean a^2 -> 1 exactly
    mean = g.mean(0)
    se = g.std(0, ddof=1) / np.sqrt(n_networks)
    tiny = jnp.finfo(jnp.float64).tiny
    chi = jnp.maximum(mean[0], tiny) ** (1.0 / max(T - 1, 1))
    return BackwardGain(chi, mean, se, jnp.log10(jnp.max(mean)))


@jax.jit
def _membrane_adjoint_sq(x, w_in, w_rec, a, cfg):
    """Mean over neurons and inputs of ``(d~ <a, U[T-1]> / dU[t])^2``, ``(T,)``."""
    T, width = x.shape[1], w_in.shape[1]

    def adjoint(xp):
        drive = xp @ w_in

        def out(eps):
            def step(st, inp):
                d, e = inp
                st = _lif.LIFState(st.current, st.membrane + e)
                return _lif.lif_step(st, d, cfg, w_rec=w_rec)

            state0 = _lif.initial_state(width, cfg, dtype=x.dtype)   # rest (LIF or QIF)
            _, (_, u) = jax.lax.scan(step, state0, (drive, eps))
            return jnp.dot(a, u[-1])

        return jnp.mean(jax.grad(out)(jnp.zeros((T, width), x.dtype)) ** 2, -1)

    return jnp.mean(jax.lax.map(adjoint, x), 0)


@float64
def herranz_celotti_gain(x, *, config: _lif.LIFConfig, sigma_w=1.0, recurrent: bool = False,
                         sigma_rec=1.0, width: int = 100):
    """Herranz-Celotti & Rouat's one-step backward variance (their condition: it equals 1).

    ``E[lambda^2] + ((n - 1) E[w_rec^2] + E[theta^2]) E_v[psi'(v)^2]`` with ``lambda =
    exp(-dt/tau_mem)``, ``E[w_rec^2] = sigma_rec^2 / n`` (``n = width``; 0 if not
    ``recurrent``), ``theta = config.threshold`` and ``v = U - theta``, ``U`` the free
    membrane at initialisation, Gaussian with the variance of
    :func:`sgntk.lif_kernels.membrane_covariance` (``sigma_b = 0``) -- the expectation is the
    average of ``E_{N(-theta, var)}[psi'^2]`` over the inputs of ``x`` ``(P, T, n_in)`` and the
    steps with nonzero variance. Pure in the config's array leaves (vmap over a grid of
    surrogates / thresholds). Test: ``test_herranz_celotti_gain_closed_form``.
    """
    return _herranz_celotti_gain(jnp.asarray(x, jnp.float64), config, sigma_w, sigma_rec,
                                 recurrent=bool(recurrent), width=int(width))


@functools.partial(jax.jit, static_argnames=("recurrent", "width"))
def _herranz_celotti_gain(x, config, sigma_w, sigma_rec, *, recurrent, width):
    """:func:`herranz_celotti_gain`, compiled once per surrogate shape and static fields."""
    from .lif_kernels import membrane_covariance

    _, _, b = membrane_covariance(x[:1], x, config=config, sigma_w=sigma_w)  # b: Var U_t(x_q)
    var = b.reshape(-1)
    w = (var > 0).astype(jnp.float64)
    theta = jnp.asarray(config.threshold, jnp.float64)
    m2 = _sg.gaussian_moment(config.surrogate, -theta * jnp.ones_like(var), var, power=2)
    e_psi2 = jnp.sum(w * m2) / jnp.maximum(jnp.sum(w), 1.0)
    lam = _lif.decay(config.tau_mem, config.dt)
    rec = (width - 1) * sigma_rec**2 / width if recurrent else 0.0
    return lam**2 + (rec + theta**2) * e_psi2


# ------------------------------------------------------------------------------ MLP grid
def mlp_diagnostics_fn(*, depth: int, activation, steps: int = 100, lr_fraction: float = 0.5,
                       shape: str = "fast_sigmoid"):
    """Pure ``fn(x, y, sharpness, dampening, tail, sigma_w, sigma_b, m) -> dict`` for MLPs.

    Analytic SG-NTK (:func:`sgntk.kernels.mlp_kernel_fn`) on the sample ``x`` ``(n, d)`` with
    targets ``y``, then :func:`spectrum`, :func:`max_stable_learning_rate`,
    :func:`predicted_loss` at ``lr_fraction * eta_max`` after ``steps`` steps (relative to
    the initial loss) and :func:`mlp_backward_gain`. Every numeric argument is an array leaf:
    ``jax.vmap`` it over a grid (enable float64 yourself).
    """
    from .kernels import mlp_kernel_fn

    kfn = mlp_kernel_fn(depth=depth, activation=activation, which=("sgntk",))

    def fn(x, y, sharpness, dampening, tail, sigma_w, sigma_b, m=1.0):
        sur = _sg.Surrogate(shape, dampening, sharpness, tail)
        k = kfn(x, x, sur, sigma_w, sigma_b, m).sgntk
        sp = spectrum(k, y)
        eta = max_stable_learning_rate(k)
        lr = lr_fraction * jnp.where(eta > 0, eta, 1.0 / sp.norm)
        loss = predicted_loss(k, y, steps=steps, learning_rate=lr)
        bg = mlp_backward_gain(x, depth=depth, activation=activation, surrogate=sur,
                               sigma_w=sigma_w, sigma_b=sigma_b, m=m)
        return dict(sp._asdict(), max_stable_lr=eta,
                    relative_loss=loss[-1] / loss[0], backward_log10_gain=bg.log10_total)

    return fn
