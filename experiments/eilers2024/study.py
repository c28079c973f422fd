"""Eilers, Memmesheimer & Goedeke (NeurIPS 2024): SGL-trained networks vs SG-NTK regression.

``run(config, out=None)`` computes every panel's data with :func:`sgntk.runner.map_units` and
writes it into a per-run folder (default ``results/eilers2024-<name>/``);
``paper_figs/eilers2024.py`` turns that folder into PNGs without computing anything. Configs are
the JSON files next to this module (``smoke``, ``quick``, ``full``, ``medium``, ``large``,
``fig3_paper``); ``sgntk reproduce eilers2024 --smoke|--quick|--full|--paper`` and ``python
experiments/eilers2024/run.py <config.json>`` both call :func:`run`.

Set-up (reference notes ``sg-ntk.md`` Sec. 4): inputs ``x(a) = (sin a, cos a)`` on the unit
circle, 100 test angles ``a_i = 2 pi i/100 - pi``, target ``g(x) = 4 x1 x2^2 - 0.8 x1^3 +
1.2 x2^2 - 0.8 x1^2 x2``, 15 training points. Training sets (``data.training_set``):

* ``"paper"`` -- the paper's own sets, read from its public code (sg-ntk.md Sec. 4): Figs. 1-2
  train on the 15 angles :data:`PAPER_FIG12_ANGLES` (drawn once, uniformly in [-pi, pi), by
  JAX 0.4's PRNG; the float32 values), Fig. 3 / B.2 and the ensemble study on the 15 test-grid
  points :data:`PAPER_FIG3_INDICES`. ``full.json`` and ``--paper`` use these.
* ``"even"`` -- evenly spaced angles ``a_j = 2 pi j/15 - pi`` for every figure
  (:func:`sgntk.data.unit_circle`; 5 of them coincide with test angles). The documented
  alternative (``--even-angles``); on the Fig. 3 set the GP mean differs from the paper's by up
  to ~0.8, so the two are not interchangeable.

Horizons: the paper trains Fig. 1 for 10 000 GD steps (``fig12.steps_gd``), Fig. 2 for 1 000
SGL steps (``fig12.steps_sgl``) and Fig. 3 for 30 000 SGL steps (``fig3.steps``), which it
compares with the t = infinity prediction; :func:`paper_config` sets these (``--paper``).
Networks: L = 2 hidden layers, ``sigma_w = 1``, ``sigma_b = 0.1``, NTK parameterisation; loss
``1/(2 n) sum (f - y)^2``, full-batch GD with ``eta = 0.1`` (:mod:`sgntk.train`), so the
kernel prediction at step ``k`` is :func:`sgntk.predict.gp_predict` at ``t = k`` with
``learning_rate = eta`` and ``loss_normalization = "mean"``.

Units of work (:class:`sgntk.runner.Unit`; each one file ``<name>-<config hash>.npz``, loaded
when present -> a rerun resumes; ``units.json`` lists this run's files):

* ``fig12/{gd,sgl}_m{m}_n{width}_N{nets}_T{steps}_s{seed}`` -- empirical kernel rows
  ``Theta(x(0), x(da))`` (Fig. 1: naive NTK of erf_m nets trained by true GD; Fig. 2: SG-NTK of
  erf_m nets trained by SGL with psi' = erf') at t = 0 and after training, plus the losses.
* ``ensembles/{setting}_n{width}_N{nets}_T{steps}_s{seed}[_b{block}]`` -- outputs of sign
  networks trained by SGL on the 100 test points at ``record_steps`` (Fig. 3, B.2, agreement
  study). With ``fig3.block_networks = B`` an ensemble is split into blocks of ``B`` networks
  (block ``b`` from ``fold_in(PRNGKey(seed + 1), b)``), one unit each, so a long paper-size run
  resumes block by block; :func:`run` with ``available_only=True`` summarises the blocks
  finished so far.
* ``analytic/fig12_rows``, ``analytic/pred_{setting}_T{steps}`` -- analytic kernel rows and GP
  predictions at the record steps and at t = inf (cheap, but also cached).

Summaries written every run (cheap, from the units): ``agreement.json`` (one record per
setting, width and time: ensemble vs kernel-regression prediction at the same t, plus one
record per setting and width of the last step vs the t = inf prediction, the paper's Fig. 3
comparison), ``agreement.txt``, ``paper_values.json`` / ``paper_values.txt`` (the values
printed in or read off the paper next to ours, :data:`PAPER_VALUES`), ``kernel_mse.json``
(Figs. B.3/B.4), ``config.json``, ``versions.json``, ``units.json``, ``summary.json``. Checked
end to end (smoke config), with resume, by ``tests/test_reproduce.py``.
"""
from __future__ import annotations

import copy
import json
import os
import time
from typing import Optional

import numpy as np

from sgntk import data as sgdata
from sgntk import runner
from sgntk._util import renamed_keyword, versions, write_json, write_npz, write_text

__all__ = ["CONFIG_DIR", "PAPER_FIG12_ANGLES", "PAPER_FIG3_INDICES", "PAPER_HORIZONS",
           "PAPER_VALUES", "TRAINING_SETS", "load_config", "paper_config", "training_angles",
           "settings", "units", "run", "agreement_metrics", "paper_values", "format_table",
           "format_paper_values", "main"]

