"""Kernels of LIF networks: analytic (no reset), Monte Carlo (any reset), empirical.

One hidden LIF layer is described below; ``depth=L`` (every kernel route: :func:`lif_kernels`,
:func:`lif_kernel_fn`, :func:`lif_kernels_mc`, :func:`lif_kernels_networks`; finite networks
from :func:`init_lif_deep`) stacks ``L`` feed-forward LIF layers of the same kind, layer
``l + 1`` driven by ``sigma_w / sqrt(N) W S^l[s] + sigma_b b`` (GitHub issue 9; the recursion
over layers is written out in :mod:`.analytic`, the layer-by-layer mean field in
:mod:`.monte_carlo`).

Network (NTK parameterisation; GitHub issue 4). ``P`` input spike trains ``x[s]`` in
``R^{n_in}``, ``s = 0 .. T-1``, one hidden layer of ``N`` LIF neurons run by
:func:`sgntk.lif.lif_scan` (the one step :func:`sgntk.lif.lif_step` that simulation and training
use: synaptic current, leaky membrane, reset variants, ``H(0) = 0``), all raw parameters iid
``N(0, 1)``::

    d_i[s]  = sigma_w / sqrt(n_in) sum_k W_ki x_k[s] + sigma_b b_i          (input current drive)
    I[s+1]  = b_syn I[s] + d[s] (+ sigma_rec / sqrt(N) S[s] @ V)           (optional recurrence)
    U[s+1]  = b_mem U[s] + (1 - b_mem) I[s]   (reset: none / to zero / by subtraction)
    S[t]    = H(U[t] - theta)
    y(x)    = sum_t kappa_t  sigma_o / sqrt(N)  sum_i w_i S_i[t]

The readout must be LINEAR in the per-step spikes: the temporal readout weights ``kappa``
(keyword ``readout_weights=``; ``kappa=`` is deprecated) are ones ("sum"), one-hot at
``T - 1`` ("last") or any fixed vector (:func:`readout_weights`, which also turns
:func:`sgntk.lif.readout_layer`'s leaky readout into weights). Max-over-time is not
kernel-compatible: the winning step depends on the random initialisation, so the
infinite-width kernel is not deterministic; asking for it raises ``ValueError``.

Kernels (:class:`LIFKernel`), all ``(n1, n2)`` between ``x1`` and ``x2``:

* ``nngp``    -- output covariance ``E[y(x) y(x')]`` (empirical: one sample ``y(x) y(x')``);
* ``sgntk``   -- ``J(x) J~(x')^T``: *true* spike derivative at ``x`` (evaluation point) and
  surrogate ``psi'`` at ``x'`` (training point); asymmetric;
* ``sg_gram`` -- ``J~(x) J~(x')^T`` (surrogate on both sides).

The true derivative of the Heaviside spike is a Dirac delta; finite networks and Monte Carlo
use the smoothed ``Theta_m(z) = (1 + erf(m z)) / 2`` of sharpness ``m = spike_sharpness``
(``m=`` is deprecated), ``Theta_m'(z) = m / sqrt(pi) exp(-m^2 z^2)``
(:func:`true_spike_derivative`), with a custom JVP so that autodiff gives exactly ``J`` and
``J~`` (forward values are the exact Heaviside in both). The analytic kernel takes
``spike_sharpness=None`` (the delta itself) or the same finite ``m`` (exact: smoothing the delta
by a Gaussian adds ``1 / (2 m^2)`` to the variance of ``u``), so the three routes can be
compared without smoothing bias. The smoothing error of ``m`` against the exact delta is
O(1/m^2) off the diagonal but O(sharpness/m) on it (``x = x'``, ``t = t'``: the delta puts
``v`` exactly at the surrogate's kink for kinked shapes such as fast_sigmoid).

Submodules (one job each):

* :mod:`.analytic` -- no reset: the membrane is Gaussian; orthant probabilities, mixed and
  surrogate-pair expectations; :func:`lif_kernel_fn` (pure, jit/vmap/grad-able, finite
  derivatives on the diagonal) and :func:`lif_kernels` (validated entry point).
* :mod:`.monte_carlo` -- :func:`lif_kernels_mc`, mean-field Monte Carlo for any reset
  (layer by layer for ``depth > 1``).
* :mod:`.empirical` -- :func:`lif_empirical`, :func:`lif_kernels_networks`: finite networks
  (:class:`LIFNetParams` one layer, optionally recurrent; :class:`LIFDeepParams` deep).
* :mod:`._fast` -- the elementwise pieces of the analytic route, restructured for throughput.

The impulse response ``k(n)`` of the free membrane is :func:`sgntk.lif.impulse_response`.
Tests: ``tests/test_lif_kernels.py``, ``tests/test_lif_gradients.py``,
``tests/test_lif_kernels_deep.py``. Demonstrations: ``experiments/lif_kernels.py``,
``experiments/lif_depth/run.py``. Benchmark: ``benchmarks/bench_lif_kernels.py``.
"""
from ..lif import impulse_response
from ._common import (DEFAULT_M, DEFAULT_SPIKE_SHARPNESS, KERNELS, LIFKernel, readout_weights,
                      true_spike_derivative)
from .analytic import (bvn_upper, lif_kernel_fn, lif_kernels, membrane_covariance,
                       mixed_expectation, orthant_probability, surrogate_pair_expectation)
from .empirical import (LIFDeepParams, LIFNetParams, init_lif_deep, init_lif_net, lif_empirical,
                        lif_kernels_networks)
from .monte_carlo import lif_kernels_mc

__all__ = [
    "KERNELS",
    "LIFKernel",
    "LIFNetParams",
    "LIFDeepParams",
    "DEFAULT_SPIKE_SHARPNESS",
    "DEFAULT_M",
    "true_spike_derivative",
    "impulse_response",
    "readout_weights",
    "membrane_covariance",
    "bvn_upper",
    "orthant_probability",
    "mixed_expectation",
    "surrogate_pair_expectation",
    "init_lif_net",
    "init_lif_deep",
    "lif_empirical",
    "lif_kernel_fn",
    "lif_kernels",
    "lif_kernels_mc",
    "lif_kernels_networks",
]
