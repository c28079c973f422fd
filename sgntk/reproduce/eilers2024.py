"""Eilers, Memmesheimer & Goedeke (NeurIPS 2024): SGL-trained networks vs SG-NTK regression.

``run(preset, out=None)`` computes every panel's data and writes it into a per-run folder
(default ``results/eilers2024-<preset>/``); ``paper_figs/eilers2024.py`` turns that folder into
PNGs without computing anything.

Set-up (reference notes ``sg-ntk.md`` Sec. 4): inputs ``x(a) = (sin a, cos a)`` on the unit
circle, 100 test angles ``a_i = 2 pi i/100 - pi``, target ``g(x) = 4 x1 x2^2 - 0.8 x1^3 +
1.2 x2^2 - 0.8 x1^2 x2`` (:func:`sgntk.data.circle_target`), 15 training points. The paper's
training angles are not stated in the material we have, so they are **evenly spaced**,
``a_j = 2 pi j/15 - pi`` (our choice; 5 of them coincide with test angles). Networks: L = 2
hidden layers, ``sigma_w = 1``, ``sigma_b = 0.1``, NTK parameterisation; loss
``1/(2 n) sum (f - y)^2``, full-batch GD with ``eta = 0.1`` (:mod:`sgntk.train`), so the
kernel prediction at step ``k`` is :func:`sgntk.predict.gp_predict` at ``t = k`` with
``learning_rate = eta`` and ``loss_normalization = "mean"``.

Units of work (each one file, skipped when present -> a rerun resumes):

* ``fig12/{gd,sgl}_m{m}_n{width}_N{nets}_T{steps}_s{seed}.npz`` -- empirical kernel rows
  ``Theta(x(0), x(da))`` (Fig. 1: naive NTK of erf_m nets trained by true GD; Fig. 2: SG-NTK of
  erf_m nets trained by SGL with psi' = erf') at t = 0 and after training, plus the losses.
* ``ensembles/{setting}_n{width}_N{nets}_T{steps}_s{seed}.npz`` -- outputs of sign networks
  trained by SGL on the 100 test points at ``record_steps`` (Fig. 3, B.2, agreement study).
* ``analytic/*.npz`` -- analytic kernel rows and GP predictions (cheap, but also cached).

Summaries written every run (cheap, from the units): ``agreement.json`` (one record per
setting, width and time: ensemble vs kernel-regression prediction), ``kernel_mse.json``
(Figs. B.3/B.4), ``config.json``, ``versions.json``, ``summary.json``.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import time
from typing import Optional

import numpy as np

__all__ = ["PRESETS", "run", "circle_data", "settings", "agreement_metrics", "save_npz",
           "save_json"]

_NET = {"depth": 2, "sigma_w": 1.0, "sigma_b": 0.1}

#: The presets (the same dicts as ``experiments/eilers2024/<name>.json``; a test checks that).
PRESETS = {
    "smoke": {
        "name": "smoke", "seed": 0, "net": dict(_NET),
        "train": {"learning_rate": 0.1, "dtype": "float32", "chunk_size": 16},
        "data": {"n_train": 15, "n_test": 100},
        "fig12": {"ms": [2, 20], "widths": [10, 50], "n_networks": 3, "steps": 50,
                  "m_limit": [2, 5, 20, 100, 1000]},
        "fig3": {"surrogate": "erf", "widths": [20, 50], "n_networks": 16, "steps": 100,
                 "record_steps": [0, 50, 100], "output_scale": 1.0, "show_width": 50,
                 "n_networks_by_width": {}},
        "b2": {"output_scale": 0.2, "widths": [50]},
        "agreement": {"test_points": [10, 30, 50, 70, 90]},
        "beyond": {"surrogates": ["fast_sigmoid"], "depths": [1], "widths": [20],
                   "n_networks": 8, "steps": 100, "record_steps": [0, 100]},
    },
    "quick": {
        "name": "quick", "seed": 0, "net": dict(_NET),
        "train": {"learning_rate": 0.1, "dtype": "float32", "chunk_size": 64},
        "data": {"n_train": 15, "n_test": 100},
        "fig12": {"ms": [2, 5, 20], "widths": [10, 100, 500], "n_networks": 4, "steps": 2000,
                  "m_limit": [2, 5, 20, 100, 1000]},
        "fig3": {"surrogate": "erf", "widths": [20, 100, 500], "n_networks": 64,
                 "steps": 3000, "record_steps": [0, 30, 100, 300, 1000, 3000],
                 "output_scale": 1.0, "show_width": 500, "n_networks_by_width": {}},
        "b2": {"output_scale": 0.2, "widths": [500]},
        "agreement": {"test_points": [10, 30, 50, 70, 90]},
        "beyond": {"surrogates": ["fast_sigmoid", "triangular"], "depths": [1, 3, 4],
                   "widths": [20, 100], "n_networks": 64, "steps": 3000,
                   "record_steps": [0, 300, 3000]},
    },
    "full": {
        "name": "full", "seed": 0, "net": dict(_NET),
        "train": {"learning_rate": 0.1, "dtype": "float32", "chunk_size": 100},
        "data": {"n_train": 15, "n_test": 100},
        "fig12": {"ms": [2, 5, 20], "widths": [10, 100, 500, 1000], "n_networks": 10,
                  "steps": 10000, "m_limit": [2, 5, 20, 100, 1000]},
        "fig3": {"surrogate": "erf", "widths": [20, 100, 500, 2000], "n_networks": 500,
                 "steps": 30000,
                 "record_steps": [0, 10, 30, 100, 300, 1000, 3000, 10000, 30000],
                 "output_scale": 1.0, "show_width": 500, "n_networks_by_width": {}},
        "b2": {"output_scale": 0.2, "widths": [500]},
        "agreement": {"test_points": [10, 30, 50, 70, 90]},
        "beyond": {"surrogates": ["fast_sigmoid", "triangular"], "depths": [1, 3, 4],
                   "widths": [20, 100, 500], "n_networks": 100, "steps": 30000,
                   "record_steps": [0, 300, 3000, 30000]},
    },
}

STATS = {"computed": 0, "skipped": 0}  # units of work, for tests and the summary


# ----------------------------------------------------------------------------- I/O
def save_npz(path: str, **arrays) -> None:
    """Atomic ``np.savez_compressed``: write ``path.tmp`` then ``os.replace``."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)