#: The folder of the JSON configs (this module's folder).
CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))
_KEYS = {"name": None, "seed": None, "net": ("depth", "sigma_w", "sigma_b"),
         "train": ("learning_rate", "dtype", "chunk_size"),
         "data": ("n_train", "n_test", "training_set"),
         "fig12": ("ms", "widths", "n_networks", "steps_gd", "steps_sgl", "m_limit"),
         "fig3": ("surrogate", "widths", "n_networks", "steps", "record_steps", "output_scale",
                  "show_width"),
         "b2": ("output_scale", "widths"), "agreement": ("test_points",),
         "beyond": ("surrogates", "depths", "widths", "n_networks", "steps", "record_steps")}


#: The paper's Figs. 1-2 training angles (its public code: ``PRNGKey(2)`` split into 3, the
#: second key, 15 draws uniform in [-pi, pi) with JAX 0.4.x's PRNG; float32 values, exact as
#: Python floats). Reference notes sg-ntk.md Sec. 4.
PAPER_FIG12_ANGLES = (
    -1.1745926141738892, -2.4250686168670654, -2.4657034873962402, 1.0474662780761719,
    1.8972047567367554, -2.9864375591278076, -0.06456051766872406, -1.7713344097137451,
    1.7098395824432373, 1.8946220874786377, 0.4341278076171875, 3.052441358566284,
    -0.42121556401252747, 2.8263049125671387, 1.436213493347168)
#: The paper's Fig. 3 training points: indices into the 100 test angles ``2 pi i/100 - pi``.
PAPER_FIG3_INDICES = (54, 69, 18, 41, 23, 50, 65, 82, 63, 3, 0, 4, 58, 79, 95)
#: Training horizons of the paper (steps): Fig. 1 (true GD), Fig. 2 (SGL), Fig. 3 (SGL; compared
#: with the t = inf prediction).
PAPER_HORIZONS = {"fig1": 10000, "fig2": 1000, "fig3": 30000}
#: ``data.training_set`` values: the paper's sets, or evenly spaced angles for every figure.
TRAINING_SETS = ("paper", "even")
#: Values the paper's text and figures give (reference notes sg-ntk.md Sec. 2, check values; L =
#: 2, sigma_w = 1, sigma_b = 0.1, circle inputs, psi' = erf'): name -> (description, value,
#: digits as printed). The naive-NTK diagonal values are read off Fig. 1 (about).
PAPER_VALUES = {
    "sgntk_sign_0_0": ("I_sign(a=0, a'=0), SG-NTK of sign nets on the diagonal", 2.4908, 4),
    "sgntk_sign_0_pi": ("I_sign(a=0, a'=pi)", -1.5448, 4),
    "ntk_m2_0_0": ("naive erf_m NTK at delta a = 0, m = 2 (diverging diagonal)", 2.9, 1),
    "ntk_m5_0_0": ("naive erf_m NTK at delta a = 0, m = 5", 11.6, 1),
    "ntk_m20_0_0": ("naive erf_m NTK at delta a = 0, m = 20", 131.0, 0),
}


# ----------------------------------------------------------------------------- config
def _x(angles) -> np.ndarray:
    """``x(a) = (sin a, cos a)`` (reference notes Sec. 1), shape ``(n, 2)``."""
    a = np.asarray(angles, float)
    return np.stack([np.sin(a), np.cos(a)], axis=-1)


def load_config(config="quick") -> dict:
    """A config name (``smoke``, ``quick``, ``full``, ... = ``<CONFIG_DIR>/<name>.json``), a path
    to a JSON config, or a config dict -> config dict (a copy), checked for the required keys."""
    if isinstance(config, dict):
        cfg = copy.deepcopy(config)
    elif isinstance(config, str) and os.path.exists(os.path.join(CONFIG_DIR, f"{config}.json")):
        with open(os.path.join(CONFIG_DIR, f"{config}.json")) as f:
            cfg = json.load(f)
    elif isinstance(config, (str, os.PathLike)) and os.path.isfile(config):
        with open(config) as f:
            cfg = json.load(f)
    else:
        names = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".json"))
        raise ValueError(f"config must be one of {names}, a JSON file or a dict; got {config!r}")
    for key, sub in _KEYS.items():
        if key not in cfg:
            raise ValueError(f"config is missing the key {key!r}")
        for k in sub or ():
            if k not in cfg[key]:
                raise ValueError(f"config is missing the key {key}.{k!s}")
    if cfg["data"]["training_set"] not in TRAINING_SETS:
        raise ValueError(f"data.training_set must be one of {TRAINING_SETS}; got "
                         f"{cfg['data']['training_set']!r}")
    bn = cfg["fig3"].get("block_networks")
    if bn is not None and (not isinstance(bn, int) or bn < 1):
        raise ValueError(f"fig3.block_networks must be a positive integer or absent; got {bn!r}")
    return cfg


