r"""Choose a surrogate and an initialisation before training, from the SG-NTK.

For every point of a grid (surrogate shape x sharpness x dampening x tail x weight scale x
threshold x reset x recurrence) :func:`evaluate_point` computes the diagnostics of
:mod:`sgntk.diagnostics` on a data sample and one **score**; :func:`run_grid` runs a grid
resumably (:mod:`sgntk.runner`, one JSON file per point, progress bar) and :func:`ranked`
/ :func:`format_table` / :func:`recommend` turn it into a ranked table with a recommendation
and the reasons. ``sgntk select`` is the command line (:func:`main`).

The score (higher is better; no fitted weights)
------------------------------------------------
``score = log10(lambda_min(K) / mean diag K) - |log10 backward gain|``: how many decades the
slowest mode of the linearised SGL dynamics under the sample's (layer-normalised) kernel ``K``
is below its typical mode (``lambda_min`` is the smallest real part of the eigenvalues; a
non-positive one scores -300, the worst), minus how many decades the surrogate gradient grows
or shrinks over the time window or the depth (:func:`sgntk.diagnostics.lif_backward_gain`,
``mlp_backward_gain``; taken as 0 with ``backward=False``). A kernel that is well conditioned
and a backward pass that neither explodes nor vanishes score near 0. This score was fixed
(``experiments/selection/validation.py``, ``PREREGISTERED["conditioning"]``) before a blind
grid of 40 new LIF configurations was trained on two tasks and is judged there (README
"Choosing a surrogate"); the earlier score below ranked worse on every validation grid and is
kept as ``fit_score``.

``fit_score = kernel cross-validated R^2`` of the linearised SGL dynamics: the sample's
SG-NTK ``I(X, X)`` (true derivative on the evaluation side, surrogate on the training side) is
split into ``folds`` folds (for LIF networks the default kernel is the surrogate Gram
``J~ J~^T`` instead, ``kernel="sg_gram"``: through a differentiable reset the true-derivative
side of the SG-NTK is a Dirac delta in the backward chain and its finite-network estimate is
not usable; chosen on half A of the validation grid); on each, the dynamics ``f <- f - eta I(X_tr, X_tr)(f - Y)`` run for
``train_steps`` steps at ``eta = lr_fraction * eta_max`` (:func:`sgntk.diagnostics.max_stable_learning_rate`;
``1 / ||I||`` if no rate is stable), and the held-out fold is predicted through
``I(X_te, X_tr)`` (:func:`sgntk.diagnostics.kernel_regression`); the score is the mean
held-out ``R^2 = 1 - MSE / mean(Y^2)`` (targets centred; one-hot centred for class labels, whose
held-out argmax accuracy is reported as ``cv_accuracy``; the first version of the score used that
accuracy, which moves in steps of 1/fold size and ties on small samples). It therefore rewards
kernels that *train* (spectrum: positive real
parts, conditioning, alignment with the targets) *and generalise*, and it is scale-free: a
surrogate multiplied by a constant gives the same ``fit_score`` (the score's kernel part is
scale-free too; its backward-gain part is not, by design).

``optimizer="adam"`` (default; what spiking networks are trained with): Adam divides every
parameter's update by its gradient's RMS, so the kernel that governs the first steps is
approximately the sum of the per-layer kernels, each normalised (here by its mean diagonal):
the readout-weight part (the NNGP ``S``) and the hidden part ``I - S``. With
``optimizer="sgd"`` the SG-NTK is used as it is.

Reported beside it (in the table and JSON, not in the score): the kernel-predicted relative
training loss after ``train_steps`` steps (``predicted_loss``), the spectrum
(:class:`sgntk.diagnostics.Spectrum`), the surrogate backward gain over the time window or the
depth (``log10``), and the **Herranz-Celotti & Rouat baseline**: their condition that the
one-step backward variance equal 1 (:func:`sgntk.diagnostics.herranz_celotti_gain`), as the
score ``hc_score = -|log10 gain|``.

How far to trust it: ``experiments/selection/validation.py`` trains the grid points with
``sgntk.lif_train``'s loss and reports rank correlations (README section "Choosing a
surrogate"). The kernel describes the early, linearised phase of training at initialisation;
it knows nothing of the learning-rate schedule, the max-over-time readout used for training
(the kernel uses a sum readout), or activity regularisers.

Tests: ``tests/test_select.py``.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import diagnostics as D
from . import lif as _lif
from . import surrogates as _sg
from ._x64 import float64

__all__ = ["LIFNetwork", "MLPNetwork", "evaluate_point", "expand_grid", "run_grid", "ranked",
           "format_table", "recommend", "ranking_record", "validation_table", "format_validation",
           "spearman", "bootstrap_spearman", "SCORE_DOC", "DEFAULT_GRID", "main"]

SCORE_DOC = ("score = log10(smallest eigenvalue / mean diagonal) of the sample's kernel (layers "
             "normalised for Adam) - |log10 backward gain| over the window/depth; higher is "
             "better (0: well conditioned, no vanishing or exploding surrogate gradient); "
             "fit R^2 = held-out R^2 of the linearised SGL dynamics")

#: The default grid of ``sgntk select`` (200 points for a LIF layer).
DEFAULT_GRID = dict(shape=["fast_sigmoid", "triangular", "gaussian", "sigmoid", "cauchy"],
                    sharpness=[0.5, 5.0], dampening=[1.0, 3.0],
                    sigma_w=[2.5, 5.0, 10.0, 20.0, 40.0],
                    reset=["zero"], detach_reset=[True, False], recurrent=[False],
                    threshold=[1.0], tail=[None])


# ------------------------------------------------------------------------------ networks
class _FromPoint:
    @classmethod
    def from_point(cls, point: Mapping, **kw):
        """The network of a grid point: the point's keys that are fields of ``cls``, plus ``kw``."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in point.items() if k in names}, **kw)


