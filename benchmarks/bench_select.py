"""Cost of ``sgntk select`` per grid point vs training that configuration (same run).

    python benchmarks/bench_select.py [--n-samples 100] [--steps 100] [--points 4]
                                      [--out benchmarks/results/bench_select.json]
    python benchmarks/bench_select.py --full-grid [--workers 2]
                                      [--out benchmarks/results/bench_select_grid.json]

One-hidden-layer LIF network on ``--n-samples`` randman samples of ``--steps`` steps (the issue's
target: 200 configurations in under 10 minutes on a 2-core CPU). Measures, in one process:
the first grid point (compilation included), further points with the same static fields (shape,
reset, recurrence: the compiled kernel functions are reused), and, as the baseline, one
``sgntk.lif_train.train`` run of the same network (20 epochs of Adam on 800 randman samples).
Prints seconds and the ratio per point / training run, and the extrapolated time of the default
200-point grid (5 shapes x 2 resets = 10 static signatures). The machine is shared: compare
ratios, not seconds; the load average is recorded.

``--full-grid``: runs the whole default grid end to end instead, as ``sgntk select --data
randman --n-samples 100 --workers W`` does (``W`` local processes, default 2 = the cores of the
CI-class machine; a fresh results folder, so nothing is resumed), and records its wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-samples", type=int, default=100)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--out", default=None)
    ap.add_argument("--full-grid", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    results = os.path.join(os.path.dirname(__file__), "results")
    if args.full_grid:
        return _full_grid(args, args.out or os.path.join(results, "bench_select_grid.json"))
    args.out = args.out or os.path.join(results, "bench_select.json")
    from sgntk import data, lif_train, select
    from sgntk._util import versions, write_json

    ds = data.randman(nb_samples=max(1, args.n_samples // 10), nb_steps=args.steps, seed=0)
    x, y = ds.spikes[: args.n_samples], ds.labels[: args.n_samples]
    net = select.LIFNetwork()
    sharps = np.geomspace(0.5, 50.0, args.points)
    times = []
    for i, b in enumerate(sharps):
        t0 = time.perf_counter()
        r = select.evaluate_point(net, x, y, point=dict(shape="fast_sigmoid", sharpness=float(b),
                                                        dampening=1.0, sigma_w=10.0))
        times.append(time.perf_counter() - t0)
        print(f"point {i} (sharpness {b:.3g}): {times[-1]:.1f} s, score {r['score']:.3f}",
              flush=True)
    first, warm = times[0], float(np.median(times[1:]))
    cfg = lif_train.TrainConfig(nb_samples=100, nb_steps=args.steps, epochs=20, batch_size=100,
                                init="gaussian", sigma_w=10.0)
    splits = data.split(data.randman(nb_samples=100, nb_steps=args.steps, seed=0))
    t0 = time.perf_counter()
    lif_train.train(cfg, splits, progress=False)
    t_train = time.perf_counter() - t0
    n_sig = 10
    est = n_sig * first + (200 - n_sig) * warm
    res = dict(n_samples=args.n_samples, steps=args.steps, width=net.width,
               n_networks=net.n_networks, first_point_s=first, warm_point_s=warm,
               train_run_s=t_train, warm_over_train=warm / t_train,
               estimated_default_grid_s=est, load_average=os.getloadavg(), versions=versions())
    print(f"first point {first:.1f} s, warm point {warm:.1f} s; one training run {t_train:.1f} s "
          f"(warm point = {warm / t_train:.2f}x a training run); default 200-point grid ~ "
          f"{est / 60:.1f} min (load {os.getloadavg()[0]:.1f})")
    write_json(args.out, res)
    return 0


def _full_grid(args, out) -> int:
    import tempfile

    from sgntk import select
    from sgntk._util import versions, write_json

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        select.main(["--data", "randman", "--n-samples", str(args.n_samples), "--steps",
                     str(args.steps), "--out", tmp, "--workers", str(args.workers),
                     "--no-progress", "--top", "5"])
        wall = time.perf_counter() - t0
        with open(os.path.join(tmp, "select.json")) as f:
            n_points = len(json.load(f)["rows"])
    res = dict(n_samples=args.n_samples, steps=args.steps, workers=args.workers,
               n_points=n_points, wall_s=wall, load_average_start=load0,
               load_average_end=os.getloadavg(), cpus=os.cpu_count(), versions=versions())
    print(f"default grid: {n_points} points in {wall / 60:.1f} min with {args.workers} worker "
          f"processes (load {load0[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end)")
    write_json(out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
