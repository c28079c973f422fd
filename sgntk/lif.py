"""Discrete-time current-based leaky integrate-and-fire (LIF) layers, as pure JAX functions.

Dynamics (Zenke & Vogels 2021, Neural Computation 33:899; reference notes section 6), one
example, ``n = 0 .. T-1``, ``I[0] = U[0] = 0``::

    S[n]   = heaviside(U[n] - theta)                          # surrogate derivative psi'
    I[n+1] = b_syn I[n] + S_in[n] @ W (+ S[n] @ V)            # optional explicit recurrence V
    U[n+1] = (b_mem U[n] + (1 - b_mem) I[n]) (1 - R[n])       # reset="zero"
    U[n+1] =  b_mem U[n] + (1 - b_mem) I[n] - theta R[n]      # reset="subtract"
    U[n+1] =  b_mem U[n] + (1 - b_mem) I[n]                   # reset="none" (free membrane)

with ``b = exp(-dt / tau)`` and ``R[n] = stop_gradient(S[n])`` (``detach_reset=True``, the
default of most libraries) or ``R[n] = S[n]`` (differentiable reset). ``heaviside`` is
:func:`sgntk.surrogates.heaviside` (``H(0) = 0``), so autodiff of these functions *is*
surrogate-gradient learning (BPTT). An input spike at step ``n`` first moves the membrane at
step ``n + 2`` (one step through the synapse, one through the membrane).

The leaky non-spiking readout filters the hidden spikes the same way without threshold::

    I_o[n+1] = b_syn I_o[n] + S[n] @ W_o
    U_o[n+1] = b_ro U_o[n] + (1 - b_ro) I_o[n],    b_ro = exp(-dt / tau_readout)

and records ``U_o[1..T]``; the logits are ``max_n``, ``sum_n`` or the last of them
(``readout="max" | "sum" | "last"``). The readout trace is linear in the spikes, but the
max-over-time *choice of step* depends on the initialisation, so infinite-width kernels are
only deterministic for the linear readouts ("sum", "last"): train with "max" if you like, but
compute and compare kernels for "sum" or "last".

Conventions (equinox-style): parameters are NamedTuple pytrees; the layer functions act on
*one* example with spikes of shape ``(T, n_in)`` and callers ``jax.vmap`` over a batch;
:func:`snn_apply` also takes a batch ``(B, T, n_in)`` and runs it as one ``lax.scan`` over time
with batched matmuls (the fast path; ``lif_train`` uses it). An ensemble of networks is the
initialiser vmapped over split keys::

    keys = jax.random.split(key, 8)
    ens = jax.vmap(lambda k: init_lif(k, 20, 100))(keys)            # leaves (8, ...)
    out = jax.vmap(lambda p: jax.vmap(lambda x: lif_layer(p, x, config=cfg))(batch))(ens)

Numeric hyper-parameters (time constants, threshold, dt, surrogate parameters) are array
leaves of :class:`LIFConfig`; only ``reset``, ``detach_reset``, ``readout`` and ``neuron`` are
static, so a grid of configurations is one ``jax.vmap`` over a stacked config. Whether a layer is
recurrent is decided by its parameters (``w_rec`` is ``None`` or an ``(n, n)`` array).

Quadratic integrate-and-fire (QIF) neurons, ``LIFConfig(neuron="qif")`` (Wenig, Memmesheimer
& Klos 2025, "QIF neurons exhibit less fragmented loss landscapes ..."; the model of Klos &
Memmesheimer's spikegd), replace the membrane update and keep everything else (synaptic
current, recurrence, readout, :func:`snn_apply`, training, kernels)::

    tau_mem dV/dt = V (V - 1) + I,     spike when V reaches V_peak, then V -> V_reset

With ``V - 1/2 = tan(theta / 2)`` this is the theta neuron, ``tau_mem dtheta/dt = (1 - cos
theta) + (I - 1/4)(1 + cos theta)``: the divergence ``V -> +inf`` is the finite phase ``theta =
pi`` (where ``dtheta/dt = 2 / tau_mem`` for every input) and the reset ``V_reset = -inf`` is
``theta = -pi``, the same point of the circle. The QIF state is the phase ``theta[n]``
(``LIFState.membrane``; :func:`qif_voltage` gives ``V``); defaults ``v_peak = +inf``,
``v_reset = -inf`` are the paper's neuron, finite values cut the divergence off at ``theta_peak
= 2 atan(V_peak - 1/2)`` and reset to ``theta_reset = 2 atan(V_reset - 1/2)``. One step::

    S[n]      = heaviside((theta[n] - theta_peak) / pi)                   # surrogate on half-turns
    theta_r   = theta[n] - (theta_peak - theta_reset) R[n]                 # reset="subtract"
    theta_r   = theta[n] (1 - R[n]) + theta_reset R[n]                     # reset="zero" (to V_reset)
    theta[n+1]= theta_r + 2 atan2(s S_a (c cos^2(theta_r/2) + sin^2(theta_r/2)),
                                  C_a + s S_a (c - 1) sin(theta_r/2) cos(theta_r/2))

with ``c = I[n] - 1/4``, ``s = dt / tau_mem``, ``a = c s^2``, ``C_a = cos(sqrt(a))`` and
``S_a = sin(sqrt(a)) / sqrt(a)`` (``cosh``/``sinh`` for ``a < 0``): the *exact* flow of the
ODE over one step with the current held at ``I[n]`` (as the LIF update holds it), a rotation
of ``(cos, sin)(theta/2)`` by the linearised Riccati equation. Exact integration rather than
Euler because the quadratic term makes explicit schemes stiff (Euler on ``V`` overshoots the
divergence, on ``theta`` it is unstable near the rest point once ``I - 1/4 < -(tau_mem/dt)^2``); the only limit is
one turn per step, ``I - 1/4 < (pi tau_mem / dt)^2`` (about 987 at dt/tau = 0.1; above it the
phase aliases and spikes are lost, beyond the one-spike-per-step limit of any discrete-time
neuron anyway). Wenig et al. simulate event-based in continuous time (no discretisation).
With the defaults and ``reset="subtract"`` the reset is a wrap by 2 pi, so the phase modulo
2 pi is a continuous function of the parameters: only the output spikes ``S[n]`` jump (a
spike moves to the next step), never the membrane, unlike LIF's spike (dis)appearances.
``reset="none"`` is not defined for QIF (the phase would stay past the peak). The neuron
starts at rest, ``V[0] = 0`` (``theta[0] = 2 atan(-1/2)``; :func:`initial_state`).
``threshold`` is unused by QIF (the unstable fixed point is ``V = 1`` at ``I = 0``; the
rheobase is ``I = 1/4``).

Exact-derivative limit: in discrete time ``dS[n]/dp = 0`` almost everywhere (no exact
gradient; the surrogate ``psi'((theta - theta_peak)/pi)/pi`` stands in). In continuous time the
QIF spike time ``t*`` is differentiable: ``theta(t*; p) = pi`` and ``dtheta/dt = 2 / tau_mem``
there, so ``dt*/dp = -(tau_mem / 2) dtheta(t*)/dp`` (the phase is smooth before the spike, so
autodiff of the scan gives ``dtheta[n]/dp`` without any surrogate), which is what spikegd's
exact gradient uses. Tests: ``tests/test_qif.py`` (closed-form time to spike ``tau_mem / sqrt(c)
(pi/2 - atan((V0 - 1/2) / sqrt(c)))``, ``solve_ivp`` with a synaptic current, the spike-time
derivative, training, kernels).

Tests: ``tests/test_lif.py``.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import surrogates as _sg

# Time steps per scan iteration: a pure speed knob (results identical); 4 measured ~1.5x faster
# forward+backward on the 2-core CPU (benchmarks/bench_lif.py).
_SCAN_UNROLL = 4
# The same knob for snn_apply's batched scan: with a whole batch per step the work per step is
# large and unrolling measured slower (unroll 1 / 2 / 4: 39 / 54 / 59 ms median forward+backward,
# batch 250, 20-100-10, T = 100, 2-core CPU at load ~15; see benchmarks/bench_lif.py).
_BATCH_SCAN_UNROLL = 1

__all__ = [
    "LIFConfig",
    "LIFParams",
    "LIFState",
    "LIFOutput",
    "ReadoutParams",
    "SNNParams",
    "SNNOutput",
    "RESETS",
    "READOUTS",
    "NEURONS",
    "qif_phase",
    "qif_voltage",
    "initial_state",
    "decay",
    "psp_moments",
    "impulse_response",
    "init_lif",
    "init_lif_fluctuation",
    "fluctuation_weight_stats",
    "init_readout",
    "init_snn",
    "lif_step",
    "lif_scan",
    "lif_cell",
    "lif_layer",
    "readout_layer",
    "reduce_readout",
    "snn_apply",
]

RESETS = ("zero", "subtract", "none")
READOUTS = ("max", "sum", "last")
NEURONS = ("lif", "qif")


# --------------------------------------------------------------------------------------
# Configuration and parameter pytrees.
# --------------------------------------------------------------------------------------
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LIFConfig:
    """Neuron and readout hyper-parameters (array leaves) and flags (static).

    Attributes:
      tau_mem: membrane time constant (same unit as ``dt``; default 10 ms), > dt.
      tau_syn: synaptic time constant (default 5 ms), > dt.
      tau_readout: readout membrane time constant (default 20 ms), > dt.
      threshold: firing threshold theta > 0 (default 1).
      dt: time step > 0 (default 1 ms).
      surrogate: a :class:`sgntk.surrogates.Surrogate`. Default SuperSpike with the reference's
        beta = 10, i.e. ``psi'(x) = 1 / (10 |x| + 1)^2`` = ``get("fast_sigmoid", sharpness=5)``
        (sgntk's fast_sigmoid profile is ``1 / (1 + 2 u)^2``, so sharpness = beta / 2).
      reset: static, ``"zero"`` (multiply by ``1 - S``), ``"subtract"`` (``- theta S``) or
        ``"none"`` (no reset: the free membrane, as in the no-reset kernel theory).
      detach_reset: static, ``True`` puts ``stop_gradient`` on the reset spike.
      readout: static, ``"max"``, ``"sum"`` or ``"last"`` over time.
      v_peak: QIF divergence cut-off ``V_peak`` in (1, inf] (default inf: spike at the
        divergence, the paper's neuron); ignored for LIF.
      v_reset: QIF reset value ``V_reset`` in [-inf, V_peak) (default -inf); ignored for LIF.
      neuron: static, ``"lif"`` (default) or ``"qif"`` (module docstring).

    Use :meth:`validate` (called by :func:`lif_layer` / :func:`snn_apply` on concrete values)
    to check ranges; traced values (under ``jit``/``vmap``) are not checked.
    """

    tau_mem: jax.Array | float = 10.0
    tau_syn: jax.Array | float = 5.0
    tau_readout: jax.Array | float = 20.0
    threshold: jax.Array | float = 1.0
    dt: jax.Array | float = 1.0
    surrogate: _sg.Surrogate = dataclasses.field(
        default_factory=lambda: _sg.get("fast_sigmoid", sharpness=5.0))
    reset: str = dataclasses.field(default="zero", metadata=dict(static=True))
    detach_reset: bool = dataclasses.field(default=True, metadata=dict(static=True))
    readout: str = dataclasses.field(default="max", metadata=dict(static=True))
    v_peak: jax.Array | float = float("inf")
    v_reset: jax.Array | float = float("-inf")
    neuron: str = dataclasses.field(default="lif", metadata=dict(static=True))

    def validate(self) -> "LIFConfig":
        """Raise ValueError for out-of-range concrete values; return ``self``."""
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}; got {self.reset!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}; got {self.readout!r}")
        if self.neuron not in NEURONS:
            raise ValueError(f"neuron must be one of {NEURONS}; got {self.neuron!r}")
        if self.neuron == "qif" and self.reset == "none":
            raise ValueError("reset='none' is not defined for neuron='qif' (the phase would stay "
                             "past the divergence); use reset='subtract' (the QIF's wrap) or 'zero'")
        vp, vr = _concrete(self.v_peak), _concrete(self.v_reset)
        if vp is not None and (np.any(np.isnan(vp)) or np.any(vp <= 1)):
            raise ValueError(f"v_peak must be in (1, inf] (above the QIF's unstable fixed point "
                             f"V = 1); got {self.v_peak!r}")
        if vr is not None and (np.any(np.isnan(vr)) or np.any(vr == np.inf)):
            raise ValueError(f"v_reset must be in [-inf, v_peak); got {self.v_reset!r}")
        if vp is not None and vr is not None and np.any(vr >= vp):
            raise ValueError(f"v_reset must be < v_peak (accepted range [-inf, v_peak)); got "
                             f"v_reset={self.v_reset!r}, v_peak={self.v_peak!r}")
        if not isinstance(self.detach_reset, (bool, np.bool_)):
            raise ValueError(f"detach_reset must be a bool; got {self.detach_reset!r}")
        if not isinstance(self.surrogate, _sg.Surrogate):
            raise ValueError("surrogate must be a sgntk.surrogates.Surrogate "
                             f"(use surrogates.get(name, ...)); got {self.surrogate!r}")
        dt = _concrete(self.dt)
        if dt is not None and (not np.all(np.isfinite(dt)) or np.any(dt <= 0)):
            raise ValueError(f"dt must be finite and > 0; got {self.dt!r}")
        for name in ("tau_mem", "tau_syn", "tau_readout"):
            tau = _concrete(getattr(self, name))
            if tau is None:
                continue
            if not np.all(np.isfinite(tau)) or np.any(tau <= 0):
                raise ValueError(f"{name} must be finite and > 0 (a time constant, same unit "
                                 f"as dt); got {getattr(self, name)!r}")
            if dt is not None and np.any(np.asarray(dt) >= tau):
                raise ValueError(f"dt must be < {name} (accepted range: 0 < dt < {name}); got "
                                 f"dt={self.dt!r}, {name}={getattr(self, name)!r}")
        theta = _concrete(self.threshold)
        if theta is not None and (not np.all(np.isfinite(theta)) or np.any(theta <= 0)):
            raise ValueError(f"threshold must be finite and > 0; got {self.threshold!r}")
        return self

    def replace(self, **changes) -> "LIFConfig":
        return dataclasses.replace(self, **changes)


def _concrete(x):
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


class LIFParams(NamedTuple):
    """One LIF layer. ``w_in``: ``(n_in, n)``; ``w_rec``: ``(n, n)`` or ``None`` (feed-forward)."""

    w_in: jax.Array
    w_rec: Optional[jax.Array] = None


class ReadoutParams(NamedTuple):
    """Leaky readout. ``w``: ``(n_hidden, n_out)``."""

    w: jax.Array


class SNNParams(NamedTuple):
    """A stack of LIF layers followed by a leaky readout."""

    hidden: tuple  # tuple[LIFParams, ...]
    readout: ReadoutParams


class LIFState(NamedTuple):
    """Per-neuron state at step n: synaptic current ``I[n]`` and membrane ``U[n]``, each ``(n,)``."""

    current: jax.Array
    membrane: jax.Array


class LIFOutput(NamedTuple):
    """Trajectories of one layer for one example: ``spikes`` S[n] and ``membrane`` U[n], each
    ``(T, n)``, and the final state (``I[T], U[T]``)."""

    spikes: jax.Array
    membrane: jax.Array
    final_state: LIFState


class SNNOutput(NamedTuple):
    """``logits`` ``(n_out,)``; ``readout`` trace ``U_o[1..T]`` ``(T, n_out)``; ``spikes``:
    tuple of hidden spike trains ``(T, n_l)``."""

    logits: jax.Array
    readout: jax.Array
    spikes: tuple


# --------------------------------------------------------------------------------------
# Single-neuron kernel statistics.
# --------------------------------------------------------------------------------------
def decay(tau, dt=1.0):
    """``b = exp(-dt / tau)``."""
    return jnp.exp(-jnp.asarray(dt) / jnp.asarray(tau))


def psp_moments(tau_mem, tau_syn, dt=1.0):
    """Sum and sum of squares of the discrete post-synaptic potential kernel.

    A unit-weight input spike at step 0 gives ``I[m+1] = b_s^m`` and the free membrane
    ``eps[m+2] = (1 - b_m) (b_m^(m+1) - b_s^(m+1)) / (b_m - b_s)`` (``eps[0] = eps[1] = 0``;
    for ``b_m = b_s = b`` the limit ``(1 - b)(m + 1) b^m``). Closed-form sums::

        eps_bar = sum_n eps[n]   = 1 / (1 - b_s)           (the membrane has unit DC gain)
        eps_hat = sum_n eps[n]^2 = (1-b_m)^2 / (b_m-b_s)^2
                  * [b_m^2/(1-b_m^2) - 2 b_m b_s/(1-b_m b_s) + b_s^2/(1-b_s^2)]
                  (equal decays: (1-b)^2 (1+b^2) / (1-b^2)^3)

    Returns:
      ``(eps_bar, eps_hat)``, arrays of the broadcast shape of the inputs.
    """
    bm = decay(tau_mem, dt)
    bs = decay(tau_syn, dt)
    eps_bar = 1.0 / (1.0 - bs)
    diff = bm - bs
    close = jnp.abs(diff) < 1e-4
    safe = jnp.where(close, 1.0, diff)
    general = ((1.0 - bm) ** 2 / safe**2
               * (bm**2 / (1.0 - bm**2) - 2.0 * bm * bs / (1.0 - bm * bs) + bs**2 / (1.0 - bs**2)))
    b = 0.5 * (bm + bs)
    equal = (1.0 - b) ** 2 * (1.0 + b**2) / (1.0 - b**2) ** 3
    return eps_bar, jnp.where(close, equal, general)


def impulse_response(T: int, config: LIFConfig, *, mem_decay=None):
    """Free-membrane response ``k(n) = eps[n]``, ``n = 0 .. T-1``, to a unit drive at step 0.

    The PSP kernel of :func:`psp_moments` as an array: without reset ``U[t] = sum_s k(t - s)
    d[s]`` for a drive ``d[s] = S_in[s] @ W``, with ``k(0) = k(1) = 0`` (an input at step ``s``
    reaches ``I[s+1]`` and first moves ``U[s+2]``) and, for ``n >= 2``::

        k(n) = (1 - b_m) sum_{p=0}^{n-2} b_m^(n-2-p) b_s^p
             = (1 - b_m) (b_m^(n-1) - b_s^(n-1)) / (b_m - b_s)    ((1-b)(n-1) b^(n-2) if equal)

    ``mem_decay`` replaces ``b_m`` (the leaky readout uses ``b_ro``). Differentiable in the
    config's time constants. Checked against :func:`lif_layer` (reset="none") and
    ``sum_n k(n) = eps_bar`` in ``tests/test_lif_kernels.py::test_impulse_response_matches_lif_layer``.
    """
    bm = decay(config.tau_mem, config.dt) if mem_decay is None else jnp.asarray(mem_decay)
    bs = decay(config.tau_syn, config.dt)
    n = jnp.arange(T, dtype=jnp.result_type(bm, float))
    e = jnp.maximum(n - 1.0, 0.0)
    diff = bm - bs
    close = jnp.abs(diff) < 1e-6
    general = (bm**e - bs**e) / jnp.where(close, 1.0, diff)
    bmid = 0.5 * (bm + bs)
    equal = e * bmid ** jnp.maximum(e - 1.0, 0.0)
    return jnp.where(n >= 2, (1.0 - bm) * jnp.where(close, equal, general), 0.0)


# --------------------------------------------------------------------------------------
# Initialisation.
# --------------------------------------------------------------------------------------
def init_lif(key, n_in: int, n_out: int, *, sigma_w=1.0, recurrent: bool = False,
             sigma_rec=1.0, dtype=jnp.float32) -> LIFParams:
    """NTK-style Gaussian init: ``W ~ N(0, sigma_w^2 / n_in)``, ``V ~ N(0, sigma_rec^2 / n_out)``.

    Args:
      key: PRNG key. n_in, n_out: static sizes. sigma_w, sigma_rec: array-like scales.
      recurrent: static; if False ``w_rec`` is ``None``.
    Returns:
      :class:`LIFParams` with ``w_in`` ``(n_in, n_out)`` and ``w_rec`` ``(n_out, n_out)`` or None.
    """
    k1, k2 = jax.random.split(key)
    w_in = jax.random.normal(k1, (n_in, n_out), dtype) * (jnp.asarray(sigma_w, dtype)
                                                          / float(np.sqrt(n_in)))
    w_rec = None
    if recurrent:
        w_rec = jax.random.normal(k2, (n_out, n_out), dtype) * (
            jnp.asarray(sigma_rec, dtype) / float(np.sqrt(n_out)))
    return LIFParams(w_in, w_rec)


def fluctuation_weight_stats(n_in: int, *, rate, target_mean, target_std, config: LIFConfig):
    """Weight mean/std that put the free membrane at ``(target_mean, target_std)``.

    Discrete-time version of Rossbroich, Gygax & Zenke (2022, "Fluctuation-driven
    initialization for spiking neural network training", Neuromorph. Comput. Eng. 2:044016,
    eqs. for mu_U and sigma_U from Campbell's theorem). Each of the ``n_in`` inputs spikes
    independently with probability ``p = rate * dt`` per step; the free (no-reset) membrane is
    ``U[n] = sum_j w_j sum_m S_j[m] eps[n - m]`` with the PSP kernel of :func:`psp_moments`.
    Over time, for i.i.d. weights of mean ``mu_w`` and std ``sigma_w``::

        E[U]     = n_in p mu_w eps_bar
        Var_t[U] = n_in p (1 - p) (mu_w^2 + sigma_w^2) eps_hat

    (Rossbroich et al.'s continuous-time Poisson form is the ``p -> 0`` limit,
    ``n nu (mu^2 + sigma^2) eps_hat``). Solving for the weights::

        mu_w      = target_mean / (n_in p eps_bar)
        sigma_w^2 = target_std^2 / (n_in p (1 - p) eps_hat) - mu_w^2

    Var_t is the temporal variance of one neuron's membrane averaged over the weight
    distribution; the spread of the per-neuron mean across neurons is not targeted (it is
    ``n_in p^2 eps_bar^2 sigma_w^2``, small for sparse input).

    Args:
      n_in: number of inputs (static). rate: input spike rate per unit time (``rate * dt`` is
        the per-step probability, in (0, 1)). target_mean, target_std: free-membrane targets.
      config: :class:`LIFConfig` (``tau_mem``, ``tau_syn``, ``dt``).
    Returns:
      ``(mu_w, sigma_w)``. Raises ValueError (concrete values) if ``sigma_w^2 < 0``, i.e. the
      requested mean is too large for the requested std.
    """
    p = jnp.asarray(rate) * jnp.asarray(config.dt)
    pc = _concrete(p)
    if pc is not None and (np.any(pc <= 0) or np.any(pc >= 1)):
        raise ValueError(f"rate * dt must be in (0, 1) (a per-step spike probability); got {pc}")
    eps_bar, eps_hat = psp_moments(config.tau_mem, config.tau_syn, config.dt)
    mu_w = jnp.asarray(target_mean) / (n_in * p * eps_bar)
    var_w = jnp.asarray(target_std) ** 2 / (n_in * p * (1.0 - p) * eps_hat) - mu_w**2
    vc = _concrete(var_w)
    if vc is not None and np.any(vc < 0):
        raise ValueError("target_mean is too large for target_std: the weight variance "
                         f"would be {vc} < 0; lower target_mean or raise target_std")
    return mu_w, jnp.sqrt(jnp.maximum(var_w, 0.0))


def init_lif_fluctuation(key, n_in: int, n_out: int, *, rate, config: LIFConfig,
                         target_mean=None, target_std=None, xi=None,
                         recurrent: bool = False, rec_rate=None, rec_fraction=0.1,
                         dtype=jnp.float32) -> LIFParams:
    """Fluctuation-driven init (Rossbroich, Gygax & Zenke 2022), see :func:`fluctuation_weight_stats`.

    Targets: give ``target_mean`` and ``target_std`` of the free membrane, or ``xi``, the
    distance of the threshold from the mean in standard deviations
    (``target_std = (theta - target_mean) / xi``; Rossbroich et al. use ``xi`` of a few).
    Defaults: ``target_mean = 0`` and ``xi = 2``, i.e. ``target_std = theta / 2`` (on randman,
    xi = 2 trained better than 1 or 3).
    With ``recurrent=True`` a fraction ``rec_fraction`` of the membrane variance is assigned to
    zero-mean recurrent weights driven by hidden spikes at ``rec_rate`` (default ``rate``).

    Returns:
      :class:`LIFParams` with ``w_in ~ N(mu_w, sigma_w^2)`` ``(n_in, n_out)`` and optionally
      ``w_rec ~ N(0, sigma_rec^2)`` ``(n_out, n_out)``.
    """
    theta = jnp.asarray(config.threshold)
    mean = 0.0 if target_mean is None else target_mean
    if target_std is None:
        xi = 2.0 if xi is None else xi
        target_std = (theta - mean) / jnp.asarray(xi)
    elif xi is not None:
        raise ValueError("give target_std or xi, not both")
    frac = jnp.asarray(rec_fraction) if recurrent else 0.0
    ff_std = jnp.asarray(target_std) * jnp.sqrt(1.0 - frac)
    mu_w, sigma_w = fluctuation_weight_stats(n_in, rate=rate, target_mean=mean,
                                             target_std=ff_std, config=config)
    k1, k2 = jax.random.split(key)
    w_in = (mu_w + sigma_w * jax.random.normal(k1, (n_in, n_out), dtype)).astype(dtype)
    w_rec = None
    if recurrent:
        rr = rate if rec_rate is None else rec_rate
        _, s_rec = fluctuation_weight_stats(n_out, rate=rr, target_mean=0.0,
                                            target_std=jnp.asarray(target_std) * jnp.sqrt(frac),
                                            config=config)
        w_rec = (s_rec * jax.random.normal(k2, (n_out, n_out), dtype)).astype(dtype)
    return LIFParams(w_in, w_rec)


def init_readout(key, n_in: int, n_out: int, *, sigma_w=1.0, dtype=jnp.float32) -> ReadoutParams:
    """Readout ``W_o ~ N(0, sigma_w^2 / n_in)``, shape ``(n_in, n_out)``."""
    return ReadoutParams(jax.random.normal(key, (n_in, n_out), dtype)
                         * (jnp.asarray(sigma_w, dtype) / float(np.sqrt(n_in))))


def init_snn(key, n_in: int, n_hidden, n_out: int, *, init: str = "fluctuation",
             recurrent: bool = False, config: LIFConfig | None = None, rate=None,
             sigma_w=1.0, sigma_rec=1.0, sigma_out=1.0, target_mean=None, target_std=None,
             xi=None, hidden_rate=0.02, rec_fraction=0.1) -> SNNParams:
    """Parameters of ``n_in -> n_hidden[0] -> ... -> n_out`` (LIF layers, leaky readout).

    Args:
      n_hidden: int or tuple of ints (static). init: ``"gaussian"`` (:func:`init_lif`) or
        ``"fluctuation"`` (:func:`init_lif_fluctuation`; needs ``config`` and the input
        ``rate``; deeper layers assume input rate ``hidden_rate``).
    """
    if init not in ("gaussian", "fluctuation"):
        raise ValueError(f"init must be 'gaussian' or 'fluctuation'; got {init!r}")
    sizes = (n_hidden,) if isinstance(n_hidden, (int, np.integer)) else tuple(n_hidden)
    keys = jax.random.split(key, len(sizes) + 1)
    layers = []
    fan_in = n_in
    for i, n in enumerate(sizes):
        if init == "gaussian":
            layers.append(init_lif(keys[i], fan_in, n, sigma_w=sigma_w, recurrent=recurrent,
                                   sigma_rec=sigma_rec))
        else:
            if config is None or rate is None:
                raise ValueError("init='fluctuation' needs config= and rate= (input spike rate)")
            layers.append(init_lif_fluctuation(
                keys[i], fan_in, n, rate=rate if i == 0 else hidden_rate, config=config,
                target_mean=target_mean, target_std=target_std, xi=xi, recurrent=recurrent,
                rec_rate=hidden_rate, rec_fraction=rec_fraction))
        fan_in = n
    return SNNParams(tuple(layers), init_readout(keys[-1], fan_in, n_out, sigma_w=sigma_out))


# --------------------------------------------------------------------------------------
# Dynamics.
# --------------------------------------------------------------------------------------
def qif_phase(v):
    """QIF phase ``theta = 2 atan(V - 1/2)`` of a membrane value ``V`` (``+-inf -> +-pi``)."""
    return 2.0 * jnp.arctan(jnp.asarray(v) - 0.5)


def qif_voltage(theta):
    """QIF membrane ``V = 1/2 + tan(theta / 2)`` of a phase (inverse of :func:`qif_phase`)."""
    return 0.5 + jnp.tan(jnp.asarray(theta) / 2.0)


def initial_state(n: int, config: LIFConfig, *, dtype=jnp.float32, batch=None) -> LIFState:
    """State at step 0: ``I = 0`` and the neuron at rest, ``U = 0`` (LIF) or ``V = 0``, i.e.
    phase ``theta = 2 atan(-1/2)`` (QIF). Shape ``(n,)`` or ``(batch, n)``."""
    shape = (n,) if batch is None else (batch, n)
    zero = jnp.zeros(shape, dtype)
    if config.neuron == "qif":
        return LIFState(zero, jnp.full(shape, 2.0 * np.arctan(-0.5), dtype))
    return LIFState(zero, zero)


def _rotation(a):
    """``(C, S) = (cos(sqrt a), sin(sqrt a)/sqrt a)`` (``cosh``, ``sinh`` for ``a < 0``), smooth
    through ``a = 0`` (series for ``|a| < 1e-4``) with finite gradients everywhere."""
    small = jnp.abs(a) < 1e-4
    pos = a >= 1e-4
    r = jnp.sqrt(jnp.where(small, 1.0, jnp.abs(a)))
    c = jnp.where(pos, jnp.cos(r), jnp.cosh(jnp.where(pos, 0.0, r)))
    sn = jnp.where(pos, jnp.sin(r), jnp.sinh(jnp.where(pos, 0.0, r))) / r
    return (jnp.where(small, 1.0 - a / 2.0 + a * a / 24.0, c),
            jnp.where(small, 1.0 - a / 6.0 + a * a / 120.0, sn))


def _qif_flow(theta, current, h):
    """Exact QIF phase flow over ``h = dt / tau_mem`` at constant ``current`` (module docstring)."""
    c = current - 0.25
    big_c, big_s = _rotation(c * h * h)
    cs, sn = jnp.cos(theta / 2.0), jnp.sin(theta / 2.0)
    return theta + 2.0 * jnp.arctan2(h * big_s * (c * cs * cs + sn * sn),
                                     big_c + h * big_s * (c - 1.0) * sn * cs)


def lif_step(state: LIFState, drive, config: LIFConfig, *, w_rec=None, spike_fn=None):
    """One LIF step given the feed-forward drive ``d[n] = S_in[n] @ W`` (shape ``(n,)``).

    The single definition of the dynamics (module docstring): :func:`lif_cell`,
    :func:`lif_scan`, :func:`lif_layer`, :func:`snn_apply` (hence training) and the LIF
    kernels (:mod:`sgntk.lif_kernels`, Monte Carlo and finite networks) all run it.

    ``spike_fn``: optional callable ``v -> S`` replacing ``heaviside(v, config.surrogate)``
    on ``v = U[n] - theta`` (the reset then uses its output); ``None`` (default) is the
    plain spike. Used by ASGL's noisy dual-mode spike (:mod:`sgntk.asgl`).

    Returns:
      ``(LIFState(I[n+1], U[n+1]), (S[n], U[n]))``.
    """
    if config.neuron == "qif":
        return _qif_step(state, drive, config, w_rec=w_rec, spike_fn=spike_fn)
    b_syn = decay(config.tau_syn, config.dt)
    b_mem = decay(config.tau_mem, config.dt)
    theta = jnp.asarray(config.threshold)
    i, u = state
    if spike_fn is None:
        s = _sg.heaviside(u - theta, config.surrogate)
    else:
        s = spike_fn(u - theta)
    r = jax.lax.stop_gradient(s) if config.detach_reset else s
    new_i = b_syn * i + drive
    if w_rec is not None:
        new_i = new_i + s @ w_rec
    leak = b_mem * u + (1.0 - b_mem) * i
    if config.reset == "zero":
        new_u = leak * (1.0 - r)
    elif config.reset == "subtract":
        new_u = leak - theta * r
    else:
        new_u = leak
    return LIFState(new_i, new_u), (s, u)


def _qif_step(state: LIFState, drive, config: LIFConfig, *, w_rec=None, spike_fn=None):
    """:func:`lif_step` for ``neuron="qif"``: the membrane is the QIF phase (module docstring);
    ``spike_fn`` acts on ``(theta[n] - theta_peak) / pi``."""
    b_syn = decay(config.tau_syn, config.dt)
    th_peak = qif_phase(config.v_peak)
    th_reset = qif_phase(config.v_reset)
    i, th = state
    v = (th - th_peak) / np.pi
    s = _sg.heaviside(v, config.surrogate) if spike_fn is None else spike_fn(v)
    r = jax.lax.stop_gradient(s) if config.detach_reset else s
    new_i = b_syn * i + drive
    if w_rec is not None:
        new_i = new_i + s @ w_rec
    if config.reset == "zero":
        th_r = th * (1.0 - r) + th_reset * r
    else:  # "subtract"; "none" is rejected by validate()
        th_r = th - (th_peak - th_reset) * r
    h = jnp.asarray(config.dt) / jnp.asarray(config.tau_mem)
    return LIFState(new_i, _qif_flow(th_r, i, h)), (s, th)


def lif_scan(drive, *, config: LIFConfig, w_rec=None, state0: LIFState | None = None) -> LIFOutput:
    """Run :func:`lif_step` over a drive ``(T, n)`` (``lax.scan``; no validation).

    ``drive[n] = S_in[n] @ W (+ bias)`` for all steps at once; ``w_rec`` ``(n, n)`` or None.
    Returns :class:`LIFOutput` (spikes and membrane ``(T, n)``, final state).
    """
    n = drive.shape[1]
    if state0 is None:
        state0 = initial_state(n, config, dtype=drive.dtype)
    def step(st, d):   # the carry keeps the state's dtype (float64 config leaves under x64)
        new, out = lif_step(st, d, config, w_rec=w_rec)
        return jax.tree_util.tree_map(lambda a, b: a.astype(b.dtype), new, st), out

    final, (s, u) = jax.lax.scan(step, state0, drive, unroll=_SCAN_UNROLL)
    return LIFOutput(s, u, final)


def lif_cell(params: LIFParams, state: LIFState, spikes_in, *, config: LIFConfig):
    """One LIF step, to be wrapped in ``jax.lax.scan`` (like ``equinox.nn.GRUCell``).

    Args:
      params: :class:`LIFParams`. state: :class:`LIFState` ``(I[n], U[n])``, each ``(n,)``.
      spikes_in: ``S_in[n]``, shape ``(n_in,)``.
      config: :class:`LIFConfig` (not validated here).
    Returns:
      ``(LIFState(I[n+1], U[n+1]), (S[n], U[n]))``.

    >>> cfg = LIFConfig()
    >>> p = init_lif(jax.random.key(0), 3, 4)
    >>> s0 = LIFState(jnp.zeros(4), jnp.zeros(4))
    >>> final, (spikes, mem) = jax.lax.scan(
    ...     lambda st, x: lif_cell(p, st, x, config=cfg), s0, jnp.ones((5, 3)))
    >>> spikes.shape
    (5, 4)
    """
    return lif_step(state, spikes_in @ params.w_in, config, w_rec=params.w_rec)


def _check_spikes(spikes_in, n_in: int, name="spikes_in"):
    shape = jnp.shape(spikes_in)
    if len(shape) != 2 or shape[1] != n_in:
        raise ValueError(f"{name} must have shape (T, n_in) = (T, {n_in}) for one example "
                         f"(jax.vmap over the batch); got shape {tuple(shape)}")
    if shape[0] < 1:
        raise ValueError(f"{name} must have at least one time step; got shape {tuple(shape)}")


def lif_layer(params: LIFParams, spikes_in, *, config: LIFConfig,
              state0: LIFState | None = None) -> LIFOutput:
    """Run one LIF layer over a spike train (``lax.scan`` over time).

    Args:
      params: :class:`LIFParams` (``w_in`` ``(n_in, n)``, optional ``w_rec`` ``(n, n)``).
      spikes_in: ``(T, n_in)`` input spikes of one example (any float; 0/1 for spikes).
      config: :class:`LIFConfig`; concrete values are validated.
      state0: initial :class:`LIFState`, default zeros.
    Returns:
      :class:`LIFOutput` with ``spikes`` and ``membrane`` ``(T, n)`` (``U[n]`` before the
      reset it triggers) and ``final_state``.
    Raises:
      ValueError: wrong spike-train shape, or a configuration out of range (see
        :meth:`LIFConfig.validate`).
    """
    config.validate()
    _check_spikes(spikes_in, params.w_in.shape[0])
    spikes_in = jnp.asarray(spikes_in)
    dtype = jnp.result_type(params.w_in.dtype, spikes_in.dtype)
    drive = spikes_in.astype(dtype) @ params.w_in  # (T, n), all steps at once
    return lif_scan(drive, config=config, w_rec=params.w_rec, state0=state0)


def readout_layer(params: ReadoutParams, spikes, *, config: LIFConfig):
    """Leaky non-spiking readout trace ``U_o[1..T]``, shape ``(T, n_out)``, for ``spikes`` ``(T, n)``."""
    _check_spikes(spikes, params.w.shape[0], name="spikes")
    b_syn = decay(config.tau_syn, config.dt)
    b_ro = decay(config.tau_readout, config.dt)
    drive = jnp.asarray(spikes) @ params.w
    zero = jnp.zeros((params.w.shape[1],), drive.dtype)

    def step(carry, d):
        i, u = carry
        new_u = b_ro * u + (1.0 - b_ro) * i
        return (b_syn * i + d, new_u), new_u

    _, trace = jax.lax.scan(step, (zero, zero), drive, unroll=_SCAN_UNROLL)
    return trace


def reduce_readout(trace, mode: str = "max"):
    """Reduce a readout trace ``(T, n_out)`` over time: ``"max"``, ``"sum"`` or ``"last"``."""
    if mode == "max":
        return jnp.max(trace, axis=0)
    if mode == "sum":
        return jnp.sum(trace, axis=0)
    if mode == "last":
        return trace[-1]
    raise ValueError(f"readout must be one of {READOUTS}; got {mode!r}")


def snn_apply(params: SNNParams, spikes_in, *, config: LIFConfig, spike_fn=None,
              noise=None) -> SNNOutput:
    """Forward pass of an :class:`SNNParams` network on one example or a whole batch.

    ``spikes_in`` is ``(T, n_in)`` (one example) or ``(B, T, n_in)`` (a batch). A batch runs
    as **one** ``lax.scan`` over time whose carry holds every layer's state for all ``B``
    examples; each step does batched ``(B, n_l) @ (n_l, n_{l+1})`` matmuls for the input
    projection, the deeper layers, the recurrence and the readout (:func:`lif_step` for the
    LIF layers, the readout update of :func:`readout_layer`). The input projection stays inside
    the scan on purpose: hoisting it to one ``(T B, n_in) @ (n_in, n)`` matmul before the scan
    was measured 2-4x slower forward+backward on the CPU (the scan then stacks a ``(T, B, n)``
    cotangent). The same numbers as running :func:`lif_layer`
    layer by layer and :func:`readout_layer` per example (checked to 1e-12 in float64 in
    ``tests/test_lif.py``), several times faster than ``jax.vmap`` of that route
    (``benchmarks/bench_lif.py``). ``jax.vmap(snn_apply)`` over single examples still works
    (it batches the same scan).

    Optional hook (default: the plain SNN): ``spike_fn(layer, v, noise_t)`` replaces the
    spike of hidden layer ``layer`` (see :func:`lif_step`); ``noise`` is a tuple with one array
    per hidden layer, ``(T, n_l)`` / ``(B, T, n_l)``, whose step-``n`` slice is passed as
    ``noise_t`` (``None`` if ``noise`` is None). ASGL's random spike masks use it
    (:mod:`sgntk.asgl`).

    Returns:
      :class:`SNNOutput`: ``logits`` ``(n_out,)`` / ``(B, n_out)`` reduced with
      ``config.readout``, ``readout`` trace ``(T, n_out)`` / ``(B, T, n_out)``, ``spikes`` a
      tuple of ``(T, n_l)`` / ``(B, T, n_l)``.
    Raises:
      ValueError: wrong spike-train shape, or a configuration out of range.
    """
    config.validate()
    n_in = params.hidden[0].w_in.shape[0] if params.hidden else params.readout.w.shape[0]
    x = jnp.asarray(spikes_in)
    single = x.ndim == 2
    if single:
        _check_spikes(x, n_in)
        x = x[None]
    elif x.ndim != 3 or x.shape[2] != n_in or x.shape[1] < 1:
        raise ValueError(f"spikes_in must have shape (T, n_in) = (T, {n_in}) for one example "
                         f"or (B, T, n_in) for a batch; got shape {tuple(x.shape)}")
    if noise is not None:
        noise = tuple(jnp.asarray(z) for z in noise)
        if single:
            noise = tuple(z[None] for z in noise)
    out = _snn_scan(params, x, config, spike_fn, noise)
    if single:
        out = jax.tree_util.tree_map(lambda a: a[0], out)
    return out


def _snn_scan(params: SNNParams, x, config: LIFConfig, spike_fn=None, noise=None) -> SNNOutput:
    """:func:`snn_apply` on a batch ``x`` ``(B, T, n_in)``: one scan over time."""
    first = params.hidden[0].w_in if params.hidden else params.readout.w
    # every parameter's dtype (a float64 readout with float32 hidden weights would change the
    # scan carry's dtype)
    dtype = jnp.result_type(first.dtype, x.dtype,
                            *(v.dtype for v in jax.tree_util.tree_leaves(params)))
    xs = jnp.swapaxes(x.astype(dtype), 0, 1)  # (T, B, n_in), time-major for the scan
    batch = xs.shape[1]
    b_syn = decay(config.tau_syn, config.dt)
    b_ro = decay(config.tau_readout, config.dt)
    zeros = lambda n: jnp.zeros((batch, n), dtype)  # noqa: E731
    states0 = tuple(initial_state(p.w_in.shape[1], config, dtype=dtype, batch=batch)
                    for p in params.hidden)
    n_out = params.readout.w.shape[1]
    ro0 = (zeros(n_out), zeros(n_out))

    def step(carry, inputs):
        x_t, z_t = inputs
        states, (i_o, u_o) = carry
        new_states, spikes = [], []
        for layer, (p, st) in enumerate(zip(params.hidden, states)):
            d = (spikes[-1] if spikes else x_t) @ p.w_in
            fn = None if spike_fn is None else (
                lambda v, _l=layer: spike_fn(_l, v, None if z_t is None else z_t[_l]))
            st, (s, _) = lif_step(st, d, config, w_rec=p.w_rec, spike_fn=fn)
            new_states.append(st)
            spikes.append(s)
        # readout (readout_layer's update): U_o[n+1] = b_ro U_o[n] + (1 - b_ro) I_o[n],
        # I_o[n+1] = b_syn I_o[n] + S[n] @ W_o
        ro_drive = (spikes[-1] if spikes else x_t) @ params.readout.w
        new_u = b_ro * u_o + (1.0 - b_ro) * i_o
        return (tuple(new_states), (b_syn * i_o + ro_drive, new_u)), (tuple(spikes), new_u)

    zs = None if noise is None else tuple(jnp.swapaxes(z, 0, 1) for z in noise)  # (T, B, n_l)
    _, (spikes, trace) = jax.lax.scan(step, (states0, ro0), (xs, zs), unroll=_BATCH_SCAN_UNROLL)
    trace = jnp.swapaxes(trace, 0, 1)  # (B, T, n_out)
    spikes = tuple(jnp.swapaxes(s, 0, 1) for s in spikes)
    return SNNOutput(jax.vmap(lambda tr: reduce_readout(tr, config.readout))(trace), trace,
                     spikes)