@dataclasses.dataclass(frozen=True)
class LIFNetwork(_FromPoint):
    """A one-hidden-layer LIF network (:mod:`sgntk.lif`) and how its kernels are estimated.

    Time constants, threshold, reset (``"zero" | "subtract" | "none"``), detached or
    differentiable reset, recurrence with ``sigma_rec``, input weight scale ``sigma_w`` (NTK
    parameterisation, as ``sgntk.lif.init_lif``). Kernels: finite-network Monte Carlo
    (:func:`sgntk.lif_kernels.lif_kernels_networks`, ``n_networks`` networks of ``width``,
    sum readout), the analytic kernel when ``reset="none"`` and not recurrent.
    """

    tau_mem: float = 10.0
    tau_syn: float = 5.0
    dt: float = 1.0
    threshold: float = 1.0
    reset: str = "zero"
    detach_reset: bool = True
    recurrent: bool = False
    sigma_w: float = 10.0
    sigma_rec: float = 1.0
    width: int = 256
    n_networks: int = 8

    kind = "lif"
    #: the kernel of the score: the surrogate Gram, chosen on half A of the validation grid (the
    #: SG-NTK's true-derivative side is ill-defined through a differentiable reset)
    default_kernel = "sg_gram"

    def config(self, surrogate: _sg.Surrogate) -> _lif.LIFConfig:
        return _lif.LIFConfig(tau_mem=self.tau_mem, tau_syn=self.tau_syn, dt=self.dt,
                              threshold=self.threshold, surrogate=surrogate, reset=self.reset,
                              detach_reset=self.detach_reset, readout="sum").validate()

    @float64
    def kernels(self, x, surrogate, *, seed: int = 0):
        """``(nngp, sgntk, sg_gram)`` on ``x`` ``(P, T, n_in)`` (float64 numpy)."""
        from . import lif_kernels as LK

        cfg = self.config(surrogate)
        if self.reset == "none" and not self.recurrent:
            k = LK.lif_kernels(x, config=cfg, readout_weights="sum", sigma_w=self.sigma_w,
                               which=("nngp", "sgntk", "sg_gram"))
            return np.asarray(k.nngp), np.asarray(k.sgntk), np.asarray(k.sg_gram)
        # Mean over networks (LK.lif_kernels_networks: its compiled function is reused across
        # grid points with the same static fields). The NNGP estimate is the readout-weight
        # Gram (1/N) sum_i c_i(x) c_i(x'), c_i = sum_t kappa_t S_i[t] (nngp_estimator=
        # "conditional"; the one-sample y y^T would be far noisier), from the same networks.
        k = LK.lif_kernels_networks(x, config=cfg, width=self.width, n_networks=self.n_networks,
                                    readout_weights="sum", recurrent=self.recurrent,
                                    sigma_w=self.sigma_w, sigma_rec=self.sigma_rec, seed=seed,
                                    batch_size=2, which=("nngp", "sgntk", "sg_gram"),
                                    nngp_estimator="conditional", progress=False)
        return np.asarray(k.mean.nngp), np.asarray(k.mean.sgntk), np.asarray(k.mean.sg_gram)

    def backward(self, x, surrogate, *, seed: int = 0) -> D.BackwardGain:
        return D.lif_backward_gain(x[:20], config=self.config(surrogate), sigma_w=self.sigma_w,
                                   recurrent=self.recurrent, sigma_rec=self.sigma_rec,
                                   width=min(self.width, 128), n_networks=4, seed=seed)

    def hc_gain(self, x, surrogate) -> float:
        return float(D.herranz_celotti_gain(x, config=self.config(surrogate),
                                            sigma_w=self.sigma_w, recurrent=self.recurrent,
                                            sigma_rec=self.sigma_rec, width=self.width))


