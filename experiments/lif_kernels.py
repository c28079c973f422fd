"""How the LIF SG-NTK changes with the reset (detached vs differentiable) and with recurrence.

    python experiments/lif_kernels.py [--neurons 200000] [--networks 32] [--width 500]
                                      [--out experiments/results/lif_kernels.json]

Two input spike trains of unequal rate (T = 30 steps, 20 inputs), tau_mem = 10, tau_syn = 5,
threshold 0.5, SuperSpike surrogate (fast_sigmoid, sharpness 5), sum-over-time readout,
smoothed true derivative ``spike_sharpness`` m = 5. Rows:

* ``none (analytic)``: :func:`sgntk.lif_kernels.lif_kernels` (exact, no reset);
* ``none`` / ``zero`` / ``subtract`` with detached or differentiable reset: mean-field Monte
  Carlo :func:`sgntk.lif_kernels.lif_kernels_mc` (``--neurons`` sampled neurons, same seed
  for every row, so the NNGP column is identical wherever the forward pass is);
* ``zero + recurrence``: average of empirical kernels over ``--networks`` recurrent
  networks of ``--width`` (sigma_rec = 2), next to the same estimator without recurrence.

Columns: the kernels at (x1, x1), (x1, x2), (x2, x1) [asymmetric SG-NTK], mean +- stderr.
The JSON holds every number of the table.
"""
import argparse
import time

import numpy as np

from sgntk import lif
from sgntk import lif_kernels as LK
from sgntk import surrogates as sg
from sgntk._util import versions, write_json


def _inputs(T=30, n_in=20, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((2, T, n_in)) < np.array([0.15, 0.3])[:, None, None]).astype(float)


def _row(name, mean, stderr=None):
    out = {"variant": name}
    for k in LK.KERNELS:
        m = np.asarray(getattr(mean, k))
        s = None if stderr is None else np.asarray(getattr(stderr, k))
        out[k] = {"mean": m.tolist(), "stderr": None if s is None else s.tolist()}
    return out


def _fmt(entry, i, j):
    m = entry["mean"][i][j]
    s = entry["stderr"]
    return f"{m:8.3f}" + ("          " if s is None else f" +-{s[i][j]:6.3f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, default=200_000)
    ap.add_argument("--networks", type=int, default=32)
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--sigma-rec", type=float, default=2.0)
    ap.add_argument("--out", default="experiments/results/lif_kernels.json")
    args = ap.parse_args(argv)

    x = _inputs()
    base = lif.LIFConfig(tau_mem=10.0, tau_syn=5.0, threshold=0.5, readout="sum",
                         surrogate=sg.get("fast_sigmoid", sharpness=5.0))
    common = dict(spike_sharpness=5.0, sigma_b=0.3)
    rows = []
    t0 = time.perf_counter()
    an = LK.lif_kernels(x, config=base.replace(reset="none"), which=("nngp", "sgntk"), **common)
    rows.append(_row("none (analytic)", LK.LIFKernel(an.nngp, an.sgntk, None)))
    for reset in ("none", "zero", "subtract"):
        for detach in ((True,) if reset == "none" else (True, False)):
            cfg = base.replace(reset=reset, detach_reset=detach)
            est = LK.lif_kernels_mc(x, config=cfg, n_neurons=args.neurons, block=500, seed=1,
                                    progress=False, **common)
            tag = "" if reset == "none" else (" detached" if detach else " differentiable")
            rows.append(_row(f"{reset}{tag} (MC)", est.mean, est.stderr))
    cfg = base.replace(reset="zero")
    for rec in (False, True):
        est = LK.lif_kernels_networks(x, config=cfg, width=args.width, n_networks=args.networks,
                                      recurrent=rec, sigma_rec=args.sigma_rec, seed=2,
                                      batch_size=2, progress=False, **common)
        name = f"zero detached, {'recurrent' if rec else 'feed-forward'} (networks N={args.width})"
        rows.append(_row(name, est.mean, est.stderr))
    elapsed = time.perf_counter() - t0

    pairs = [(0, 0), (0, 1), (1, 0)]
    head = "".join(f"  {k}{p}".ljust(19) for k in LK.KERNELS for p in ("(1,1)", "(1,2)", "(2,1)")
                   if not (k != "sgntk" and p == "(2,1)"))
    print(f"{'variant':<46}{head}")
    for r in rows:
        cells = []
        for k in LK.KERNELS:
            for i, j in pairs:
                if k != "sgntk" and (i, j) == (1, 0):
                    continue
                if r[k]["mean"] is None or np.ndim(r[k]["mean"]) == 0:
                    cells.append("       -          ")
                else:
                    cells.append(_fmt(r[k], i, j) + " ")
        print(f"{r['variant']:<46}" + "".join(cells))
    print(f"({elapsed:.0f} s; NNGP of the networks rows is the noisy y(x) y(x') sample average)")

    meta = dict(T=30, n_in=20, rates=[0.15, 0.3], tau_mem=10.0, tau_syn=5.0, threshold=0.5,
                surrogate="fast_sigmoid(sharpness=5)", kappa="sum", m=5.0, sigma_b=0.3,
                sigma_w=1.0, sigma_o=1.0, sigma_rec=args.sigma_rec, neurons=args.neurons,
                networks=args.networks, width=args.width, seconds=elapsed,
                versions=versions())
    write_json(args.out, {"meta": meta, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
