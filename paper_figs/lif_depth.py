"""Figure of the LIF depth study (issue 9) from its summary (no computation).

    python paper_figs/lif_depth.py [experiments/lif_depth/results/summary.json] [--out DIR]

Reads the summary written by ``experiments/lif_depth/run.py`` and writes
``paper_figs/lif_depth/lif_depth.png``:

* left: 2-norm condition number of the SG-NTK ``K(X, X)`` vs surrogate sharpness, one line per
  depth (solid fast_sigmoid, dashed gaussian);
* middle: smallest real part of its eigenvalues divided by the largest modulus, same lines
  (below 0: gradient flow on the training inputs grows along that eigen-direction);
* right: condition number vs depth at every sharpness (fast_sigmoid), NNGP in grey.
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("summary", nargs="?",
                   default=os.path.join(ROOT, "experiments", "lif_depth", "results", "summary.json"))
    p.add_argument("--out", default=os.path.join(HERE, "lif_depth"))
    args = p.parse_args(argv)
    with open(args.summary) as fh:
        rows = json.load(fh)["rows"]
    depths = sorted({r["depth"] for r in rows})
    shapes = sorted({r["shape"] for r in rows})
    sharp = sorted({r["sharpness"] for r in rows})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(depths)))

    def series(shape, depth, key):
        sel = sorted((r for r in rows if r["shape"] == shape and r["depth"] == depth),
                     key=lambda r: r["sharpness"])
        return [r["sharpness"] for r in sel], sel, [r[key] for r in sel]

    fig, ax = plt.subplots(1, 3, figsize=(12, 3.6))
    for shape, ls in zip(shapes, ["-", "--", ":"]):
        for d, c in zip(depths, colors):
            b, _, cond = series(shape, d, "cond")
            ax[0].loglog(b, cond, ls, color=c, marker="o", ms=3,
                         label=f"depth {d}" if shape == shapes[0] else None)
            b, sel, lo = series(shape, d, "eig_min_real")
            ax[1].semilogx(b, [v / r["eig_max_abs"] for v, r in zip(lo, sel)], ls, color=c,
                           marker="o", ms=3)
    for shape, ls in zip(shapes, ["-", "--", ":"]):
        ax[0].plot([], [], ls, color="k", label=shape)
    ax[0].set(xlabel="surrogate sharpness", ylabel="cond(SG-NTK)", title="condition number")
    ax[0].legend(fontsize=6)
    ax[1].axhline(0.0, color="k", lw=0.6)
    ax[1].set(xlabel="surrogate sharpness", ylabel="min Re(eig) / max |eig|",
              title="min real part of the eigenvalues")
    cm = plt.cm.plasma(np.linspace(0, 0.85, len(sharp)))
    for b, c in zip(sharp, cm):
        sel = sorted((r for r in rows if r["shape"] == shapes[0] and r["sharpness"] == b),
                     key=lambda r: r["depth"])
        ax[2].semilogy([r["depth"] for r in sel], [r["cond"] for r in sel], "-o", color=c, ms=3,
                       label=f"sharpness {b:g}")
    sel = sorted((r for r in rows if r["shape"] == shapes[0] and r["sharpness"] == sharp[0]),
                 key=lambda r: r["depth"])
    ax[2].semilogy([r["depth"] for r in sel], [r["nngp_cond"] for r in sel], "-s", color="0.5",
                   ms=3, label="NNGP")
    ax[2].set(xlabel="depth (hidden LIF layers)", ylabel="condition number",
              title=f"vs depth ({shapes[0]})", xticks=depths)
    ax[2].legend(ncol=2, fontsize=6, loc="center right")
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "lif_depth.png")
    fig.savefig(path, dpi=130)
    print(path)


if __name__ == "__main__":
    main()
