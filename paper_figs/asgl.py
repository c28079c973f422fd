"""Summary and figures of the ASGL experiment (issue 11) from its unit files (no training).

    python paper_figs/asgl.py [experiments/asgl/results] [--out paper_figs/asgl]

Reads the unit files written by ``experiments/asgl/run.py`` and writes

* ``<out>/summary.json``: per task, mode and initial width, the test accuracy over seeds
  (mean, standard deviation, values), the learnt ASGL inverse widths, and the condition
  numbers of the empirical SG-NTK and surrogate Gram on the probe batch at every checkpoint
  (median over seeds); the Spearman correlation, over widths, between the fixed-width SGL
  accuracy and the condition number at initialisation; the paper's CIFAR values for reference.
  ``paper_figs/readme_tables.py`` (block ``asgl``) reads it.
* ``<out>/asgl_accuracy.png``: test accuracy vs width alpha = 1 / (4 beta), SGL vs ASGL, one
  panel per task, and the condition number at initialisation below.
* ``<out>/asgl_conditioning.png``: condition number of the surrogate Gram over training
  (a median that is ``inf``, a singular kernel, is not drawn; ``summary.json`` has it).
* ``<out>/asgl_kernel_grid.png``: condition numbers at initialisation over width x noise rate.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

# Wang et al. 2023, Table (public README): CIFAR test accuracy (%) vs width alpha.
PAPER = {"alpha": [0.5, 1.0, 2.5, 5.0, 10.0],
         "cifar10": {"sgl": [93.19, 93.78, 90.68, 62.34, 30.85],
                     "asgl": [94.11, 94.30, 94.09, 93.61, 93.53]},
         "cifar100": {"sgl": [75.76, 65.19, 15.12, 8.04, 6.14],
                      "asgl": [76.54, 76.09, 76.18, 76.68, 76.00]}}


def _spearman(a, b):
    from scipy import stats

    r = stats.spearmanr(a, b)
    return float(r.correlation if hasattr(r, "correlation") else r[0])


def load_units(results):
    from sgntk import runner

    rows = []
    for path in sorted(glob.glob(os.path.join(results, "*", "*.json"))):
        if os.path.basename(path) == "summary.json":
            continue
        rows.append(runner.load_unit(path))
    return rows


def _kernel_grid(grids) -> list:
    """Median over seeds of the kernel-grid rows, per (mode, factor, noise rate)."""
    keys = sorted({(r["mode"], r["factor"], -1.0 if r["noise_rate"] is None else r["noise_rate"])
                   for g in grids for r in g["rows"]})
    out = []
    for mode, factor, rate in keys:
        sel = [r for g in grids for r in g["rows"] if r["mode"] == mode and r["factor"] == factor
               and (r["noise_rate"] is None if rate < 0 else r["noise_rate"] == rate)]
        out.append(dict(mode=mode, factor=factor, sharpness=sel[0]["sharpness"],
                        alpha=1.0 / (4.0 * sel[0]["sharpness"]),
                        noise_rate=None if rate < 0 else rate, n=len(sel),
                        **{k: float(np.median([r[k] for r in sel]))
                           for k in ("cond_sgntk", "cond_sg_gram")},
                        negative_real_part_sgntk=int(sum(r["min_real_sgntk"] <= 0 for r in sel))))
    return out


def summarise(rows) -> dict:
    out = {"tasks": {}, "paper": PAPER}
    grids = [r for r in rows if "rows" in r]
    rows = [r for r in rows if "rows" not in r]
    out["unit_seconds"] = dict(training=float(sum(r["wall_time_s"] for r in rows)),
                               kernel_grid=float(sum(g["wall_time_s"] for g in grids)),
                               n_training=len(rows), n_kernel_grid=len(grids))
    for task in sorted({r["task"] for r in rows}):
        tr = [r for r in rows if r["task"] == task]
        factors = sorted({r["factor"] for r in tr})
        entries = []
        for factor in factors:
            for mode in ("sgl", "asgl"):
                sel = sorted((r for r in tr if r["factor"] == factor and r["mode"] == mode),
                             key=lambda r: r["seed"])
                if not sel:
                    continue
                acc = [r["test_accuracy"] for r in sel]
                e = dict(mode=mode, factor=factor, sharpness0=sel[0]["sharpness0"],
                         alpha0=1.0 / (4.0 * sel[0]["sharpness0"]), seeds=[r["seed"] for r in sel],
                         test_accuracy=acc, mean=float(np.mean(acc)),
                         std=float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0,
                         n_train=sel[0]["sizes"]["train"], n_test=sel[0]["sizes"]["test"],
                         # running accuracy of the last epoch, on the network trained
                         # (the noisy one for ASGL)
                         train_acc_last_epoch=float(np.mean([r["history"]["train_acc"][-1]
                                                             for r in sel])))
                if mode == "asgl":
                    final = [r["history"]["sharpness"][-1][0] for r in sel]
                    e["sharpness_final"] = final
                    e["alpha_final_median"] = float(np.median([1.0 / (4.0 * b) for b in final]))
                epochs = sorted({int(k) for r in sel for k in r["kernels"]})
                e["condition"] = {
                    kern: {str(ep): float(np.median([r["kernels"][str(ep)][kern]["condition_number"]
                                                     for r in sel if str(ep) in r["kernels"]]))
                           for ep in epochs}
                    for kern in ("sgntk", "sg_gram")}
                e["min_real_part_negative"] = int(sum(
                    v["sgntk"]["min_real_part"] <= 0 for r in sel for v in r["kernels"].values()))
                entries.append(e)
        sgl = [e for e in entries if e["mode"] == "sgl"]
        corr = {}
        if len(sgl) >= 3:
            for kern in ("sgntk", "sg_gram"):
                corr[kern] = _spearman([e["mean"] for e in sgl],
                                       [e["condition"][kern]["0"] for e in sgl])
        out["tasks"][task] = dict(entries=entries, spearman_sgl_accuracy_vs_cond0=corr,
                                  kernel_grid=_kernel_grid([g for g in grids if g["task"] == task]))
    return out


def figures(summary, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(summary["tasks"])
    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks), 7), squeeze=False,
                             sharex=True)
    style = {"sgl": dict(color="C0", marker="o", label="fixed-width SGL"),
             "asgl": dict(color="C3", marker="s", label="ASGL")}
    for j, task in enumerate(tasks):
        ent = summary["tasks"][task]["entries"]
        for mode in ("sgl", "asgl"):
            es = sorted((e for e in ent if e["mode"] == mode), key=lambda e: e["alpha0"])
            a = [e["alpha0"] for e in es]
            axes[0, j].errorbar(a, [e["mean"] for e in es], yerr=[e["std"] for e in es],
                                capsize=3, **style[mode])
            for e in es:
                axes[0, j].scatter([e["alpha0"]] * len(e["test_accuracy"]), e["test_accuracy"],
                                   s=8, color=style[mode]["color"], alpha=0.4)
            axes[1, j].plot(a, [e["condition"]["sg_gram"]["0"] for e in es],
                            color=style[mode]["color"], marker=style[mode]["marker"],
                            label=f"{style[mode]['label']}: J~ J~^T")
            axes[1, j].plot(a, [e["condition"]["sgntk"]["0"] for e in es], ls="--",
                            color=style[mode]["color"], marker=style[mode]["marker"],
                            mfc="none", label=f"{style[mode]['label']}: SG-NTK J J~^T")
        axes[0, j].set_title(f"{task}: test accuracy (hard network)")
        axes[0, j].set_ylim(0, 1)
        axes[1, j].set_title("condition number at initialisation (probe batch)")
        axes[1, j].set_yscale("log")
        axes[1, j].set_xlabel("initial surrogate width alpha = 1 / (4 sharpness)")
        for ax in axes[:, j]:
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test accuracy")
    axes[1, 0].set_ylabel("condition number")
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "asgl_accuracy.png"), dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for j, task in enumerate(tasks):
        ent = summary["tasks"][task]["entries"]
        alphas = sorted({e["alpha0"] for e in ent})
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(alphas)))
        for e in ent:
            c = colors[alphas.index(e["alpha0"])]
            cond = e["condition"]["sg_gram"]
            ep = sorted(int(k) for k in cond)
            axes[0, j].plot(ep, [cond[str(k)] for k in ep], color=c,
                            ls="-" if e["mode"] == "asgl" else ":", marker="o", ms=3,
                            label=f"alpha0 = {e['alpha0']:.3g}" if e["mode"] == "asgl" else None)
        axes[0, j].set_yscale("log")
        axes[0, j].set_xlabel("epoch")
        axes[0, j].set_title(f"{task}: cond(J~ J~^T) during training\n(solid ASGL, dotted SGL)")
        axes[0, j].grid(alpha=0.3)
    axes[0, 0].set_ylabel("condition number (median over seeds)")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "asgl_conditioning.png"), dpi=120)
    plt.close(fig)

    grid_tasks = [t for t in tasks if summary["tasks"][t]["kernel_grid"]]
    if not grid_tasks:
        return
    fig, axes = plt.subplots(2, len(grid_tasks), figsize=(5 * len(grid_tasks), 7), squeeze=False,
                             sharex=True)
    for j, task in enumerate(grid_tasks):
        g = summary["tasks"][task]["kernel_grid"]
        rates = sorted({r["noise_rate"] for r in g if r["mode"] == "asgl"})
        colors = plt.cm.plasma(np.linspace(0, 0.85, len(rates)))
        for i, kern in enumerate(("sg_gram", "sgntk")):
            ax = axes[i, j]
            for c, rate in zip(colors, rates):
                rs = sorted((r for r in g if r["mode"] == "asgl" and r["noise_rate"] == rate),
                            key=lambda r: r["alpha"])
                ax.plot([r["alpha"] for r in rs], [r[f"cond_{kern}"] for r in rs], color=c,
                        marker="s", ms=3, label=f"ASGL, spike-mode rate p = {rate:g}")
            rs = sorted((r for r in g if r["mode"] == "sgl"), key=lambda r: r["alpha"])
            ax.plot([r["alpha"] for r in rs], [r[f"cond_{kern}"] for r in rs], color="k",
                    ls=":", marker="o", ms=3, label="fixed-width SGL")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.set_title(f"{task}: cond " + ("J~ J~^T" if kern == "sg_gram" else "SG-NTK J J~^T")
                         + " at initialisation")
        axes[1, j].set_xlabel("surrogate width alpha = 1 / (4 sharpness)")
    axes[0, 0].set_ylabel("condition number (median over seeds)")
    axes[1, 0].set_ylabel("condition number (median over seeds)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "asgl_kernel_grid.png"), dpi=120)
    plt.close(fig)


def main(argv=None):
    from sgntk._util import write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?",
                   default=os.path.join(ROOT, "experiments", "asgl", "results"))
    p.add_argument("--out", default=os.path.join(HERE, "asgl"))
    p.add_argument("--no-figures", action="store_true")
    args = p.parse_args(argv)
    rows = load_units(args.results)
    if not rows:
        raise SystemExit(f"no unit files under {args.results}")
    os.makedirs(args.out, exist_ok=True)
    summary = summarise(rows)
    write_json(os.path.join(args.out, "summary.json"), summary)
    if not args.no_figures:
        figures(summary, args.out)
    for task, t in summary["tasks"].items():
        for e in t["entries"]:
            extra = (f", alpha -> {e['alpha_final_median']:.3g}" if e["mode"] == "asgl" else "")
            print(f"{task:8s} {e['mode']:5s} alpha0 {e['alpha0']:7.3g}: {e['mean']:.3f} +- "
                  f"{e['std']:.3f} (n={len(e['test_accuracy'])}), cond0 J~J~^T "
                  f"{e['condition']['sg_gram']['0']:.3g}{extra}")
        print(task, "Spearman(SGL accuracy, cond0):", t["spearman_sgl_accuracy_vs_cond0"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
