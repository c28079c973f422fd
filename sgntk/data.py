"""Data sets: random manifolds (spiking), the unit-circle regression task, latency-coded digits.

* :func:`randman` -- the random-manifold spike-timing task of Zenke & Vogels (2021, Neural
  Computation 33:899), written from the published description (reference notes section 6).
* :func:`unit_circle` -- the regression data of Eilers, Memmesheimer & Goedeke (NeurIPS 2024).
* :func:`latency_digits` -- sklearn's 8x8 digits as one latency-coded spike per bright pixel
  (needs the optional dependency scikit-learn; its data ship inside the wheel, no download).

All generators are seeded numpy (``np.random.default_rng(seed)``): same seed, same arrays.
Spike trains are dense float32 arrays ``(N, T, units)`` of 0/1, one example per row, ready for
``jax.vmap(sgntk.lif.snn_apply, ...)``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "SpikeData",
    "Split",
    "randman_function",
    "randman",
    "split",
    "unit_circle",
    "circle_target",
    "latency_digits",
]


class SpikeData(NamedTuple):
    """``spikes`` ``(N, T, units)`` float32 0/1 and integer ``labels`` ``(N,)``."""

    spikes: np.ndarray
    labels: np.ndarray


class Split(NamedTuple):
    train: SpikeData
    val: SpikeData
    test: SpikeData


# --------------------------------------------------------------------------------------
# Random manifolds.
# --------------------------------------------------------------------------------------
def _cutoff(alpha: float, prec: float, max_k: int) -> int:
    return int(min(np.ceil(prec ** (-1.0 / alpha)), max_k))


def randman_function(rng: np.random.Generator, nb_units: int, dim_manifold: int, *,
                     alpha: float = 1.0, prec: float = 1e-3, max_k: int = 1000):
    """Draw one random smooth map ``[0, 1]^D -> R^nb_units``; returns ``f(x)``, ``x`` ``(N, D)``.

    ``f_i(x) = prod_{d=1..D} sum_{k=1..K} s_k A_idk sin(2 pi (k x_d B_idk + C_idk))`` with
    ``A, B, C ~ U(0, 1)`` i.i.d. and spectrum ``s_k = k^(-alpha)``, ``k = 1..K``, truncated at
    ``K = min(ceil(prec^(-1/alpha)), max_k)`` (amplitudes below ``prec``; K = 1000 for
    alpha = 1). Note: Zenke's reference implementation (github.com/fzenke/randman) indexes the
    frequency from 0 (``sin(2 pi (i x B_i + C_i))`` with ``s_i = (i + 1)^-alpha``, i.e. one
    constant term); here frequency and spectrum share ``k = 1..K`` as in the published formula.
    """
    K = _cutoff(alpha, prec, max_k)
    shape = (nb_units, dim_manifold, K)
    amp = rng.random(shape)
    freq = rng.random(shape)
    phase = rng.random(shape)
    k = np.arange(1, K + 1, dtype=np.float64)
    spect = k ** (-float(alpha))
    amp_s = amp * spect  # (units, D, K)

    def f(x):
        x = np.atleast_2d(np.asarray(x, np.float64))
        if x.shape[1] != dim_manifold:
            raise ValueError(f"x must have shape (N, dim_manifold={dim_manifold}); got {x.shape}")
        out = np.ones((x.shape[0], nb_units))
        chunk = max(1, 2_000_000 // (nb_units * K))
        for d in range(dim_manifold):
            vals = np.empty((x.shape[0], nb_units))
            for s in range(0, x.shape[0], chunk):
                xd = x[s:s + chunk, d][:, None, None]  # (n, 1, 1)
                arg = 2.0 * np.pi * (k * freq[None, :, d, :] * xd + phase[None, :, d, :])
                vals[s:s + chunk] = np.einsum("nuk,uk->nu", np.sin(arg), amp_s[:, d, :])
            out *= vals
        return out

    return f


def randman(*, nb_classes: int = 10, nb_units: int = 20, nb_steps: int = 100,
            dim_manifold: int = 1, alpha: float = 1.0, nb_samples: int = 1000,
            step_frac: float = 1.0, seed: int = 0, shuffle: bool = True,
            prec: float = 1e-3, max_k: int = 1000) -> SpikeData:
    """Random-manifold classification data: one spike per input unit per sample.

    Each class ``c`` has its own random smooth map ``f^c`` (:func:`randman_function`); a sample
    of class ``c`` is ``f^c(x)`` at a uniform point ``x ~ U([0, 1]^D)``. Each unit's values are
    min-max scaled over the class's samples to ``[0, 1]`` and mapped to a spike time
    ``t = min(floor(y * nb_steps * step_frac), nb_steps - 1)``, so unit ``i`` fires exactly once
    (at step 0 for its smallest value, at ``nb_steps*step_frac - 1`` for its largest).

    Args:
      nb_classes, nb_units, nb_steps, dim_manifold (D), alpha (spectrum exponent),
      nb_samples (per class), step_frac (fraction of the window used for spike times),
      seed, shuffle (permute examples across classes).
    Returns:
      :class:`SpikeData` with ``spikes`` ``(nb_classes * nb_samples, nb_steps, nb_units)``
      float32 and ``labels`` int32.
    """
    for name, v in (("nb_classes", nb_classes), ("nb_units", nb_units), ("nb_steps", nb_steps),
                    ("dim_manifold", dim_manifold), ("nb_samples", nb_samples)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer; got {v!r}")
    if not 0.0 < step_frac <= 1.0:
        raise ValueError(f"step_frac must be in (0, 1]; got {step_frac!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0; got {alpha!r}")
    rng = np.random.default_rng(seed)
    spikes = np.zeros((nb_classes * nb_samples, nb_steps, nb_units), np.float32)
    labels = np.repeat(np.arange(nb_classes, dtype=np.int32), nb_samples)
    units = np.arange(nb_units)
    last = nb_steps * step_frac
    for c in range(nb_classes):
        f = randman_function(rng, nb_units, dim_manifold, alpha=alpha, prec=prec, max_k=max_k)
        x = rng.random((nb_samples, dim_manifold))
        y = f(x)
        lo, hi = y.min(axis=0), y.max(axis=0)
        y = (y - lo) / np.where(hi > lo, hi - lo, 1.0)
        t = np.minimum(np.floor(y * last).astype(np.int64), int(np.ceil(last)) - 1)
        t = np.minimum(t, nb_steps - 1)
        rows = c * nb_samples + np.arange(nb_samples)[:, None]
        spikes[rows, t, units[None, :]] = 1.0
    if shuffle:
        perm = rng.permutation(len(labels))
        spikes, labels = spikes[perm], labels[perm]
    return SpikeData(spikes, labels)


def split(data: SpikeData, fractions=(0.8, 0.1, 0.1), *, seed: int = 0,
          stratify: bool = True) -> Split:
    """Train/val/test split (default 80/10/10), stratified by label, seeded.

    With ``stratify`` each class is split separately (so 1000 samples per class give exactly
    800/100/100 per class); each part is then shuffled.
    """
    fr = np.asarray(fractions, float)
    if fr.shape != (3,) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1; got {fractions!r}")
    rng = np.random.default_rng(seed)
    groups = ([np.flatnonzero(data.labels == c) for c in np.unique(data.labels)]
              if stratify else [np.arange(len(data.labels))])
    parts = [[], [], []]
    for idx in groups:
        idx = rng.permutation(idx)
        n_tr = int(round(fr[0] * len(idx)))
        n_va = int(round(fr[1] * len(idx)))
        parts[0].append(idx[:n_tr])
        parts[1].append(idx[n_tr:n_tr + n_va])
        parts[2].append(idx[n_tr + n_va:])
    out = []
    for p in parts:
        p = rng.permutation(np.concatenate(p))
        out.append(SpikeData(data.spikes[p], data.labels[p]))
    return Split(*out)


# --------------------------------------------------------------------------------------
# Unit-circle regression (Eilers, Memmesheimer & Goedeke 2024).
# --------------------------------------------------------------------------------------
def circle_target(x):
    """``g(x) = 4 x1 x2^2 - 0.8 x1^3 + 1.2 x2^2 - 0.8 x1^2 x2`` for ``x`` ``(..., 2)``."""
    x = np.asarray(x)
    x1, x2 = x[..., 0], x[..., 1]
    return 4 * x1 * x2**2 - 0.8 * x1**3 + 1.2 * x2**2 - 0.8 * x1**2 * x2


def unit_circle(n_train: int = 15, n_test: int = 100):
    """Unit-circle regression data (reference notes section 4).

    Test angles ``a_i = 2 pi i / n_test - pi``, ``i = 0..n_test-1``; training angles are
    **evenly spaced**, ``a_j = 2 pi j / n_train - pi``. The paper trains on fixed angles its
    code drew once (Figs. 1-2) and on 15 test-grid points (Fig. 3); those sets are
    ``PAPER_FIG12_ANGLES`` / ``PAPER_FIG3_INDICES`` in ``experiments/eilers2024/study.py``
    (used by ``sgntk reproduce eilers2024 --paper``); this function keeps the evenly spaced
    option (``--even-angles``). Inputs are
    ``x = (sin a, cos a)`` (the paper's convention, reference notes section 1), targets :func:`circle_target` (no noise).

    Returns:
      ``(x_train (n_train, 2), y_train (n_train,), x_test (n_test, 2), y_test (n_test,),
      a_train, a_test)`` as float64 numpy arrays, in a dict with those keys.
    """
    a_te = 2 * np.pi * np.arange(n_test) / n_test - np.pi
    a_tr = 2 * np.pi * np.arange(n_train) / n_train - np.pi
    x_tr = np.stack([np.sin(a_tr), np.cos(a_tr)], -1)
    x_te = np.stack([np.sin(a_te), np.cos(a_te)], -1)
    return dict(x_train=x_tr, y_train=circle_target(x_tr), x_test=x_te,
                y_test=circle_target(x_te), a_train=a_tr, a_test=a_te)


# --------------------------------------------------------------------------------------
# Latency-coded digits.
# --------------------------------------------------------------------------------------
def latency_digits(*, nb_steps: int = 100, step_frac: float = 0.5,
                   skip_zero: bool = True) -> SpikeData:
    """sklearn's 8x8 digits (1797 images, 10 classes) as 64 latency-coded input units.

    Pixel value ``v`` in 0..16 fires one spike at ``t = round((1 - v/16) * (nb_steps*step_frac - 1))``
    (brighter = earlier); pixels with ``v = 0`` stay silent if ``skip_zero``. Requires
    scikit-learn (optional; ``pip install scikit-learn``), whose wheel bundles the data.

    Returns:
      :class:`SpikeData` ``(1797, nb_steps, 64)``; order as in ``load_digits``.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on environment
        raise ImportError("latency_digits needs scikit-learn: pip install scikit-learn") from e
    if not 0.0 < step_frac <= 1.0:
        raise ValueError(f"step_frac must be in (0, 1]; got {step_frac!r}")
    d = load_digits()
    v = d.data.astype(np.float64) / 16.0  # (N, 64)
    t_max = max(int(nb_steps * step_frac) - 1, 0)
    t = np.rint((1.0 - v) * t_max).astype(np.int64)
    spikes = np.zeros((v.shape[0], nb_steps, 64), np.float32)
    n_idx, u_idx = np.nonzero(v > 0 if skip_zero else np.ones_like(v, bool))
    spikes[n_idx, t[n_idx, u_idx], u_idx] = 1.0
    return SpikeData(spikes, d.target.astype(np.int32))