def paper_config(config="full", *, training_set: Optional[str] = "paper") -> dict:
    """``config`` with the paper's training sets and horizons (``--paper``).

    Sets ``data.training_set`` (default ``"paper"``; ``"even"`` keeps the horizons but spaces
    the angles evenly), ``fig12.steps_gd`` / ``steps_sgl`` and ``fig3.steps`` to
    :data:`PAPER_HORIZONS` (record steps beyond the old horizon are dropped, the new horizon
    is added; B.2 and the beyond-the-paper study keep their own). The name gains ``-paper``
    unless the config already had the paper's settings.
    """
    cfg = load_config(config)
    new = copy.deepcopy(cfg)
    if training_set is not None:
        new["data"]["training_set"] = training_set
    new["fig12"]["steps_gd"] = PAPER_HORIZONS["fig1"]
    new["fig12"]["steps_sgl"] = PAPER_HORIZONS["fig2"]
    f3 = new["fig3"]
    f3["steps"] = PAPER_HORIZONS["fig3"]
    f3["record_steps"] = sorted({int(t) for t in f3["record_steps"] if t < f3["steps"]}
                                | {f3["steps"]})
    if new != cfg:
        new["name"] = f"{cfg['name']}-paper" + ("" if new["data"]["training_set"] == "paper"
                                                 else f"-{new['data']['training_set']}")
    return load_config(new)


def training_angles(training_set: str, figure: str, n_train: int = 15,
                    n_test: int = 100) -> np.ndarray:
    """Training angles of ``figure`` (``"fig12"`` or ``"fig3"``) for a ``training_set``.

    ``"paper"``: :data:`PAPER_FIG12_ANGLES` for Figs. 1-2, the test angles at
    :data:`PAPER_FIG3_INDICES` for Fig. 3 (needs ``n_train = 15``, ``n_test = 100``);
    ``"even"``: ``2 pi j/n_train - pi`` for both (:func:`sgntk.data.unit_circle`).
    """
    if figure not in ("fig12", "fig3"):
        raise ValueError(f"figure must be 'fig12' or 'fig3'; got {figure!r}")
    if training_set == "even":
        return sgdata.unit_circle(n_train, n_test)["a_train"]
    if training_set != "paper":
        raise ValueError(f"training_set must be one of {TRAINING_SETS}; got {training_set!r}")
    if (n_train, n_test) != (15, 100):
        raise ValueError("the paper's training sets have n_train = 15 points and index "
                         f"n_test = 100 test angles; got n_train={n_train}, n_test={n_test}")
    if figure == "fig12":
        return np.asarray(PAPER_FIG12_ANGLES, np.float64)
    return sgdata.unit_circle(n_train, n_test)["a_test"][list(PAPER_FIG3_INDICES)]


def _data(c: dict) -> dict:
    """Circle data of a unit: test grid of ``n_test`` angles, training set at the unit's
    ``train_angles`` (a list in its config, so the hash covers the exact angles)."""
    d = sgdata.unit_circle(len(c["train_angles"]), c["n_test"])
    a = np.asarray(c["train_angles"], np.float64)
    x = _x(a)
    return dict(d, a_train=a, x_train=x, y_train=sgdata.circle_target(x))


def settings(cfg: dict) -> list:
    """Ensemble settings of Fig. 3 / B.2 / the beyond-the-paper study.

    Each: dict(tag, surrogate, depth, output_scale, widths, n_networks, steps, record_steps,
    group) with ``group`` in {"fig3", "b2", "beyond"}.
    """
    f3, b2, by = cfg["fig3"], cfg["b2"], cfg["beyond"]
    depth = cfg["net"]["depth"]

    def tag(s, d, k):
        return f"sign-{s}-L{d}-k{k:g}"

    out = [dict(tag=tag(f3["surrogate"], depth, f3["output_scale"]), surrogate=f3["surrogate"],
                depth=depth, output_scale=f3["output_scale"], widths=f3["widths"],
                n_networks=f3["n_networks"], steps=f3["steps"],
                record_steps=f3["record_steps"], group="fig3")]
    out.append(dict(out[0], tag=tag(f3["surrogate"], depth, b2["output_scale"]),
                    output_scale=b2["output_scale"], widths=b2["widths"], group="b2"))
    for s in by["surrogates"]:
        out.append(dict(tag=tag(s, depth, 1.0), surrogate=s, depth=depth, output_scale=1.0,
                        widths=by["widths"], n_networks=by["n_networks"], steps=by["steps"],
                        record_steps=by["record_steps"], group="beyond"))
    for d in by["depths"]:
        out.append(dict(tag=tag(f3["surrogate"], d, 1.0), surrogate=f3["surrogate"], depth=d,
                        output_scale=1.0, widths=by["widths"], n_networks=by["n_networks"],
                        steps=by["steps"], record_steps=by["record_steps"], group="beyond"))
    return out


def _n_nets(cfg, setting, width):
    """Ensemble size: ``b2.n_networks`` for B.2 if given, else ``fig3.n_networks_by_width``
    (keys are widths as strings) for Fig. 3, else the setting's ``n_networks``."""
    if setting["group"] == "b2" and "n_networks" in cfg["b2"]:
        return int(cfg["b2"]["n_networks"])
    by = cfg["fig3"].get("n_networks_by_width", {}) if setting["group"] == "fig3" else {}
    return int(by.get(str(width), setting["n_networks"]))