@dataclasses.dataclass(frozen=True)
class MLPNetwork(_FromPoint):
    """A sign/step/erf MLP of any depth (:func:`sgntk.kernels.mlp`, analytic kernels)."""

    depth: int = 2
    activation: str = "sign"
    m: Optional[float] = None
    sigma_w: float = 1.0
    sigma_b: float = 0.1

    kind = "mlp"
    default_kernel = "sgntk"

    def kernels(self, x, surrogate, *, seed: int = 0):
        from . import kernels as K

        k = K.mlp(x, depth=self.depth, activation=self.activation, surrogate=surrogate,
                  sigma_w=self.sigma_w, sigma_b=self.sigma_b, m=self.m,
                  which=("nngp", "sgntk", "sg_gram"))
        return np.asarray(k.nngp), np.asarray(k.sgntk), np.asarray(k.sg_gram)

    def backward(self, x, surrogate, *, seed: int = 0) -> D.BackwardGain:
        with jax.enable_x64(True):
            return D.mlp_backward_gain(jnp.asarray(x), depth=self.depth,
                                       activation=self.activation, surrogate=surrogate,
                                       sigma_w=self.sigma_w, sigma_b=self.sigma_b,
                                       m=1.0 if self.m is None else self.m)

    def hc_gain(self, x, surrogate) -> float:
        # the Glorot-like condition for a feed-forward stack: chi per layer = 1
        return float(jnp.mean(self.backward(x, surrogate).chi))


def surrogate_of(point: Mapping) -> _sg.Surrogate:
    """The :class:`~sgntk.surrogates.Surrogate` of a grid point (shape, sharpness, dampening,
    tail)."""
    tail = point.get("tail")
    return _sg.get(point["shape"], sharpness=point.get("sharpness", 1.0),
                   dampening=point.get("dampening", 1.0),
                   tail=tail if point["shape"] == "q_pseudo_spike" else None)


# ------------------------------------------------------------------------------ one point
def _adam_kernel(nngp, sgntk):
    """Per-layer normalised kernel (readout part S and hidden part I - S, mean diagonal 1)."""
    hidden = sgntk - nngp
    d_r = np.mean(np.abs(np.diag(nngp)))
    d_h = np.mean(np.abs(np.diag(hidden)))
    out = np.zeros_like(sgntk)
    if d_r > 0:
        out = out + nngp / d_r
    if d_h > 1e-12 * max(d_r, 1e-300):
        out = out + hidden / d_h
    return out


def _targets(y):
    y = np.asarray(y)
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        return D.one_hot_targets(y), True
    y = y.astype(np.float64)
    y = y[:, None] if y.ndim == 1 else y
    return y - y.mean(0), False


@float64
def _cv_score(k, y, classify, *, folds, train_steps, lr_fraction):
    """k-fold held-out ``(R^2, accuracy)`` of the linearised dynamics (module docstring)."""
    n = k.shape[0]
    idx = np.arange(n)
    r2, accs = [], []
    for f in range(folds):
        te = idx[f::folds]
        tr = np.setdiff1d(idx, te)
        ktt = jnp.asarray(k[np.ix_(tr, tr)])
        eta = float(D.max_stable_learning_rate(ktt))
        norm = float(jnp.linalg.norm(ktt, 2))
        lr = lr_fraction * (eta if eta > 0 else 1.0 / max(norm, 1e-300))
        kr = D.kernel_regression(jnp.asarray(k[np.ix_(te, tr)]), ktt, y[tr], y[te],
                                 steps=train_steps, learning_rate=lr)
        r2.append(1.0 - float(kr.mse) / max(float(np.mean(y[te] ** 2)), 1e-300))
        accs.append(float(kr.accuracy) if classify else float("nan"))
    return float(np.mean(r2)), float(np.mean(accs))


