"""Figure of the LIF vs QIF study (issue 11, experiment 2) from its results (no computation).

    python paper_figs/qif.py [experiments/qif/results] [--out DIR]

Reads ``summary.json`` and the final units written by ``experiments/qif/run.py`` and writes
``paper_figs/qif/qif.png``, one row per task:

* test accuracy of LIF and QIF at the hyper-parameters each chose from the same grid (bars:
  mean over seeds; dots: seeds);
* the cross-entropy along one random filter-normalised direction in the hidden weights of the
  seed-0 networks (piecewise constant in discrete time for both neurons);
* the surrogate directional derivative along the same line;
* the landscape statistics (mean and standard error over seeds x directions): fraction of
  (grid step, example) pairs where the example's loss jumps, where it jumps while the example's
  hidden spike count stays (spikes only moved), where the count changes, and the gradient
  increment ratio ``mean (Delta g)^2 / (2 var g)``.
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COLORS = {"lif": "tab:blue", "qif": "tab:orange"}
METRICS = [("example_jump_frac", "loss jumps\n(per example)"),
           ("example_shift_frac", "spikes only\nmoved"),
           ("example_count_change_frac", "count\nchanges"), ("grad_incr", "grad incr.")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", default=os.path.join(ROOT, "experiments", "qif", "results"))
    p.add_argument("--out", default=os.path.join(HERE, "qif"))
    args = p.parse_args(argv)
    with open(os.path.join(args.results, "summary.json")) as fh:
        summary = json.load(fh)
    res = summary["results"]
    tasks = sorted({r["task"] for r in res.values()})
    neurons = sorted({r["neuron"] for r in res.values()})
    fig, axes = plt.subplots(len(tasks), 4, figsize=(17, 3.6 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks):
        for k, n in enumerate(neurons):
            r = res[f"{task}/{n}"]
            acc = r["test_accuracy"]
            row[0].bar(k, acc["mean"], color=COLORS.get(n), alpha=0.6)
            row[0].plot(np.full(len(acc["values"]), k), acc["values"], "k.")
            ch = r["chosen"]
            row[0].text(k, 0.02, f"lr {ch['lr']:g}\nbeta {ch['beta']:g}", ha="center",
                        fontsize=8)
            with open(os.path.join(args.results, r["unit_files"][0])) as fh:
                unit = json.load(fh)["result"]
            a = np.asarray(unit["landscape"]["alphas"])
            line = unit["landscape"]["lines"][0]
            row[1].plot(a, line["loss"], color=COLORS.get(n), lw=0.8, label=n.upper(),
                        drawstyle="steps-mid")
            row[2].plot(a, line["grad"], color=COLORS.get(n), lw=0.8, label=n.upper())
            ls = r["landscape"]
            x = np.arange(len(METRICS)) + (k - 0.5 * (len(neurons) - 1)) * 0.35
            row[3].bar(x, [ls[m]["mean"] for m, _ in METRICS], width=0.35,
                       yerr=[ls[m]["se"] or 0 for m, _ in METRICS], color=COLORS.get(n),
                       alpha=0.7, label=n.upper())
        row[0].set_xticks(range(len(neurons)), [n.upper() for n in neurons])
        row[0].set_ylim(0, 1)
        row[0].set_ylabel(f"{task}\ntest accuracy")
        row[1].set_xlabel("a (filter-normalised hidden-weight direction)")
        row[1].set_ylabel("cross-entropy")
        row[2].set_xlabel("a")
        row[2].set_ylabel("surrogate dL/da")
        row[3].set_xticks(range(len(METRICS)), [lab for _, lab in METRICS], fontsize=8)
        row[3].set_ylabel("fraction / ratio")
        for ax in row[1:]:
            ax.legend(fontsize=8)
    cfg = summary["config"]
    fig.suptitle(f"LIF vs QIF, {cfg['train']['n_hidden']} hidden, {cfg['train']['epochs']} epochs, "
                 f"{len(cfg['seeds'])} seeds; landscape: {cfg['landscape']['n_points']} points in "
                 f"[-{cfg['landscape']['radius']:g}, {cfg['landscape']['radius']:g}], "
                 f"{cfg['landscape']['n_examples']} test examples", fontsize=10)
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "qif.png")
    fig.savefig(path, dpi=110)
    print(path)


if __name__ == "__main__":
    main()