# ----------------------------------------------------------------------------- unit functions
# Pure functions of their config (module level, so process pools can pickle them); the
# circle data are rebuilt from (n_train, n_test), which is cheap and deterministic.
def fig12_rows(c: dict) -> dict:
    """Analytic kernel rows ``Theta(x(0), x(a))`` of erf_m and sign nets (Figs. 1/2)."""
    from sgntk import kernels

    net = dict(depth=c["depth"], sigma_w=c["sigma_w"], sigma_b=c["sigma_b"])
    x_test = sgdata.unit_circle(1, c["n_test"])["x_test"]
    x0 = _x([0.0])
    d = {}
    for m in sorted(set(c["ms"]) | set(c["m_limit"])):
        k = kernels.mlp(x0, x_test, activation="erf", m=float(m), surrogate="erf",
                        which=("ntk", "sgntk"), **net)
        d[f"ntk_m{m:g}"] = np.asarray(k.ntk)[0]
        d[f"sgntk_m{m:g}"] = np.asarray(k.sgntk)[0]
    d["sgntk_sign"] = np.asarray(kernels.mlp(x0, x_test, activation="sign", surrogate="erf",
                                             which=("sgntk",), **net).sgntk)[0]
    # the naive NTK on a fine grid (its divergence at da = 0 needs resolution)
    fine = np.linspace(-np.pi, np.pi, 801)
    d["fine_angles"] = fine
    for m in c["m_limit"]:
        d[f"fine_ntk_m{m:g}"] = np.asarray(kernels.mlp(
            x0, _x(fine), activation="erf", m=float(m), which=("ntk",), **net).ntk)[0]
    d["fine_sgntk_sign"] = np.asarray(kernels.mlp(x0, _x(fine), activation="sign",
                                                  surrogate="erf", which=("sgntk",),
                                                  **net).sgntk)[0]
    return d


def prediction(c: dict) -> dict:
    """GP prediction (SG-NTK dynamics, NNGP initial covariance) at the record steps and at
    t = inf (``mean_inf``, ``var_inf``: the paper's Fig. 3 comparison)."""
    from sgntk import kernels, predict

    dat = _data(c)
    net = dict(depth=c["depth"], sigma_w=c["sigma_w"], sigma_b=c["sigma_b"])
    xa = np.concatenate([dat["x_test"], dat["x_train"]])
    nt = dat["x_test"].shape[0]
    k = kernels.mlp(xa, xa, activation="sign", surrogate=c["surrogate"], which=("nngp", "sgntk"),
                    **net)
    k2 = c["output_scale"] ** 2
    S, I = k2 * np.asarray(k.nngp), k2 * np.asarray(k.sgntk)
    ts = np.asarray(c["record_steps"], float)
    p = predict.gp_predict(I[:nt, nt:], I[nt:, nt:], dat["y_train"], t=ts,
                           learning_rate=c["learning_rate"], loss_normalization="mean",
                           nngp_test_test=S[:nt, :nt], nngp_test_train=S[:nt, nt:],
                           nngp_train_train=S[nt:, nt:])
    p_inf = predict.gp_predict(I[:nt, nt:], I[nt:, nt:], dat["y_train"],
                               learning_rate=c["learning_rate"], loss_normalization="mean",
                               nngp_test_test=S[:nt, :nt], nngp_test_train=S[:nt, nt:],
                               nngp_train_train=S[nt:, nt:])
    post = predict.nngp_posterior(S[:nt, nt:], S[nt:, nt:], dat["y_train"])
    diag = predict.kernel_diagnostics(I[nt:, nt:])
    return dict(t=ts, mean=np.asarray(p.mean),
                var=np.asarray(np.diagonal(p.cov, axis1=-2, axis2=-1)),
                mean_inf=np.asarray(p_inf.mean), var_inf=np.asarray(np.diagonal(p_inf.cov)),
                nngp_posterior_mean=np.asarray(post.mean),
                sgntk_train=I[nt:, nt:], min_real_eig=np.float64(diag.min_real_part))


def ensemble(c: dict, *, chunk_size: int = 100) -> dict:
    """Outputs on the test points of ``n_networks`` sign nets trained by SGL (Fig. 3, B.2);
    block ``b`` of a split ensemble (``c["block"]``) uses ``fold_in(PRNGKey(key), b)``."""
    import jax

    from sgntk import train

    dat = _data(c)
    key = jax.random.PRNGKey(c["key"])
    if c.get("block") is not None:
        key = jax.random.fold_in(key, c["block"])
    r = train.train_ensemble(
        key, dat["x_train"], dat["y_train"], dat["x_test"],
        n_networks=c["n_networks"], width=c["width"], steps=c["steps"], activation="sign",
        surrogate=c["surrogate"], output_scale=c["output_scale"],
        record_steps=c["record_steps"], learning_rate=c["learning_rate"], dtype=c["dtype"],
        chunk_size=chunk_size, sigma_w=c["sigma_w"], sigma_b=c["sigma_b"], depth=c["depth"])
    return dict(outputs=r.outputs.astype(np.float32), train_loss=r.train_loss,
                record_steps=r.record_steps, seconds=np.float64(r.seconds))


