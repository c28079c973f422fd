"""Eilers, Memmesheimer & Goedeke (NeurIPS 2024): SGL-trained networks vs SG-NTK regression.

``run(config, out=None)`` computes every panel's data with :func:`sgntk.runner.map_units` and
writes it into a per-run folder (default ``results/eilers2024-<name>/``);
``paper_figs/eilers2024.py`` turns that folder into PNGs without computing anything. Configs are
the JSON files next to this module (``smoke``, ``quick``, ``full``, ``medium``, ``large``);
``sgntk reproduce eilers2024 --smoke|--quick|--full`` and ``python experiments/eilers2024/run.py
<config.json>`` both call :func:`run`.

Set-up (reference notes ``sg-ntk.md`` Sec. 4): inputs ``x(a) = (sin a, cos a)`` on the unit
circle, 100 test angles ``a_i = 2 pi i/100 - pi``, target ``g(x) = 4 x1 x2^2 - 0.8 x1^3 +
1.2 x2^2 - 0.8 x1^2 x2``, 15 training points (:func:`sgntk.data.unit_circle`). The paper's
training angles are not stated in the material we have, so they are **evenly spaced**,
``a_j = 2 pi j/15 - pi`` (our choice; 5 of them coincide with test angles). Networks: L = 2
hidden layers, ``sigma_w = 1``, ``sigma_b = 0.1``, NTK parameterisation; loss
``1/(2 n) sum (f - y)^2``, full-batch GD with ``eta = 0.1`` (:mod:`sgntk.train`), so the
kernel prediction at step ``k`` is :func:`sgntk.predict.gp_predict` at ``t = k`` with
``learning_rate = eta`` and ``loss_normalization = "mean"``.

Units of work (:class:`sgntk.runner.Unit`; each one file ``<name>-<config hash>.npz``, loaded
when present -> a rerun resumes; ``units.json`` lists this run's files):

* ``fig12/{gd,sgl}_m{m}_n{width}_N{nets}_T{steps}_s{seed}`` -- empirical kernel rows
  ``Theta(x(0), x(da))`` (Fig. 1: naive NTK of erf_m nets trained by true GD; Fig. 2: SG-NTK of
  erf_m nets trained by SGL with psi' = erf') at t = 0 and after training, plus the losses.
* ``ensembles/{setting}_n{width}_N{nets}_T{steps}_s{seed}`` -- outputs of sign networks
  trained by SGL on the 100 test points at ``record_steps`` (Fig. 3, B.2, agreement study).
* ``analytic/fig12_rows``, ``analytic/pred_{setting}_T{steps}`` -- analytic kernel rows and GP
  predictions (cheap, but also cached).

Summaries written every run (cheap, from the units): ``agreement.json`` (one record per
setting, width and time: ensemble vs kernel-regression prediction), ``agreement.txt``,
``kernel_mse.json`` (Figs. B.3/B.4), ``config.json``, ``versions.json``, ``units.json``,
``summary.json``. Checked end to end (smoke config), with resume, by ``tests/test_reproduce.py``.
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

__all__ = ["CONFIG_DIR", "load_config", "settings", "units", "run", "agreement_metrics",
           "format_table", "main"]

#: The folder of the JSON configs (this module's folder).
CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))
_KEYS = {"name": None, "seed": None, "net": ("depth", "sigma_w", "sigma_b"),
         "train": ("learning_rate", "dtype", "chunk_size"), "data": ("n_train", "n_test"),
         "fig12": ("ms", "widths", "n_networks", "steps", "m_limit"),
         "fig3": ("surrogate", "widths", "n_networks", "steps", "record_steps", "output_scale",
                  "show_width"),
         "b2": ("output_scale", "widths"), "agreement": ("test_points",),
         "beyond": ("surrogates", "depths", "widths", "n_networks", "steps", "record_steps")}


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
    return cfg


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
    x_test = sgdata.unit_circle(c["n_train"], c["n_test"])["x_test"]
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
    """GP prediction (SG-NTK dynamics, NNGP initial covariance) at the record steps."""
    from sgntk import kernels, predict

    dat = sgdata.unit_circle(c["n_train"], c["n_test"])
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
    p_inf = predict.gp_predict(I[:nt, nt:], I[nt:, nt:], dat["y_train"])
    post = predict.nngp_posterior(S[:nt, nt:], S[nt:, nt:], dat["y_train"])
    diag = predict.kernel_diagnostics(I[nt:, nt:])
    return dict(t=ts, mean=np.asarray(p.mean),
                var=np.asarray(np.diagonal(p.cov, axis1=-2, axis2=-1)),
                mean_inf=np.asarray(p_inf.mean), nngp_posterior_mean=np.asarray(post.mean),
                sgntk_train=I[nt:, nt:], min_real_eig=np.float64(diag.min_real_part))


def ensemble(c: dict, *, chunk_size: int = 100) -> dict:
    """Outputs on the test points of ``n_networks`` sign nets trained by SGL (Fig. 3, B.2)."""
    import jax

    from sgntk import train

    dat = sgdata.unit_circle(c["n_train"], c["n_test"])
    r = train.train_ensemble(
        jax.random.PRNGKey(c["key"]), dat["x_train"], dat["y_train"], dat["x_test"],
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

    dat = sgdata.unit_circle(c["n_train"], c["n_test"])
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
def units(cfg: dict) -> dict:
    """The study's units of work, ``{key: sgntk.runner.Unit}``; keys ``("fig12_rows",)``,
    ``("pred", tag)``, ``("ensemble", tag, width)``, ``("fig12", "gd"|"sgl", m, width)``."""
    net, tr, dat = cfg["net"], cfg["train"], cfg["data"]
    base = dict(n_train=dat["n_train"], n_test=dat["n_test"], sigma_w=net["sigma_w"],
                sigma_b=net["sigma_b"])
    opts = dict(chunk_size=tr["chunk_size"])  # speed only: results do not depend on it
    f12 = cfg["fig12"]
    out = {("fig12_rows",): runner.Unit("analytic/fig12_rows", fig12_rows, dict(
        base, depth=net["depth"], ms=f12["ms"], m_limit=f12["m_limit"]))}
    sets = settings(cfg)
    for s in sets:
        out[("pred", s["tag"])] = runner.Unit(
            f"analytic/pred_{s['tag']}_T{s['steps']}", prediction,
            dict(base, depth=s["depth"], surrogate=s["surrogate"],
                 output_scale=s["output_scale"], record_steps=s["record_steps"],
                 learning_rate=tr["learning_rate"]))
    for s in sets:
        for w in s["widths"]:
            n = _n_nets(cfg, s, w)
            out[("ensemble", s["tag"], w)] = runner.Unit(
                f"ensembles/{s['tag']}_n{w}_N{n}_T{s['steps']}_s{cfg['seed']}", ensemble,
                dict(base, key=cfg["seed"] + 1, depth=s["depth"], surrogate=s["surrogate"],
                     output_scale=s["output_scale"], width=w, n_networks=n, steps=s["steps"],
                     record_steps=s["record_steps"], learning_rate=tr["learning_rate"],
                     dtype=tr["dtype"]), options=opts)
    for fig, sur, kern in (("gd", None, "ntk"), ("sgl", "erf", "sgntk")):
        for m in f12["ms"]:
            for w in f12["widths"]:
                out[("fig12", fig, m, w)] = runner.Unit(
                    f"fig12/{fig}_m{m:g}_n{w}_N{f12['n_networks']}_T{f12['steps']}"
                    f"_s{cfg['seed']}", fig12_kernels,
                    dict(base, key=cfg["seed"], depth=net["depth"], m=m, surrogate=sur,
                         kernel=kern, width=w, n_networks=f12["n_networks"],
                         steps=f12["steps"], learning_rate=tr["learning_rate"],
                         dtype=tr["dtype"]), options=opts)
    return out


# ----------------------------------------------------------------------------- metrics
def agreement_metrics(outputs, mean, var, *, test_points=(10, 30, 50, 70, 90)) -> dict:
    """Ensemble of outputs ``(N, n_test)`` vs a Gaussian prediction ``mean, var (n_test,)``.

    Keys: ``rel_l2_mean`` = ||ens mean - mu||/||mu||; ``rel_l2_mean_noise`` = the value
    expected from the finite ensemble alone, sqrt(sum var / N)/||mu||; ``l2_mean`` (absolute);
    ``var_ratio`` = mean_i var_emp / mean_i var_pred; ``var_ratio_median`` = median_i of the
    pointwise ratio; ``ks`` / ``w1_over_std``: mean over ``test_points`` of the one-sample
    Kolmogorov-Smirnov statistic of the outputs against N(mu_i, var_i) and of the 1-D
    Wasserstein-1 distance (quantile coupling) divided by the predicted std; ``ks_crit95`` =
    1.36/sqrt(N), the KS value a sample of the predicted Gaussian exceeds with 5 % chance.
    """
    from scipy.special import ndtr, ndtri

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
    for i in test_points:
        z = np.sort((y[:, i] - mu[i]) / np.sqrt(v[i]))
        cdf = ndtr(z)
        ks.append(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n)))
        w1.append(np.mean(np.abs(z - q)))
    return dict(l2_mean=l2, rel_l2_mean=l2 / norm_mu if norm_mu > 0 else float("nan"),
                rel_l2_mean_noise=noise / norm_mu if norm_mu > 0 else float("nan"),
                var_ratio=float(evar.mean() / v.mean()),
                var_ratio_median=float(np.median(evar / v)),
                ks=float(np.mean(ks)), ks_crit95=1.36 / np.sqrt(n),
                w1_over_std=float(np.mean(w1)), n_networks=n)


def _agreement(cfg, ens, preds):
    recs = []
    for s in settings(cfg):
        p = preds[s["tag"]]
        for w in s["widths"]:
            e = ens[(s["tag"], w)]
            for j, t in enumerate(e["record_steps"]):
                m = agreement_metrics(e["outputs"][:, j], p["mean"][j], p["var"][j],
                                      test_points=cfg["agreement"]["test_points"])
                recs.append(dict(setting=s["tag"], group=s["group"], surrogate=s["surrogate"],
                                 depth=s["depth"], output_scale=s["output_scale"], width=w,
                                 step=int(t), final=bool(j == len(e["record_steps"]) - 1),
                                 train_loss=float(np.mean(e["train_loss"][:, j])), **m))
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


def format_table(recs, slopes) -> str:
    """The agreement records and width slopes as a fixed-width text table."""
    head = (f"{'setting':<24}{'width':>6}{'N':>5}{'step':>7}{'loss':>9}{'relL2':>8}"
            f"{'noise':>8}{'varR':>7}{'KS':>6}{'KS95':>6}{'W1/sd':>7}")
    lines = [head, "-" * len(head)]
    for r in recs:
        lines.append(f"{r['setting']:<24}{r['width']:>6}{r['n_networks']:>5}{r['step']:>7}"
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
def run(config=None, out: Optional[str] = None, *, force: bool = False,
        progress: bool = True, executor=None, preset=None) -> dict:
    """Compute every panel of the study (resuming from ``out``) and write the summaries.

    Args:
      config: ``"smoke"`` (CI, < 1 min), ``"quick"`` (< 10 min on 2 cores; the default),
        ``"full"`` (the paper's sizes), another config name in :data:`CONFIG_DIR`, a JSON path
        or a dict.
      out: results folder (default ``results/eilers2024-<name>``).
      force: recompute every unit.
      progress: tqdm bar over units of work, and print the table.
      executor: passed to :func:`sgntk.runner.map_units` (parallel / distributed units).
      preset: deprecated name of ``config``.

    Returns:
      dict with ``out``, ``agreement`` (records), ``slopes``, ``kernel_mse``, ``computed`` and
      ``skipped`` (units of work done in this call / found on disk), ``seconds``.
    """
    config = renamed_keyword("config", config, "preset", preset, default="quick")
    cfg = load_config(config)
    out = out or os.path.join("results", f"eilers2024-{cfg['name']}")
    t0 = time.time()
    write_json(os.path.join(out, "config.json"), cfg)
    write_json(os.path.join(out, "versions.json"), versions())
    write_npz(os.path.join(out, "data.npz"), **sgdata.unit_circle(cfg["data"]["n_train"],
                                                                   cfg["data"]["n_test"]))
    us = units(cfg)
    res = runner.map_units(us.values(), out, executor=executor, force=force,
                           progress=progress, desc=f"eilers2024 {cfg['name']}")
    write_json(os.path.join(out, "units.json"),
               {u.name: os.path.relpath(res.paths[u.name], out) for u in us.values()})
    val = {k: res.values[u.name] for k, u in us.items()}
    preds = {k[1]: v for k, v in val.items() if k[0] == "pred"}
    ens = {k[1:]: v for k, v in val.items() if k[0] == "ensemble"}
    f12 = {k[1:]: v for k, v in val.items() if k[0] == "fig12"}
    recs, slopes = _agreement(cfg, ens, preds)
    kmse = _kernel_mse(f12, val[("fig12_rows",)])
    write_json(os.path.join(out, "agreement.json"),
               {"description": agreement_metrics.__doc__.strip(), "config": cfg["name"],
                "records": recs, "slopes": slopes})
    write_json(os.path.join(out, "kernel_mse.json"), kmse)
    table = format_table(recs, slopes)
    write_text(os.path.join(out, "agreement.txt"), table + "\n")
    summary = dict(out=out, computed=res.n_computed, skipped=res.n_skipped,
                   seconds=time.time() - t0)
    write_json(os.path.join(out, "summary.json"), summary)
    if progress:
        print(table)
        print(f"eilers2024 {cfg['name']}: {res.n_computed} units computed, "
              f"{res.n_skipped} resumed, {summary['seconds']:.0f} s -> {out}")
    return dict(summary, agreement=recs, slopes=slopes, kernel_mse=kmse)


def main(argv=None) -> int:
    """``python experiments/eilers2024/run.py CONFIG [--out DIR] [--force] [--no-progress]``."""
    import argparse

    p = argparse.ArgumentParser(description="Run the Eilers et al. (2024) reproduction from a "
                                            "JSON config (resumable).")
    p.add_argument("config", help="JSON config file or config name (smoke, quick, full, ...)")
    p.add_argument("--out", default=None, help="results folder (default results/eilers2024-<name>)")
    p.add_argument("--force", action="store_true", help="recompute finished units")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    run(args.config, out=args.out, force=args.force, progress=not args.no_progress)
    return 0
