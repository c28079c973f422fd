"""Figures of Eilers, Memmesheimer & Goedeke (2024) from a results folder (no computation).

    python paper_figs/eilers2024.py [results/eilers2024-quick] [--out DIR]

Reads the folder written by ``sgntk reproduce eilers2024`` (``experiments/eilers2024/study.py``;
unit files are found through its ``units.json``) and writes PNGs into
``paper_figs/eilers2024/<config name>/`` (default) together with copies of the small summaries
(``agreement.json``, ``agreement.txt``, ``kernel_mse.json``, ``config.json``, ``versions.json``),
so the committed figures and numbers sit side by side:

* ``fig1.png`` -- naive NTK rows of erf_m nets (true GD), t = 0 and trained, vs analytic; the
  diverging m -> inf limit (asinh y-axis).
* ``fig2.png`` -- SG-NTK rows of erf_m nets (SGL, erf' surrogate) vs analytic; I_erf_m -> I_sign.
* ``fig3a.png`` / ``figB2.png`` -- sign nets (erf' surrogate): individual nets, their mean, SG-NTK
  GP mean +- 2 std, NNGP posterior mean (output scale 1 / 0.2).
* ``fig3b.png`` -- network means for several widths vs the SG-NTK mean.
* ``figB3_B4.png`` -- MSE between empirical and analytic kernel rows vs width.
* ``agreement.png`` -- ensemble vs kernel-regression prediction: mean error vs width and time,
  variance ratio, for every setting (paper's and beyond).
"""
import argparse
import fnmatch
import glob
import json
import os
import shutil

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sgntk.runner import load_unit  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 7,
                     "figure.dpi": 110})


def _one(res, name):
    """The result of the unit whose name matches the pattern ``name`` in the folder ``res``:
    looked up in the run's ``units.json`` (this run's files; files left by changed configs are
    ignored), or by ``glob`` in result folders written before ``units.json`` existed."""
    manifest = os.path.join(res, "units.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            units = json.load(f)
        files = sorted(os.path.join(res, p) for n, p in units.items() if fnmatch.fnmatch(n, name))
    else:
        files = sorted(glob.glob(os.path.join(res, name + "*.npz")))
    if not files:
        raise FileNotFoundError(f"no results matching {name!r} in {res}; run "
                                "`sgntk reproduce eilers2024` first")
    return load_unit(files[0])


def _save(fig, out, name):
    """tight_layout, write ``out/name`` and close the figure; returns the path."""
    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path)
    plt.close(fig)
    return path


def _setting_tag(s, d, k):
    return f"sign-{s}-L{d}-k{k:g}"