def fig12_kernels(c: dict, *, chunk_size: int = 100) -> dict:
    """Empirical kernel rows of erf_m nets at t = 0 and after training (Figs. 1/2)."""
    import jax

    from sgntk import train

    dat = _data(c)
    kern = c["kernel"]
    r = train.train_ensemble(
        jax.random.PRNGKey(c["key"]), dat["x_train"], dat["y_train"], dat["x_test"],
        n_networks=c["n_networks"], width=c["width"], steps=c["steps"], activation="erf",
        m=float(c["m"]), surrogate=c["surrogate"],
        record_steps=np.unique([0, c["steps"] // 10, c["steps"]]),
        kernel_x1=_x([0.0]), kernel_x2=dat["x_test"], kernels=(kern,),
        learning_rate=c["learning_rate"], dtype=c["dtype"], chunk_size=chunk_size,
        depth=c["depth"], sigma_w=c["sigma_w"], sigma_b=c["sigma_b"])
    return dict(rows_init=getattr(r.kernels_init, kern)[:, 0],
                rows_final=getattr(r.kernels_final, kern)[:, 0],
                train_loss=r.train_loss, record_steps=r.record_steps,
                seconds=np.float64(r.seconds))


# ----------------------------------------------------------------------------- units
def _blocks(n: int, block) -> list:
    """``[(block index or None, networks)]``: one unit of ``n`` networks, or blocks of
    ``block`` networks (the last one smaller)."""
    if block is None or block >= n:
        return [(None, n)]
    return [(b, min(block, n - b * block)) for b in range(-(-n // block))]


def units(cfg: dict) -> dict:
    """The study's units of work, ``{key: sgntk.runner.Unit}``; keys ``("fig12_rows",)``,
    ``("pred", tag)``, ``("ensemble", tag, width, block)`` (block None: one unit for the
    ensemble), ``("fig12", "gd"|"sgl", m, width)``. Every unit's config carries its exact
    training angles (``train_angles``), so changing the training set recomputes it."""
    net, tr, dat = cfg["net"], cfg["train"], cfg["data"]
    base = dict(n_test=dat["n_test"], sigma_w=net["sigma_w"], sigma_b=net["sigma_b"])
    angles = {fig: [float(a) for a in training_angles(dat["training_set"], fig, dat["n_train"],
                                                       dat["n_test"])]
              for fig in ("fig12", "fig3")}
    opts = dict(chunk_size=tr["chunk_size"])  # speed only: results do not depend on it
    f12 = cfg["fig12"]
    out = {("fig12_rows",): runner.Unit("analytic/fig12_rows", fig12_rows, dict(
        base, depth=net["depth"], ms=f12["ms"], m_limit=f12["m_limit"]))}
    sets = settings(cfg)
    for s in sets:
        out[("pred", s["tag"])] = runner.Unit(
            f"analytic/pred_{s['tag']}_T{s['steps']}", prediction,
            dict(base, train_angles=angles["fig3"], depth=s["depth"], surrogate=s["surrogate"],
                 output_scale=s["output_scale"], record_steps=s["record_steps"],
                 learning_rate=tr["learning_rate"]))
    for s in sets:
        for w in s["widths"]:
            n = _n_nets(cfg, s, w)
            for b, nb in _blocks(n, cfg["fig3"].get("block_networks")):
                name = f"ensembles/{s['tag']}_n{w}_N{n}_T{s['steps']}_s{cfg['seed']}"
                c = dict(base, train_angles=angles["fig3"], key=cfg["seed"] + 1,
                         depth=s["depth"], surrogate=s["surrogate"],
                         output_scale=s["output_scale"], width=w, n_networks=nb,
                         steps=s["steps"], record_steps=s["record_steps"],
                         learning_rate=tr["learning_rate"], dtype=tr["dtype"])
                if b is not None:
                    name, c = f"{name}_b{b}", dict(c, block=b)
                out[("ensemble", s["tag"], w, b)] = runner.Unit(name, ensemble, c,
                                                                options=opts)
    for fig, sur, kern, steps in (("gd", None, "ntk", f12["steps_gd"]),
                                  ("sgl", "erf", "sgntk", f12["steps_sgl"])):
        for m in f12["ms"]:
            for w in f12["widths"]:
                out[("fig12", fig, m, w)] = runner.Unit(
                    f"fig12/{fig}_m{m:g}_n{w}_N{f12['n_networks']}_T{steps}"
                    f"_s{cfg['seed']}", fig12_kernels,
                    dict(base, train_angles=angles["fig12"], key=cfg["seed"], depth=net["depth"],
                         m=m, surrogate=sur, kernel=kern, width=w,
                         n_networks=f12["n_networks"], steps=steps,
                         learning_rate=tr["learning_rate"], dtype=tr["dtype"]), options=opts)
    return out


# ----------------------------------------------------------------------------- metrics
def agreement_metrics(outputs, mean, var, *, test_points=(10, 30, 50, 70, 90)) -> dict:
    """Ensemble of outputs ``(N, n_test)`` vs a Gaussian prediction ``mean, var (n_test,)``.

    Keys: ``rel_l2_mean`` = ||ens mean - mu||/||mu||; ``rel_l2_mean_noise`` = the value
    expected from the finite ensemble alone, sqrt(sum var / N)/||mu||; ``l2_mean`` (absolute);
    ``var_ratio`` = mean_i var_emp / mean_i var_pred; ``var_ratio_median`` = median_i of the
    pointwise ratio; ``ks`` / ``w1_over_std``: mean over ``test_points`` of the one-sample
    Kolmogorov-Smirnov statistic of the outputs against N(mu_i, var_i)
    (``scipy.stats.kstest``) and of the 1-D Wasserstein-1 distance (quantile coupling) divided
    by the predicted std; ``ks_crit95`` = the 95 % quantile of the exact one-sample KS
    distribution for N draws (``scipy.stats.kstwo``; about 1.36/sqrt(N)), the value a sample of
    the predicted Gaussian exceeds with 5 % chance. Test points where the predicted variance
    vanishes (< 1e-9 of its largest value: a training point at t = inf, where the trained
    network interpolates) have no distribution to compare with and are left out of ``ks`` and
    ``w1_over_std``; ``test_points_used`` lists the points that were compared.
    """
    from scipy import stats
    from scipy.special import ndtri

    y = np.asarray(outputs, np.float64)
    n = y.shape[0]
    mu, v = np.asarray(mean, np.float64), np.maximum(np.asarray(var, np.float64), 1e-300)
    emean = y.mean(0)
    evar = y.var(0, ddof=1) if n > 1 else np.zeros_like(mu)
    norm_mu = np.linalg.norm(mu)
    l2 = float(np.linalg.norm(emean - mu))
    noise = float(np.sqrt(v.sum() / n))
    ks, w1 = [], []
    q = ndtri((np.arange(n) + 0.5) / n)
    used = [int(i) for i in test_points if v[i] > 1e-9 * v.max()]
    for i in used:
        z = np.sort((y[:, i] - mu[i]) / np.sqrt(v[i]))
        ks.append(stats.kstest(z, "norm").statistic)
        w1.append(np.mean(np.abs(z - q)))
    return dict(l2_mean=l2, rel_l2_mean=l2 / norm_mu if norm_mu > 0 else float("nan"),
                rel_l2_mean_noise=noise / norm_mu if norm_mu > 0 else float("nan"),
                var_ratio=float(evar.mean() / v.mean()),
                var_ratio_median=float(np.median(evar / v)),
                ks=float(np.mean(ks)) if ks else float("nan"), ks_crit95=float(stats.kstwo.ppf(0.95, n)),
                w1_over_std=float(np.mean(w1)) if w1 else float("nan"), n_networks=n,
                test_points_used=used)


def _agreement(cfg, ens, preds):
    """Records: every (setting, width, record step) vs the prediction at the same t
    (``prediction = "t"``; ``final`` marks the last step) and the last step vs t = inf
    (``prediction = "inf"``, the paper's Fig. 3 comparison). Widths without an ensemble (a
    partial run) are left out."""
    recs = []
    for s in settings(cfg):
        p = preds[s["tag"]]
        for w in s["widths"]:
            if (s["tag"], w) not in ens:
                continue
            e = ens[(s["tag"], w)]
            common = dict(setting=s["tag"], group=s["group"], surrogate=s["surrogate"],
                          depth=s["depth"], output_scale=s["output_scale"], width=w)
            last = len(e["record_steps"]) - 1
            for j, t in enumerate(e["record_steps"]):
                m = agreement_metrics(e["outputs"][:, j], p["mean"][j], p["var"][j],
                                      test_points=cfg["agreement"]["test_points"])
                recs.append(dict(common, step=int(t), prediction="t", final=bool(j == last),
                                 train_loss=float(np.mean(e["train_loss"][:, j])), **m))
            m = agreement_metrics(e["outputs"][:, last], p["mean_inf"], p["var_inf"],
                                  test_points=cfg["agreement"]["test_points"])
            recs.append(dict(common, step=int(e["record_steps"][last]), prediction="inf",
                             final=False, train_loss=float(np.mean(e["train_loss"][:, last])),
                             **m))
    slopes = []
    for s in settings(cfg):
        fin = [r for r in recs if r["setting"] == s["tag"] and r["final"]]
        if len(fin) < 2:
            continue
        w = np.log([r["width"] for r in fin])
        err = np.array([r["rel_l2_mean"] for r in fin])
        noise = np.array([r["rel_l2_mean_noise"] for r in fin])
        # noise-corrected: sqrt(err^2 - noise^2) where the error exceeds the ensemble noise
        ok = err > noise
        corr = np.sqrt(err[ok] ** 2 - noise[ok] ** 2)
        slopes.append(dict(setting=s["tag"], widths=[r["width"] for r in fin],
                           slope_rel_l2_mean=float(np.polyfit(w, np.log(err), 1)[0]),
                           slope_noise_corrected=(float(np.polyfit(w[ok], np.log(corr), 1)[0])
                                                  if ok.sum() >= 2 else float("nan")),
                           widths_above_noise=[int(np.exp(v).round()) for v in w[ok]],
                           theory=-0.5))
    return recs, slopes


def _kernel_mse(f12, an):
    """Figs. B.3/B.4: mean over networks and angles of (empirical - analytic row)^2."""
    out = []
    for (fig, m, w), r in sorted(f12.items()):
        ref = an[f"{'ntk' if fig == 'gd' else 'sgntk'}_m{m:g}"]
        for when in ("init", "final"):
            d = r[f"rows_{when}"] - ref[None]
            out.append(dict(figure="fig1" if fig == "gd" else "fig2", m=m, width=w,
                            time=when, mse=float(np.mean(d ** 2)),
                            mse_stderr=float(np.std(np.mean(d ** 2, 1)) / np.sqrt(len(d)))))
    return out


def paper_values(rows: dict, f12: dict = None) -> list:
    """:data:`PAPER_VALUES` next to ours: the analytic value (``analytic/fig12_rows`` on its
    fine grid, which contains delta a = 0 and +-pi) and, where the study trained Fig. 1 / 2
    networks, the mean +- standard error of their empirical kernel at t = 0 at the widest
    width (SG-NTK values from the erf_m nets at the largest m, naive NTK from the m given)."""
    fine = np.asarray(rows["fine_angles"])
    i0, ipi = int(np.argmin(np.abs(fine))), int(np.argmin(np.abs(fine - np.pi)))
    ours = {"sgntk_sign_0_0": rows["fine_sgntk_sign"][i0],
            "sgntk_sign_0_pi": rows["fine_sgntk_sign"][ipi]}
    for m in (2, 5, 20):
        if f"fine_ntk_m{m}" in rows:
            ours[f"ntk_m{m}_0_0"] = rows[f"fine_ntk_m{m}"][i0]
    out = []
    for key, (desc, val, digits) in PAPER_VALUES.items():
        rec = dict(name=key, description=desc, paper=val, paper_digits=digits,
                   ours=float(ours[key]) if key in ours else None)
        if rec["ours"] is not None:
            rec["ours_rounded_equal"] = bool(round(rec["ours"], digits) == val)
        emp = None
        if f12:
            if key.startswith("ntk_m"):
                m = int(key[5:key.index("_", 5)])
                cand = {w: r for (fig, mm, w), r in f12.items() if fig == "gd" and mm == m}
            else:
                mx = max(mm for (fig, mm, w) in f12 if fig == "sgl") if any(
                    k[0] == "sgl" for k in f12) else None
                cand = {w: r for (fig, mm, w), r in f12.items() if fig == "sgl" and mm == mx}
            if cand and key != "sgntk_sign_0_pi":
                w = max(cand)
                n_test = cand[w]["rows_init"].shape[1]
                col = n_test // 2  # the test angle 0
                v = np.asarray(cand[w]["rows_init"][:, col], np.float64)
                emp = dict(width=int(w), n_networks=int(v.size), mean=float(v.mean()),
                           stderr=float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1
                           else float("nan"))
        rec["empirical_t0"] = emp
        out.append(rec)
    return out


def format_paper_values(recs) -> str:
    """:func:`paper_values` as a fixed-width text table."""
    head = (f"{'quantity':<62}{'paper':>9}{'ours (analytic)':>17}  empirical t=0, widest "
            "width (width, N; SG-NTK: erf_m nets, largest m)")
    lines = [head, "-" * len(head)]
    for r in recs:
        ours = "-" if r["ours"] is None else f"{r['ours']:.{max(r['paper_digits'], 4)}f}"
        e = r["empirical_t0"]
        emp = "-" if e is None else (f"{e['mean']:.3f} +- {e['stderr']:.3f} "
                                     f"({e['width']}, {e['n_networks']})")
        lines.append(f"{r['description']:<62}{r['paper']:>9.{r['paper_digits']}f}{ours:>17}  {emp}")
    return "\n".join(lines)


def format_table(recs, slopes) -> str:
    """The agreement records and width slopes as a fixed-width text table (``vs``: the
    prediction compared with, at the same t or at t = inf)."""
    head = (f"{'setting':<24}{'width':>6}{'N':>5}{'step':>7}{'vs':>6}{'loss':>9}{'relL2':>8}"
            f"{'noise':>8}{'varR':>7}{'KS':>6}{'KS95':>6}{'W1/sd':>7}")
    lines = [head, "-" * len(head)]
    for r in recs:
        vs = "t=inf" if r.get("prediction") == "inf" else "t"
        lines.append(f"{r['setting']:<24}{r['width']:>6}{r['n_networks']:>5}{r['step']:>7}"
                     f"{vs:>6}"
                     f"{r['train_loss']:>9.2e}{r['rel_l2_mean']:>8.3f}"
                     f"{r['rel_l2_mean_noise']:>8.3f}{r['var_ratio']:>7.2f}{r['ks']:>6.2f}"
                     f"{r['ks_crit95']:>6.2f}{r['w1_over_std']:>7.2f}")
    lines.append("")
    for s in slopes:
        lines.append(f"slope of final rel. L2 mean error vs width, {s['setting']} "
                     f"(widths {s['widths']}): {s['slope_rel_l2_mean']:+.2f} "
                     f"(noise-corrected {s['slope_noise_corrected']:+.2f}; theory -0.5)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- driver
def _combine_blocks(ens: dict) -> dict:
    """``{(tag, width, block): result}`` -> ``{(tag, width): result}``, blocks concatenated
    along the network axis in block order."""
    out: dict = {}
    for (tag, w, b), r in sorted(ens.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                               -1 if kv[0][2] is None
                                                               else kv[0][2])):
        if (tag, w) not in out:
            out[(tag, w)] = dict(r)
        else:
            o = out[(tag, w)]
            for k in ("outputs", "train_loss"):
                o[k] = np.concatenate([o[k], r[k]])
            o["seconds"] = o["seconds"] + r["seconds"]
    return out


def run(config=None, out: Optional[str] = None, *, force: bool = False,
        progress: bool = True, executor=None, paper: bool = False,
        training_set: Optional[str] = None, available_only: bool = False,
        preset=None) -> dict:
    """Compute every panel of the study (resuming from ``out``) and write the summaries.

    Args:
      config: ``"smoke"`` (CI, < 1 min), ``"quick"`` (< 10 min on 2 cores; the default),
        ``"full"`` (the paper's sizes, training sets and horizons), ``"fig3_paper"`` (only
        Fig. 3 at the paper's size, in resumable blocks), another config name in
        :data:`CONFIG_DIR`, a JSON path or a dict.
      out: results folder (default ``results/eilers2024-<name>``).
      force: recompute every unit.
      progress: tqdm bar over units of work, and print the table.
      executor: passed to :func:`sgntk.runner.map_units` (parallel / distributed units).
      paper: apply :func:`paper_config` (the paper's training sets and horizons) to ``config``.
      training_set: override ``data.training_set`` (``"paper"`` or ``"even"``).
      available_only: train nothing: summarise the training units already in ``out`` (blocks
        of a split ensemble included; the analytic units are computed, they are cheap). For a
        long run stopped early; the records then say how many networks they hold.
      preset: deprecated name of ``config``.

    Returns:
      dict with ``out``, ``agreement`` (records), ``slopes``, ``kernel_mse``,
      ``paper_values``, ``computed`` and ``skipped`` (units of work done in this call / found
      on disk), ``missing`` (units neither, with ``available_only``), ``seconds``.
    """
    config = renamed_keyword("config", config, "preset", preset, default="quick")
    cfg = (paper_config(config, training_set=training_set or "paper") if paper
           else load_config(config))
    if training_set is not None and not paper:
        cfg["data"]["training_set"] = training_set
        cfg = load_config(cfg)
    out = out or os.path.join("results", f"eilers2024-{cfg['name']}")
    t0 = time.time()
    write_json(os.path.join(out, "config.json"), cfg)
    write_json(os.path.join(out, "versions.json"), versions())
    dat = cfg["data"]
    d3 = _data(dict(n_test=dat["n_test"], train_angles=training_angles(
        dat["training_set"], "fig3", dat["n_train"], dat["n_test"])))
    a12 = training_angles(dat["training_set"], "fig12", dat["n_train"], dat["n_test"])
    write_npz(os.path.join(out, "data.npz"), **d3, a_train_fig12=a12, x_train_fig12=_x(a12),
              y_train_fig12=sgdata.circle_target(_x(a12)))
    us = units(cfg)
    todo, missing = list(us.items()), []
    if available_only:
        cheap = ("fig12_rows", "pred")
        missing = [u.name for k, u in todo if k[0] not in cheap
                   and not os.path.exists(runner.unit_path(u, out))]
        todo = [(k, u) for k, u in todo if u.name not in missing]
    res = runner.map_units([u for _, u in todo], out, executor=executor, force=force,
                           progress=progress, desc=f"eilers2024 {cfg['name']}")
    write_json(os.path.join(out, "units.json"),
               {u.name: os.path.relpath(res.paths[u.name], out) for _, u in todo})
    val = {k: res.values[u.name] for k, u in todo}
    preds = {k[1]: v for k, v in val.items() if k[0] == "pred"}
    ens = _combine_blocks({k[1:]: v for k, v in val.items() if k[0] == "ensemble"})
    f12 = {k[1:]: v for k, v in val.items() if k[0] == "fig12"}
    recs, slopes = _agreement(cfg, ens, preds)
    kmse = _kernel_mse(f12, val[("fig12_rows",)])
    pvals = paper_values(val[("fig12_rows",)], f12)
    write_json(os.path.join(out, "agreement.json"),
               {"description": agreement_metrics.__doc__.strip(), "config": cfg["name"],
                "training_set": dat["training_set"], "missing_units": missing,
                "records": recs, "slopes": slopes})
    write_json(os.path.join(out, "kernel_mse.json"), kmse)
    write_json(os.path.join(out, "paper_values.json"),
               {"description": paper_values.__doc__.strip(), "config": cfg["name"],
                "rows": pvals})
    table = format_table(recs, slopes)
    write_text(os.path.join(out, "agreement.txt"), table + "\n")
    ptable = format_paper_values(pvals)
    write_text(os.path.join(out, "paper_values.txt"), ptable + "\n")
    summary = dict(out=out, computed=res.n_computed, skipped=res.n_skipped,
                   missing=len(missing), seconds=time.time() - t0)
    write_json(os.path.join(out, "summary.json"), summary)
    if progress:
        print(table)
        print(ptable)
        print(f"eilers2024 {cfg['name']}: {res.n_computed} units computed, "
              f"{res.n_skipped} resumed, {len(missing)} missing, {summary['seconds']:.0f} s "
              f"-> {out}")
    return dict(summary, agreement=recs, slopes=slopes, kernel_mse=kmse, paper_values=pvals)


def main(argv=None) -> int:
    """``python experiments/eilers2024/run.py CONFIG [--out DIR] [--force] [--paper]
    [--even-angles] [--available-only] [--no-progress]``."""
    import argparse

    p = argparse.ArgumentParser(description="Run the Eilers et al. (2024) reproduction from a "
                                            "JSON config (resumable).")
    p.add_argument("config", help="JSON config file or config name (smoke, quick, full, ...)")
    p.add_argument("--out", default=None, help="results folder (default results/eilers2024-<name>)")
    p.add_argument("--force", action="store_true", help="recompute finished units")
    p.add_argument("--paper", action="store_true",
                   help="the paper's training sets and horizons (paper_config)")
    p.add_argument("--even-angles", action="store_true",
                   help="evenly spaced training angles instead of the config's set")
    p.add_argument("--available-only", action="store_true",
                   help="train nothing; summarise the finished units (a stopped run)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    run(args.config, out=args.out, force=args.force, progress=not args.no_progress,
        paper=args.paper, training_set="even" if args.even_angles else None,
        available_only=args.available_only)
    return 0