def save_json(path: str, obj) -> None:
    """Atomic JSON write (``path.tmp`` then ``os.replace``)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=float)
    os.replace(tmp, path)


def _unit(path: str, compute):
    """Load ``path`` if present (resume), else ``compute() -> dict of arrays`` and save it."""
    if os.path.exists(path):
        STATS["skipped"] += 1
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    res = compute()
    save_npz(path, **res)
    STATS["computed"] += 1
    return res


def _versions() -> dict:
    import jax
    import optax

    import sgntk
    out = {"python": platform.python_version(), "platform": platform.platform(),
           "sgntk": sgntk.__version__, "jax": jax.__version__, "optax": optax.__version__,
           "numpy": np.__version__, "devices": [str(d) for d in jax.devices()]}
    try:
        import subprocess
        out["git"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                    text=True, cwd=os.path.dirname(__file__)).stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    return out


# ----------------------------------------------------------------------------- data
def circle(angles) -> np.ndarray:
    """``x(a) = (sin a, cos a)`` (reference notes Sec. 1), shape ``(n, 2)``."""
    a = np.asarray(angles, float)
    return np.stack([np.sin(a), np.cos(a)], axis=-1)


def circle_data(n_train: int = 15, n_test: int = 100) -> dict:
    """Test angles ``2 pi i/n_test - pi``; training angles evenly spaced ``2 pi j/n_train - pi``."""
    from ..data import circle_target

    a_te = 2 * np.pi * np.arange(n_test) / n_test - np.pi
    a_tr = 2 * np.pi * np.arange(n_train) / n_train - np.pi
    x_tr, x_te = circle(a_tr), circle(a_te)
    return dict(a_train=a_tr, a_test=a_te, x_train=x_tr, x_test=x_te,
                y_train=circle_target(x_tr), y_test=circle_target(x_te))


# ----------------------------------------------------------------------------- settings
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


# ----------------------------------------------------------------------------- compute
def _fig12(cfg, data, out, bar):
    from .. import train

    f12, net, tr = cfg["fig12"], cfg["net"], cfg["train"]
    x0 = circle([0.0])
    res = {}
    for fig, sur, kern in (("gd", None, "ntk"), ("sgl", "erf", "sgntk")):
        for m in f12["ms"]:
            for w in f12["widths"]:
                name = (f"{fig}_m{m:g}_n{w}_N{f12['n_networks']}_T{f12['steps']}"
                        f"_s{cfg['seed']}.npz")
                bar.set_postfix_str(f"fig12 {name}")

                def compute():
                    import jax
                    r = train.train_ensemble(
                        jax.random.PRNGKey(cfg["seed"]), data["x_train"], data["y_train"],
                        data["x_test"], n_networks=f12["n_networks"], width=w,
                        steps=f12["steps"], activation="erf", m=float(m), surrogate=sur,
                        record_steps=np.unique([0, f12["steps"] // 10, f12["steps"]]),
                        kernel_x1=x0, kernel_x2=data["x_test"], kernels=(kern,),
                        learning_rate=tr["learning_rate"], dtype=tr["dtype"],
                        chunk_size=tr["chunk_size"], **net)
                    return dict(rows_init=getattr(r.kernels_init, kern)[:, 0],
                                rows_final=getattr(r.kernels_final, kern)[:, 0],
                                train_loss=r.train_loss, record_steps=r.record_steps,
                                seconds=np.float64(r.seconds))
                res[(fig, m, w)] = _unit(os.path.join(out, "fig12", name), compute)
                bar.update()
    return res


def _fig12_analytic(cfg, data, out):
    from .. import kernels

    f12, net = cfg["fig12"], cfg["net"]
    x0 = circle([0.0])

    def compute():
        d = {}
        for m in sorted(set(f12["ms"]) | set(f12["m_limit"])):
            k = kernels.mlp(x0, data["x_test"], activation="erf", m=float(m), surrogate="erf",
                            get=("ntk", "sgntk"), **net)
            d[f"ntk_m{m:g}"] = np.asarray(k.ntk)[0]
            d[f"sgntk_m{m:g}"] = np.asarray(k.sgntk)[0]
        d["sgntk_sign"] = np.asarray(kernels.mlp(x0, data["x_test"], activation="sign",
                                                 surrogate="erf", get=("sgntk",),
                                                 **net).sgntk)[0]
        # the naive NTK on a fine grid (its divergence at da = 0 needs resolution)
        fine = np.linspace(-np.pi, np.pi, 801)
        d["fine_angles"] = fine
        for m in f12["m_limit"]:
            d[f"fine_ntk_m{m:g}"] = np.asarray(kernels.mlp(
                x0, circle(fine), activation="erf", m=float(m), get=("ntk",), **net).ntk)[0]
        d["fine_sgntk_sign"] = np.asarray(kernels.mlp(x0, circle(fine), activation="sign",
                                                      surrogate="erf", get=("sgntk",),
                                                      **net).sgntk)[0]
        return d
    return _unit(os.path.join(out, "analytic", "fig12_rows.npz"), compute)


def _prediction(cfg, data, out, s):
    """GP prediction (SG-NTK dynamics, NNGP initial covariance) at the record steps."""
    from .. import kernels, predict

    net = dict(cfg["net"], depth=s["depth"])
    name = f"pred_{s['tag']}_T{s['steps']}.npz"

    def compute():
        xa = np.concatenate([data["x_test"], data["x_train"]])
        nt = data["x_test"].shape[0]
        k = kernels.mlp(xa, xa, activation="sign", surrogate=s["surrogate"],
                        get=("nngp", "sgntk"), **net)
        k2 = s["output_scale"] ** 2
        S, I = k2 * np.asarray(k.nngp), k2 * np.asarray(k.sgntk)
        ts = np.asarray(s["record_steps"], float)
        p = predict.gp_predict(I[:nt, nt:], I[nt:, nt:], data["y_train"], t=ts,
                               learning_rate=cfg["train"]["learning_rate"],
                               loss_normalization="mean", nngp_test_test=S[:nt, :nt],
                               nngp_test_train=S[:nt, nt:], nngp_train_train=S[nt:, nt:])
        p_inf = predict.gp_predict(I[:nt, nt:], I[nt:, nt:], data["y_train"])
        post = predict.nngp_posterior(S[:nt, nt:], S[nt:, nt:], data["y_train"])
        diag = predict.kernel_diagnostics(I[nt:, nt:])
        return dict(t=ts, mean=np.asarray(p.mean),
                    var=np.asarray(np.diagonal(p.cov, axis1=-2, axis2=-1)),
                    mean_inf=np.asarray(p_inf.mean), nngp_posterior_mean=np.asarray(post.mean),
                    sgntk_train=I[nt:, nt:], min_real_eig=np.float64(diag.min_real_part))
    return _unit(os.path.join(out, "analytic", name), compute)


def _ensembles(cfg, data, out, bar):
    import jax

    from .. import train

    tr, net = cfg["train"], cfg["net"]
    res = {}
    for s in settings(cfg):
        for w in s["widths"]:
            n = _n_nets(cfg, s, w)
            name = f"{s['tag']}_n{w}_N{n}_T{s['steps']}_s{cfg['seed']}.npz"
            bar.set_postfix_str(f"ensemble {name}")

            def compute():
                r = train.train_ensemble(
                    jax.random.PRNGKey(cfg["seed"] + 1), data["x_train"], data["y_train"],
                    data["x_test"], n_networks=n, width=w, steps=s["steps"],
                    activation="sign", surrogate=s["surrogate"],
                    output_scale=s["output_scale"], record_steps=s["record_steps"],
                    learning_rate=tr["learning_rate"], dtype=tr["dtype"],
                    chunk_size=tr["chunk_size"], sigma_w=net["sigma_w"],
                    sigma_b=net["sigma_b"], depth=s["depth"])
                return dict(outputs=r.outputs.astype(np.float32), train_loss=r.train_loss,
                            record_steps=r.record_steps, seconds=np.float64(r.seconds))
            res[(s["tag"], w)] = _unit(os.path.join(out, "ensembles", name), compute)
            bar.update()
    return res


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


def _kernel_mse(cfg, f12, an):
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
def load_config(preset) -> dict:
    """A preset name, a path to a JSON config, or a config dict -> config dict (a copy)."""
    if isinstance(preset, dict):
        return copy.deepcopy(preset)
    if preset in PRESETS:
        return copy.deepcopy(PRESETS[preset])
    if isinstance(preset, str) and os.path.exists(preset):
        with open(preset) as f:
            return json.load(f)
    raise ValueError(f"preset must be one of {sorted(PRESETS)}, a JSON file or a dict; "
                     f"got {preset!r}")


def run(preset="quick", out: Optional[str] = None, *, progress: bool = True) -> dict:
    """Compute every panel of the study (resuming from ``out``) and write the summaries.

    Args:
      preset: ``"smoke"`` (CI, < 1 min), ``"quick"`` (< 10 min on 2 cores), ``"full"`` (the
        paper's sizes), a JSON config path or a dict with the keys of :data:`PRESETS`.
      out: results folder (default ``results/eilers2024-<name>``).
      progress: tqdm bar over units of work.

    Returns:
      dict with ``out``, ``agreement`` (records), ``slopes``, ``kernel_mse``, ``computed`` and
      ``skipped`` (units of work done in this call / found on disk), ``seconds``.
    """
    from tqdm.auto import tqdm

    cfg = load_config(preset)
    out = out or os.path.join("results", f"eilers2024-{cfg['name']}")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    STATS.update(computed=0, skipped=0)
    save_json(os.path.join(out, "config.json"), cfg)
    save_json(os.path.join(out, "versions.json"), _versions())
    data = circle_data(cfg["data"]["n_train"], cfg["data"]["n_test"])
    save_npz(os.path.join(out, "data.npz"), **data)
    sets = settings(cfg)
    n_units = (2 * len(cfg["fig12"]["ms"]) * len(cfg["fig12"]["widths"])
               + sum(len(s["widths"]) for s in sets))
    with tqdm(total=n_units, desc=f"eilers2024 {cfg['name']}", disable=not progress) as bar:
        an = _fig12_analytic(cfg, data, out)
        preds = {s["tag"]: _prediction(cfg, data, out, s) for s in sets}
        ens = _ensembles(cfg, data, out, bar)
        f12 = _fig12(cfg, data, out, bar)
    recs, slopes = _agreement(cfg, ens, preds)
    kmse = _kernel_mse(cfg, f12, an)
    save_json(os.path.join(out, "agreement.json"),
              {"description": agreement_metrics.__doc__.strip(), "config": cfg["name"],
               "records": recs, "slopes": slopes})
    save_json(os.path.join(out, "kernel_mse.json"), kmse)
    table = format_table(recs, slopes)
    with open(os.path.join(out, "agreement.txt.tmp"), "w") as f:
        f.write(table + "\n")
    os.replace(os.path.join(out, "agreement.txt.tmp"), os.path.join(out, "agreement.txt"))
    summary = dict(out=out, computed=STATS["computed"], skipped=STATS["skipped"],
                   seconds=time.time() - t0)
    save_json(os.path.join(out, "summary.json"), summary)
    if progress:
        print(table)
        print(f"eilers2024 {cfg['name']}: {STATS['computed']} units computed, "
              f"{STATS['skipped']} resumed, {summary['seconds']:.0f} s -> {out}")
    return dict(summary, agreement=recs, slopes=slopes, kernel_mse=kmse)