@float64
def evaluate_point(net, x, y, *, surrogate=None, point: Optional[Mapping] = None,
                   optimizer: str = "adam", train_steps: int = 100, lr_fraction: float = 0.5,
                   folds: int = 4, backward: bool = True, kernel: Optional[str] = None,
                   seed: int = 0, **net_overrides) -> dict:
    """Diagnostics and score of one configuration on the sample ``(x, y)``.

    Args:
      net: :class:`LIFNetwork` or :class:`MLPNetwork` (any object with ``kernels(x, surrogate)
        -> (nngp, sgntk)``, ``backward(x, surrogate)`` and ``hc_gain(x, surrogate)``).
      x: the sample (``(P, T, n_in)`` spike trains or ``(P, d)`` inputs); y: integer class
        labels ``(P,)`` (-> centred one-hot targets) or real targets ``(P,)``/``(P, c)``.
      surrogate: a :class:`~sgntk.surrogates.Surrogate` or name; default from ``point``.
      point: a grid point (dict with ``shape``, ``sharpness``, ``dampening``, ``tail`` and
        network fields); network fields replace those of ``net``.
      optimizer: ``"adam"`` (per-layer normalised kernel) or ``"sgd"`` (module docstring).
      train_steps, lr_fraction, folds: of the score (module docstring).
      backward: also estimate the backward gain (Monte Carlo for LIF).
      kernel: ``"sgntk"`` or ``"sg_gram"`` (surrogate on both sides) for the score; default
        ``net.default_kernel`` (``sg_gram`` for LIF networks, ``sgntk`` for MLPs). Both are
        always computed (``by_kernel`` in the result, each with its ``fit_score`` under the
        key ``score`` and ``log10_slowest_mode``). A fit score of -1e6 marks a diverging flow.
    Returns:
      JSON-ready dict: ``score`` (module docstring), ``fit_score`` (kernel k-fold R^2),
      ``log10_slowest_mode``, ``hc_score``, ``hc_gain``, ``predicted_loss`` (relative, after
      ``train_steps``), ``diagnostics`` (spectrum, ``max_stable_lr``, backward gain, kernel
      scale), ``point``.
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {optimizer!r}")
    if kernel is None:
        kernel = net.default_kernel
    if kernel not in ("sgntk", "sg_gram"):
        raise ValueError(f"kernel must be 'sgntk' or 'sg_gram'; got {kernel!r}")
    if point is not None:
        net = dataclasses.replace(net, **{k: v for k, v in point.items()
                                          if k in {f.name for f in dataclasses.fields(net)}})
        if surrogate is None:
            surrogate = surrogate_of(point)
    if net_overrides:
        net = dataclasses.replace(net, **net_overrides)
    if surrogate is None:
        raise ValueError("give surrogate= or a point with a 'shape'")
    sur = _sg.get(surrogate) if isinstance(surrogate, str) else surrogate
    x = np.asarray(x)
    yt, classify = _targets(y)
    if len(yt) != len(x):
        raise ValueError(f"x and y must have the same number of samples; got {len(x)} and "
                         f"{len(yt)}")
    nngp, sgntk, sg_gram = net.kernels(x, sur, seed=seed)
    out = {}
    for name, kern in (("sgntk", sgntk), ("sg_gram", sg_gram)):
        out[name] = _kernel_prediction(nngp, kern, yt, classify, optimizer=optimizer,
                                       train_steps=train_steps, lr_fraction=lr_fraction,
                                       folds=folds)
    main_ = out[kernel]
    diag = dict(main_["diagnostics"])
    diag.update(kernel_scale_readout=float(np.mean(np.diag(nngp))),
                kernel_scale_hidden=float(np.mean(np.diag(sgntk - nngp))))
    if backward:
        bg = net.backward(x, sur, seed=seed)
        diag.update(backward_log10_gain=float(bg.log10_total),
                    backward_chi=np.asarray(bg.chi).tolist())
    hc = net.hc_gain(x, sur)
    gain = abs(diag.get("backward_log10_gain", 0.0))
    score = main_["log10_slowest_mode"] - (gain if np.isfinite(gain) else 300.0)
    return dict(score=score, fit_score=main_["score"],
                log10_slowest_mode=main_["log10_slowest_mode"], hc_gain=hc,
                hc_score=-abs(math.log10(hc)) if hc > 0 else -math.inf,
                predicted_loss=main_["predicted_loss"], diagnostics=diag, kernel=kernel,
                by_kernel=out, optimizer=optimizer,
                point=dict(point) if point is not None else None)


@float64
def _kernel_prediction(nngp, kern, yt, classify, *, optimizer, train_steps, lr_fraction, folds):
    k = _adam_kernel(nngp, kern) if optimizer == "adam" else kern
    finite = bool(np.all(np.isfinite(k)))
    if not finite:  # an overflowing backward pass: the worst possible prediction
        k = np.nan_to_num(k, nan=0.0, posinf=0.0, neginf=0.0)
    sp = D.spectrum(jnp.asarray(k), jnp.asarray(yt))
    eta = float(D.max_stable_learning_rate(jnp.asarray(k)))
    lr = lr_fraction * (eta if eta > 0 else 1.0 / max(float(sp.norm), 1e-300))
    loss = np.asarray(D.predicted_loss(jnp.asarray(k), jnp.asarray(yt), steps=train_steps,
                                       learning_rate=lr))
    rel = float(loss[-1] / loss[0]) if loss[0] > 0 else float("nan")
    score, cv_acc = (_cv_score(k, yt, classify, folds=folds, train_steps=train_steps,
                               lr_fraction=lr_fraction) if finite else (-np.inf, 0.0))
    score = max(score, -1e6) if np.isfinite(score) else -1e6  # a diverging flow: worst
    diag = {name: float(v) for name, v in sp._asdict().items()}
    diag.update(max_stable_lr=eta, finite=finite, cv_accuracy=cv_acc)
    scale = float(np.mean(np.abs(np.diag(k))))
    lam = float(sp.min_real_part)
    slowest = (math.log10(lam / scale) if finite and scale > 0 and lam > 0 else -300.0)
    return dict(score=score, log10_slowest_mode=slowest, predicted_loss=rel, diagnostics=diag)


# ------------------------------------------------------------------------------ grids
_GRID_KEYS = ("shape", "sharpness", "dampening", "tail", "sigma_w", "threshold", "reset",
              "detach_reset", "recurrent")


def expand_grid(grid: Mapping[str, Sequence]) -> list:
    """All points of a grid ``{field: [values]}`` (fields: surrogate ``shape``, ``sharpness``,
    ``dampening``, ``tail`` and any network field), each with a readable ``name``. ``tail``
    only multiplies the points of ``q_pseudo_spike``."""
    grid = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in grid.items()}
    if "shape" not in grid:
        raise ValueError("grid needs a 'shape' list (surrogate shapes)")
    for s in grid["shape"]:
        _sg.canonical_shape(s)
    keys = list(grid)
    points, seen = [], set()
    for combo in itertools.product(*(grid[k] for k in keys)):
        p = dict(zip(keys, combo))
        if p["shape"] != "q_pseudo_spike":
            p["tail"] = None
        if p["shape"] == "straight_through":
            p["sharpness"] = 1.0
        name = "_".join(f"{k}={_fmt(v)}" for k, v in p.items() if v is not None)
        if name in seen:
            continue
        seen.add(name)
        p["name"] = name
        points.append(p)
    return points


def _fmt(v):
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _point_unit(config: dict) -> dict:
    net_cls = {"lif": LIFNetwork, "mlp": MLPNetwork}[config["network"]["kind"]]
    net = net_cls(**{k: v for k, v in config["network"].items() if k != "kind"})
    data = np.load(config["data_path"])
    return evaluate_point(net, data["x"], data["y"], point=config["point"], **config["options"])


def run_grid(net, grid, x, y, out, *, optimizer: str = "adam", train_steps: int = 100,
             folds: int = 4, backward: bool = True, kernel: Optional[str] = None,
             progress: bool = True, force: bool = False, executor=None) -> list:
    """Evaluate every grid point (one :class:`sgntk.runner.Unit` each; resumable) -> rows.

    ``out``: results folder; the sample is saved there as ``sample.npz`` (its hash is part of
    every unit's config, so another sample never reuses a result). ``executor``: ``None`` (in
    process) or e.g. a :class:`sgntk.runner.RayExecutor` (``sgntk select --ray``).
    """
    from ._util import write_npz
    from .runner import Unit, config_hash, map_units

    os.makedirs(out, exist_ok=True)
    x, y = np.asarray(x), np.asarray(y)
    data_path = os.path.join(os.path.abspath(out), "sample.npz")
    write_npz(data_path, x=x, y=y)
    sample_hash = config_hash({"x": x.tobytes().hex()[:100000], "shape": list(x.shape),
                               "y": np.asarray(y).tolist()})
    netd = dict(dataclasses.asdict(net), kind=net.kind)
    points = expand_grid(grid) if isinstance(grid, Mapping) else list(grid)
    opts = dict(optimizer=optimizer, train_steps=train_steps, folds=folds, backward=backward,
                kernel=kernel)
    units = [Unit(f"points/{i:04d}", _point_unit,
                  dict(network=netd, point=p, options=opts, sample=sample_hash,
                       data_path=data_path, version=2), fmt="json")
             for i, p in enumerate(points)]
    res = map_units(units, out, progress=progress, force=force, desc="select", executor=executor)
    rows = [res.values[u.name] for u in units]
    return rows


def ranked(rows: Sequence[Mapping]) -> list:
    """Rows sorted by score (best first; ties broken by the fit score)."""
    return sorted(rows, key=lambda r: (-r["score"], -r["fit_score"]))


def _label(p: Mapping) -> str:
    bits = [p["shape"]]
    for k in ("sharpness", "dampening", "tail", "sigma_w", "threshold"):
        if p.get(k) is not None:
            bits.append(f"{k}={_fmt(p[k])}")
    if "reset" in p or "detach_reset" in p:
        bits.append(f"reset={p.get('reset', 'net')}"
                    f"{'' if p.get('detach_reset', True) else '(differentiable)'}")
    if p.get("recurrent"):
        bits.append("recurrent")
    return " ".join(bits)


def format_table(rows: Sequence[Mapping], *, top: int = 15) -> str:
    """Ranked plain-text table (best first)."""
    r = ranked(rows)
    lines = [SCORE_DOC, f"{'rank':>4} {'score':>7} {'fit R^2':>7} {'pred.loss':>9} {'HC gain':>8} "
             f"{'bwd log10':>9} {'align':>6} {'asym':>5}  configuration"]
    for i, row in enumerate(r[:top]):
        d = row["diagnostics"]
        lines.append(f"{i + 1:>4} {row['score']:7.2f} {row['fit_score']:7.3f} "
                     f"{row['predicted_loss']:9.3g} "
                     f"{row['hc_gain']:8.3g} {d.get('backward_log10_gain', float('nan')):9.2f} "
                     f"{d['alignment']:6.3f} {d['asymmetry']:5.2f}  {_label(row['point'])}")
    if len(r) > top:
        lines.append(f"... {len(r) - top} more (all in the JSON)")
    return "\n".join(lines)


def recommend(rows: Sequence[Mapping]) -> str:
    """The recommended configuration and why (in words, from the diagnostics)."""
    r = ranked(rows)
    best, worst = r[0], r[-1]
    d = best["diagnostics"]
    why = [f"highest score {best['score']:.2f} (median of the grid "
           f"{np.median([x['score'] for x in r]):.2f}): slowest kernel mode "
           f"{best['log10_slowest_mode']:+.2f} decades below the typical one",
           f"kernel-predicted held-out R^2 {best['fit_score']:.3f}",
           f"kernel-predicted training loss {best['predicted_loss']:.3g} of the initial",
           f"kernel-target alignment {d['alignment']:.3f}, asymmetry {d['asymmetry']:.2f}, "
           f"smallest real eigenvalue part {d['min_real_part']:.3g}"]
    if "backward_log10_gain" in d:
        g = d["backward_log10_gain"]
        why.append(f"surrogate backward gain {g:+.1f} decades over the window/depth "
                   f"({'no explosion' if g <= 1 else 'EXPLODING'})")
    hc_best = max(r, key=lambda x: x["hc_score"])
    why.append(f"the Herranz-Celotti condition (gain 1) would pick: {_label(hc_best['point'])} "
               f"(gain {hc_best['hc_gain']:.3g})")
    bd = worst["diagnostics"]
    why.append(f"worst: {_label(worst['point'])} (score {worst['score']:.2f}, backward gain "
               f"{bd.get('backward_log10_gain', float('nan')):+.1f} decades)")
    return "Recommendation: " + _label(best["point"]) + "\n  - " + "\n  - ".join(why)


# ------------------------------------------------------------------------------ validation
def _rank(a):
    from scipy.stats import rankdata
    return rankdata(a)


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    ra, rb = _rank(a[ok]), _rank(b[ok])
    if np.std(ra) == 0 or np.std(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def bootstrap_spearman(a, b, *, n_boot: int = 2000, seed: int = 0):
    """Spearman correlation and its percentile bootstrap 95 % interval (resampling pairs)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    n = len(a)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        s = spearman(a[i], b[i])
        if np.isfinite(s):
            boots.append(s)
    lo, hi = (np.percentile(boots, [2.5, 97.5]) if boots else (float("nan"),) * 2)
    return dict(rho=spearman(a, b), ci95=[float(lo), float(hi)], n=int(n))