def fig12(res, cfg, out, which):
    f12 = cfg["fig12"]
    an = _one(res, "analytic/fig12_rows")
    data = load_unit(os.path.join(res, "data.npz"))
    da = data["a_test"]
    prefix, key = ("gd", "ntk") if which == 1 else ("sgl", "sgntk")
    ms = f12["ms"]
    fig, axes = plt.subplots(2, len(ms) + 1, figsize=(3.1 * (len(ms) + 1), 5.6))
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(f12["widths"])))
    for j, m in enumerate(ms):
        for row, when in enumerate(("init", "final")):
            ax = axes[row, j]
            for c, w in zip(colors, f12["widths"]):
                r = _one(res, f"fig12/{prefix}_m{m:g}_n{w}_N*")
                rows = r[f"rows_{when}"]
                for k, y in enumerate(rows):
                    ax.plot(da, np.arcsinh(y), color=c, lw=0.6, alpha=0.6,
                            label=f"n={w}" if k == 0 else None)
            ax.plot(da, np.arcsinh(an[f"{key}_m{m:g}"]), "k--", lw=1.5, label="analytic")
            steps = f12.get("steps_gd" if which == 1 else "steps_sgl", f12.get("steps"))
            t = "t = 0" if when == "init" else f"after {steps} steps"
            ax.set_title(f"m = {m:g}, {t}")
            ax.set_xlim(-np.pi, np.pi)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(("asinh NTK " if which == 1 else "asinh SG-NTK ")
                              + r"$\Theta(x_0, x_{\Delta a})$")
            if row == 1:
                ax.set_xlabel(r"$\Delta a$")
    axes[0, 0].legend(loc="upper left")
    ax = axes[0, -1]
    fine = an["fine_angles"]
    lc = plt.cm.plasma(np.linspace(0, 0.85, len(f12["m_limit"])))
    for c, m in zip(lc, f12["m_limit"]):
        if which == 1:
            ax.plot(fine, np.arcsinh(an[f"fine_ntk_m{m:g}"]), color=c, label=f"m={m:g}")
        else:
            ax.plot(da, np.arcsinh(an[f"sgntk_m{m:g}"]), color=c, label=f"m={m:g}")
    if which == 1:
        ax.set_title(r"analytic NTK, $m\to\infty$ diverges at $\Delta a=0$")
    else:
        ax.plot(fine, np.arcsinh(an["fine_sgntk_sign"]), "k--", lw=1.5, label=r"$I_{sign}$")
        ax.set_title(r"analytic $I_{erf_m} \to I_{sign}$")
    ax.legend()
    ax.set_xlim(-np.pi, np.pi)
    ax.set_xlabel(r"$\Delta a$")
    ax.grid(alpha=0.3)
    # bottom right: analytic limit at the peak vs m
    ax = axes[1, -1]
    mm = np.asarray(f12["m_limit"], float)
    i0 = np.argmin(np.abs(fine))
    if which == 1:
        peak = [an[f"fine_ntk_m{m:g}"][i0] for m in f12["m_limit"]]
        ax.loglog(mm, peak, "o-")
        ax.set_title(r"NTK$(x_0, x_0)$ vs m")
        ax.set_ylabel("NTK at $\\Delta a = 0$")
    else:
        j0 = np.argmin(np.abs(da))
        err = [np.max(np.abs(an[f"sgntk_m{m:g}"] - an["sgntk_sign"])) for m in f12["m_limit"]]
        ax.loglog(mm, err, "o-", label="max |I_erf_m - I_sign|")
        ax.loglog(mm, err[0] * mm[0] / mm, "k:", label="~1/m")
        ax.set_title(r"$I_{erf_m} \to I_{sign}$ (error vs m)")
        ax.legend()
        del j0
    ax.set_xlabel("m")
    ax.grid(alpha=0.3, which="both")
    name = "Fig. 1: erf_m nets trained by true GD" if which == 1 else \
        "Fig. 2: erf_m nets trained by SGL (erf' surrogate)"
    fig.suptitle(f"{name}; {f12['n_networks']} nets per width ({cfg['name']} preset)")
    return _save(fig, out, f"fig{which}.png")


def _pred(res, tag):
    return _one(res, f"analytic/pred_{tag}_T*")


def _ensemble(res, tag, w):
    """All blocks of the ensemble ``tag`` at width ``w`` (a split ensemble's ``_b<k>`` units,
    in block order), concatenated along the network axis."""
    manifest = os.path.join(res, "units.json")
    with open(manifest) as f:
        names = sorted(n for n in json.load(f) if fnmatch.fnmatch(n, f"ensembles/{tag}_n{w}_N*"))
    if len(names) <= 1:
        return _one(res, f"ensembles/{tag}_n{w}_N*")
    names.sort(key=lambda n: int(n.rsplit("_b", 1)[1]))
    parts = [_one(res, n) for n in names]
    return dict(parts[0], outputs=np.concatenate([p["outputs"] for p in parts]))


