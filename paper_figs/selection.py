"""Figures and table of the selection validation study (issue 8), from saved results only.

    python paper_figs/selection.py [RESULTS] [--out paper_figs/selection]

``RESULTS`` (default ``experiments/results/selection``) holds ``<task>/validation.json`` written by
``python experiments/selection/validation.py analyse``. For each task: the conditioning score
(``validation.PREREGISTERED``; ``sgntk.select``'s score), the kernel-fit score and the
Herranz-Celotti baseline against the measured test accuracy (mean over seeds +- standard error,
coloured by reset/recurrence condition), and kernel-predicted against measured training loss.
Also writes ``validation.md`` (the correlation table) next to the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONDS = {"ff_detached": "feed-forward, detached reset", "ff_diff": "feed-forward, diff. reset",
         "rec_detached": "recurrent, detached reset", "rec_diff": "recurrent, diff. reset"}


def condition(point) -> str:
    return ("rec" if point["recurrent"] else "ff") + ("_detached" if point["detach_reset"]
                                                      else "_diff")


def table(res: dict) -> str:
    lines = [f"### {res['task']}: {res['n_configs']} configurations x {len(res['seeds'])} seeds "
             f"(score kernel: {res['kernel']}, chosen on half A)", "",
             "| subset | predictor | Spearman vs test accuracy [95 % CI] | predicted best | "
             "its measured rank | in top 3 |", "|---|---|---|---|---|---|"]
    for subset, r in res["correlations"].items():
        for pred, label in (("score", "kernel-fit score"), ("hc_score", "Herranz-Celotti")):
            v = r[pred]["vs_accuracy"]
            lines.append(f"| {subset} | {label} | {v['rho']:+.2f} [{v['ci95'][0]:+.2f}, "
                         f"{v['ci95'][1]:+.2f}] | `{r[pred]['best']}` | "
                         f"{r[pred]['best_measured_rank']} | "
                         f"{'yes' if r[pred]['best_in_top3'] else 'no'} |")
    fp = res.get("fixed_predictors") or {}
    if fp:
        nc = res.get("noise_ceiling") or {}
        lines += ["", "| fixed predictor (all configurations) | status | Spearman vs test "
                  "accuracy [95 % CI] | predicted best | its measured rank |", "|---|---|---|---|---|"]
        for name, v in fp.items():
            a = v["vs_accuracy"]
            status = ("baseline" if name == "hc_score" else "preregistered for this grid"
                      if name in res.get("preregistered", []) else "fixed after seeing this grid")
            lines.append(f"| {name} | {status} | {a['rho']:+.2f} [{a['ci95'][0]:+.2f}, "
                         f"{a['ci95'][1]:+.2f}] | `{v['best']}` | {v['best_measured_rank']} |")
        if nc:
            lines += ["", f"Seeds agree with mean pairwise Spearman {nc['seed_pair_spearman']:+.2f} "
                      f"({nc['seeds']} seeds); the reliability of their mean is "
                      f"{nc['reliability_of_mean']:.2f}, so a perfect predictor of the expected "
                      f"accuracy would reach about {nc['ceiling']:.2f}."]
    lines += ["", "| subset | kernel-predicted vs measured training loss (epoch "
              f"{res['fixed_epoch']}), Spearman [95 % CI] |", "|---|---|"]
    for subset, r in res["correlations"].items():
        v = r["predicted_vs_measured_loss"]
        lines.append(f"| {subset} | {v['rho']:+.2f} [{v['ci95'][0]:+.2f}, {v['ci95'][1]:+.2f}] |")
    return "\n".join(lines)


def figure(res: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    cond_panel = bool(res.get("fixed_predictors"))
    if cond_panel:
        sys.path.insert(0, os.path.join(ROOT, "experiments", "selection"))
        from validation import PREREGISTERED
    fig, axes = plt.subplots(1, 3 + cond_panel, figsize=(14 + 4.5 * cond_panel, 4))
    if cond_panel:   # the preregistered predictor first
        axes = list(axes[1:]) + [axes[0]]
    colors = dict(zip(CONDS, ("C0", "C1", "C2", "C3")))
    for cond, label in CONDS.items():
        rs = [r for r in rows if condition(r["point"]) == cond]
        if not rs:
            continue
        acc = [r["test_accuracy"] for r in rs]
        err = [r["test_accuracy_sem"] for r in rs]
        axes[0].errorbar([r["score"] for r in rs], acc, yerr=err, fmt="o", ms=4,
                         color=colors[cond], label=label)
        axes[1].errorbar([r["hc_score"] for r in rs], acc, yerr=err, fmt="o", ms=4,
                         color=colors[cond], label=label)
        axes[2].plot([max(r["predicted_loss"], 1e-12) for r in rs], [r["train_ce"] for r in rs],
                     "o", ms=4, color=colors[cond], label=label)
        if cond_panel:
            axes[3].errorbar([max(PREREGISTERED["conditioning"](r), -25.0) for r in rs], acc,
                             yerr=err, fmt="o", ms=4, color=colors[cond], label=label)
    c = res["correlations"]["all"]
    axes[0].set(xlabel=f"kernel-fit score: k-fold R^2 ({res['kernel']})",
                ylabel="measured test accuracy",
                title=f"kernel-fit score: Spearman {c['score']['vs_accuracy']['rho']:+.2f}")
    axes[1].set(xlabel="Herranz-Celotti score -|log10 gain|", ylabel="measured test accuracy",
                title=f"baseline: Spearman {c['hc_score']['vs_accuracy']['rho']:+.2f}")
    axes[2].set(xscale="log", xlabel="kernel-predicted relative training loss",
                ylabel=f"measured training CE, epoch {res['fixed_epoch']}",
                title=f"Spearman {c['predicted_vs_measured_loss']['rho']:+.2f}")
    if cond_panel:
        fc = res["fixed_predictors"]["conditioning"]["vs_accuracy"]
        status = ("preregistered" if "conditioning" in res.get("preregistered", [])
                  else "fixed after seeing these results")
        axes[3].set(xlabel="conditioning: log10 lambda_min(normalised Gram) - |log10 gain|\n"
                    "(symmetric log scale, clipped at -25)", ylabel="measured test accuracy", xscale="symlog",
                    title=f"conditioning ({status}): Spearman {fc['rho']:+.2f}")
        axes[3].legend(fontsize=7)
    else:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"{res['task']}: {res['n_configs']} LIF configurations x "
                 f"{len(res['seeds'])} seeds")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="?",
                    default=os.path.join(ROOT, "experiments", "results", "selection"))
    ap.add_argument("--out", default=os.path.join(ROOT, "paper_figs", "selection"))
    args = ap.parse_args(argv)
    parts = []
    for task in ("randman", "digits"):
        p = os.path.join(args.results, task, "validation.json")
        if not os.path.exists(p):
            print(f"no {p}; skipped")
            continue
        with open(p) as f:
            res = json.load(f)
        if res["n_configs"] < 3:
            print(f"{task}: only {res['n_configs']} configurations finished; skipped")
            continue
        print(figure(res, os.path.join(args.out, f"validation_{task}.png")))
        parts.append(table(res))
    if parts:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "validation.md"), "w") as f:
            f.write("\n\n".join(parts) + "\n")
        print("\n\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