def ranking_record(scores, accuracy, names, *, seed: int = 0) -> dict:
    """How a predictor's ``scores`` rank configurations with measured ``accuracy``:
    ``vs_accuracy`` (:func:`bootstrap_spearman`), the predicted ``best`` (its name, highest
    score; a NaN score is never the best), its ``best_measured_rank`` (1 + the number measured
    strictly better: ties count in its favour) and ``best_in_top3``."""
    s, acc = np.asarray(scores, float), np.asarray(accuracy, float)
    best = int(np.argmax(np.where(np.isnan(s), -np.inf, s)))
    rank = int(1 + np.sum(acc > acc[best]))
    return dict(vs_accuracy=bootstrap_spearman(s, acc, seed=seed), best=names[best],
                best_in_top3=bool(rank <= 3), best_measured_rank=rank)


def validation_table(rows: Sequence[Mapping], *, seed: int = 0) -> dict:
    """Correlations of predictions with measured training (rows from the validation study).

    Each row needs ``score``, ``hc_score``, ``predicted_loss``, ``test_accuracy`` (mean over
    seeds), ``train_ce`` (training loss at the fixed epoch) and ``half`` ("A"/"B").
    Returns per predictor and subset (``all``, ``A``, ``B``): Spearman with bootstrap 95 %
    intervals against test accuracy, whether the predicted best is in the measured top 3;
    and predicted vs measured training loss.
    """
    out = {}
    for subset in ("all", "A", "B"):
        rs = [r for r in rows if subset == "all" or r["half"] == subset]
        if len(rs) < 3:
            continue
        acc = np.array([r["test_accuracy"] for r in rs])
        res = {pred: ranking_record([r[pred] for r in rs], acc, [r["name"] for r in rs],
                                    seed=seed) for pred in ("score", "hc_score")}
        pl = np.array([r["predicted_loss"] for r in rs])
        ce = np.array([r["train_ce"] for r in rs])
        res["predicted_vs_measured_loss"] = bootstrap_spearman(pl, ce, seed=seed)
        res["measured_top3"] = [rs[i]["name"] for i in np.argsort(-acc)[:3]]
        out[subset] = res
    return out


