"""Cost of ``sgntk select`` per grid point vs training that configuration (same run).

    python benchmarks/bench_select.py [--n-samples 100] [--steps 100] [--points 4]
                                      [--out benchmarks/results/bench_select.json]

One-hidden-layer LIF network on ``--n-samples`` randman samples of ``--steps`` steps (the issue's
target: 200 configurations in under 10 minutes on a 2-core CPU). Measures, in one process:
the first grid point (compilation included), further points with the same static fields (shape,
reset, recurrence: the compiled kernel functions are reused), and, as the baseline, one
``sgntk.lif_train.train`` run of the same network (20 epochs of Adam on 800 randman samples).
Prints seconds and the ratio per point / training run, and the extrapolated time of the default
200-point grid (5 shapes x 2 resets = 10 static signatures). The machine is shared: compare
ratios, not seconds; the load average is recorded.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-samples", type=int, default=100)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "bench_select.json"))
    args = ap.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