def fig3a(res, cfg, out, scale, fname):
    f3 = cfg["fig3"]
    depth = cfg["net"]["depth"]
    tag = _setting_tag(f3["surrogate"], depth, scale)
    w = f3["show_width"] if scale == f3["output_scale"] else cfg["b2"]["widths"][-1]
    e = _ensemble(res, tag, w)
    p = _pred(res, tag)
    data = load_unit(os.path.join(res, "data.npz"))
    a = data["a_test"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ys = e["outputs"][:, -1]
    for k, y in enumerate(ys[:40]):
        ax.plot(a, y, color="0.6", lw=0.5, alpha=0.5, label="individual nets" if k == 0 else None)
    mu, sd = p["mean"][-1], np.sqrt(np.maximum(p["var"][-1], 0))
    ax.fill_between(a, mu - 2 * sd, mu + 2 * sd, color="C3", alpha=0.2,
                    label=r"SG-NTK GP mean $\pm$ 2 std")
    ax.plot(a, mu, "C3", lw=2, label="SG-NTK GP mean")
    ax.plot(a, ys.mean(0), "C0", lw=2, ls="--", label=f"mean of {len(ys)} nets")
    ax.plot(a, p["nngp_posterior_mean"], "C2", lw=1.5, ls=":", label="NNGP posterior mean")
    ax.plot(a, data["y_test"], "k", lw=0.8, alpha=0.7, label="target g")
    ax.plot(data["a_train"], data["y_train"], "ko", ms=4, label="training points")
    ax.plot(a, p["mean_inf"], "C1", lw=1, ls="-.", label="SG-NTK GP mean, t = inf")
    steps = int(e["record_steps"][-1])
    ax.set(xlabel="angle a", ylabel="f(x(a))",
           title=f"sign nets, width {w}, erf' surrogate, output scale {scale:g}, "
                 f"{steps} SGL steps (t = {steps})")
    ax.legend(ncol=2, loc="lower left")
    ax.grid(alpha=0.3)
    lo, hi = np.percentile(ys, [1, 99])
    ax.set_ylim(min(lo, data["y_test"].min()) - 0.5, max(hi, data["y_test"].max()) + 0.5)
    return _save(fig, out, fname)


def fig3b(res, cfg, out):
    f3 = cfg["fig3"]
    tag = _setting_tag(f3["surrogate"], cfg["net"]["depth"], f3["output_scale"])
    p = _pred(res, tag)
    data = load_unit(os.path.join(res, "data.npz"))
    a = data["a_test"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(f3["widths"])))
    for c, w in zip(colors, f3["widths"]):
        e = _ensemble(res, tag, w)
        ax.plot(a, e["outputs"][:, -1].mean(0), color=c, lw=1.5,
                label=f"mean of {e['outputs'].shape[0]} nets, n={w}")
    ax.plot(a, p["mean"][-1], "C3", lw=2, ls="--", label="SG-NTK GP mean")
    ax.plot(data["a_train"], data["y_train"], "ko", ms=4, label="training points")
    ax.set(xlabel="angle a", ylabel="f(x(a))",
           title=f"Fig. 3b: network means converge to the SG-NTK mean "
                 f"({f3['steps']} SGL steps)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, out, "fig3b.png")


def fig_b3b4(res, cfg, out):
    with open(os.path.join(res, "kernel_mse.json")) as f:
        recs = json.load(f)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, figname, title in ((axes[0], "fig1", "B.3: naive NTK (true GD)"),
                               (axes[1], "fig2", "B.4: SG-NTK (SGL)")):
        for i, m in enumerate(cfg["fig12"]["ms"]):
            for when, ls, mk in (("init", "-", "o"), ("final", "--", "s")):
                rr = sorted([r for r in recs if r["figure"] == figname and r["m"] == m
                             and r["time"] == when], key=lambda r: r["width"])
                ax.loglog([r["width"] for r in rr], [r["mse"] for r in rr], ls, marker=mk,
                          color=f"C{i}", label=f"m={m:g}, {'t=0' if when == 'init' else 'trained'}")
        ws = np.array(cfg["fig12"]["widths"], float)
        ref = [r["mse"] for r in recs if r["figure"] == figname and r["time"] == "init"
               and r["width"] == ws[0]]
        ax.loglog(ws, max(ref) * ws[0] / ws, "k:", label="~1/width")
        ax.set(xlabel="width n", ylabel="MSE(empirical row, analytic row)", title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(ncol=2)
    return _save(fig, out, "figB3_B4.png")


def fig_agreement(res, cfg, out):
    with open(os.path.join(res, "agreement.json")) as f:
        ag = json.load(f)
    recs = [r for r in ag["records"] if r.get("prediction", "t") == "t"]
    tags = list(dict.fromkeys(r["setting"] for r in recs))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    for i, tag in enumerate(tags):
        fin = sorted([r for r in recs if r["setting"] == tag and r["final"]],
                     key=lambda r: r["width"])
        w = [r["width"] for r in fin]
        axes[0].loglog(w, [r["rel_l2_mean"] for r in fin], "o-", color=f"C{i}", label=tag)
        axes[0].loglog(w, [r["rel_l2_mean_noise"] for r in fin], ":", color=f"C{i}")
        axes[2].semilogx(w, [r["var_ratio"] for r in fin], "o-", color=f"C{i}", label=tag)
    axes[0].set(xlabel="width", ylabel="||mean_nets - mu_GP|| / ||mu_GP||",
                title="end of training (dotted: ensemble-noise floor)")
    f3tag = tags[0]
    for j, w in enumerate(sorted({r["width"] for r in recs if r["setting"] == f3tag})):
        rr = [r for r in recs if r["setting"] == f3tag and r["width"] == w and r["step"] > 0]
        axes[1].loglog([r["step"] for r in rr], [r["rel_l2_mean"] for r in rr], "o-",
                       color=plt.cm.viridis(j / 4), label=f"n={w}")
        axes[1].loglog([r["step"] for r in rr], [r["rel_l2_mean_noise"] for r in rr], ":",
                       color=plt.cm.viridis(j / 4))
    axes[1].set(xlabel="SGL step t", ylabel="rel. L2 mean error", title=f"{f3tag} during training")
    axes[2].axhline(1, color="k", lw=0.8)
    axes[2].set(xlabel="width", ylabel="mean var_nets / mean var_GP",
                title="variance ratio at the end of training")
    widths = sorted({r["width"] for r in recs})
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    for ax in (axes[0], axes[2]):
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].legend(fontsize=6)
    axes[1].legend()
    return _save(fig, out, "agreement.png")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default="results/eilers2024-quick")
    ap.add_argument("--out", default=None,
                    help="PNG folder (default paper_figs/eilers2024/<config name>)")
    args = ap.parse_args(argv)
    with open(os.path.join(args.results, "config.json")) as f:
        cfg = json.load(f)
    out = args.out or os.path.join(HERE, "eilers2024", cfg["name"])
    os.makedirs(out, exist_ok=True)
    made = []
    if cfg["fig12"]["widths"]:
        made += [fig12(args.results, cfg, out, 1), fig12(args.results, cfg, out, 2),
                 fig_b3b4(args.results, cfg, out)]
    made.append(fig3a(args.results, cfg, out, cfg["fig3"]["output_scale"], "fig3a.png"))
    if cfg["b2"]["widths"]:
        made.append(fig3a(args.results, cfg, out, cfg["b2"]["output_scale"], "figB2.png"))
    made += [fig3b(args.results, cfg, out), fig_agreement(args.results, cfg, out)]
    for name in ("agreement.json", "agreement.txt", "kernel_mse.json", "config.json",
                 "versions.json", "summary.json", "paper_values.json", "paper_values.txt"):
        src = os.path.join(args.results, name)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(out, name))
    print("\n".join(made))


if __name__ == "__main__":
    main()