def format_validation(res: Mapping) -> str:
    """Plain-text summary of :func:`validation_table` results for one task."""
    lines = [f"task {res['task']}: {res['n_configs']} configurations x {len(res['seeds'])} "
             f"seeds"]
    for subset, r in res["correlations"].items():
        for pred in ("score", "hc_score"):
            v = r[pred]["vs_accuracy"]
            lines.append(f"  [{subset}] {pred:8s} vs test accuracy: Spearman {v['rho']:+.2f} "
                         f"[{v['ci95'][0]:+.2f}, {v['ci95'][1]:+.2f}] (n={v['n']}); best "
                         f"predicted {r[pred]['best']} is measured #{r[pred]['best_measured_rank']}"
                         f" ({'in' if r[pred]['best_in_top3'] else 'not in'} top 3)")
        v = r["predicted_vs_measured_loss"]
        lines.append(f"  [{subset}] predicted vs measured training loss: Spearman "
                     f"{v['rho']:+.2f} [{v['ci95'][0]:+.2f}, {v['ci95'][1]:+.2f}]")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI
def _load_sample(args):
    from . import data

    if args.data == "randman":
        ds = data.randman(nb_samples=max(1, args.n_samples // 10), nb_steps=args.steps, seed=0)
        return ds.spikes[: args.n_samples], ds.labels[: args.n_samples], "lif"
    if args.data == "digits":
        ds = data.latency_digits(nb_steps=args.steps)
        idx = np.random.default_rng(0).permutation(len(ds.labels))[: args.n_samples]
        return ds.spikes[idx], ds.labels[idx], "lif"
    if args.data == "circle":
        x, y = _circle(args.n_samples)
        return x, y, "mlp"
    if not os.path.isfile(args.data):
        raise ValueError(f"--data must be randman, digits, circle or an .npz file with x and "
                         f"y; got {args.data!r}")
    d = np.load(args.data)
    x, y = d["x"], d["y"]
    return x, y, "lif" if x.ndim == 3 else "mlp"


def _circle(n):
    from .data import circle_target
    a = np.linspace(-np.pi, np.pi, n, endpoint=False)
    x = np.stack([np.sin(a), np.cos(a)], 1)
    return x, circle_target(x)


def main(argv=None) -> int:
    """``sgntk select``: rank a grid of surrogates and initialisations (see module docstring)."""
    import argparse

    from ._util import write_json, write_text

    ap = argparse.ArgumentParser(prog="sgntk select", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="randman",
                    help="randman | digits | circle | a .npz file with x ((P,T,n_in) spike "
                         "trains or (P,d) inputs) and y (labels or targets)")
    ap.add_argument("--n-samples", type=int, default=100)
    ap.add_argument("--steps", type=int, default=100, help="time steps (randman/digits)")
    ap.add_argument("--grid", default=None, help="JSON file {field: [values]} (default: "
                    "DEFAULT_GRID, 200 points for a LIF layer)")
    ap.add_argument("--network", default=None,
                    help="JSON of network fields (LIFNetwork or MLPNetwork), e.g. "
                         "'{\"tau_mem\": 20, \"width\": 128}'")
    ap.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--kernel", default=None, choices=["sgntk", "sg_gram"],
                    help="kernel of the score (default: sg_gram for LIF, sgntk for MLPs)")
    ap.add_argument("--no-backward", action="store_true", help="skip the backward-gain MC")
    ap.add_argument("--out", default="results/select")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    from . import runner
    runner.add_executor_arguments(ap)
    args = ap.parse_args(argv)
    x, y, kind = _load_sample(args)
    netkw = json.loads(args.network) if args.network else {}
    net = (LIFNetwork if kind == "lif" else MLPNetwork)(**netkw)
    if args.grid:
        with open(args.grid) as f:
            grid = json.load(f)
    else:
        grid = dict(DEFAULT_GRID) if kind == "lif" else dict(
            shape=DEFAULT_GRID["shape"], sharpness=[0.5, 1.0, 5.0], dampening=[0.3, 1.0, 3.0],
            sigma_w=[0.5, 1.0, 2.0])
    with runner.executor(args) as ex:   # None (in process) unless --ray / --ray-address
        rows = run_grid(net, grid, x, y, args.out, optimizer=args.optimizer,
                        train_steps=args.train_steps, backward=not args.no_backward,
                        kernel=args.kernel, progress=not args.no_progress, force=args.force,
                        executor=ex)
    table = format_table(rows, top=args.top)
    rec = recommend(rows)
    print(table)
    print(rec)
    write_json(os.path.join(args.out, "select.json"),
               dict(score=SCORE_DOC, network=dataclasses.asdict(net), grid=grid,
                    rows=ranked(rows), recommendation=rec))
    write_text(os.path.join(args.out, "select.txt"), table + "\n" + rec + "\n")
    from . import plotting
    if plotting.available():
        paths = plotting.selection_heatmaps(ranked(rows), args.out)
        print("figures: " + ", ".join(paths))
    else:
        print("matplotlib is not installed: no heatmaps (pip install matplotlib)")
    return 0
