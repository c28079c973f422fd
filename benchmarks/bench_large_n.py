"""N = 20 000 SG-NTK in tiles: wall time and peak memory.

``python benchmarks/bench_large_n.py [N] [--out benchmarks/results]`` computes the N x N SG-NTK
of a depth-3 sign network with the fast-sigmoid surrogate (tabulated quadrature) through
``sgntk.kernels.mlp`` (tiles of 1024 x 1024), asking only for the SG-NTK so the result (3.0 GiB
in float64 for N = 20 000) is the only large allocation. Prints one line and writes
``bench_large_n.json`` (wall time, peak resident memory of the process from ``getrusage``,
result size, load average, versions) to ``--out``; ``paper_figs/readme_tables.py`` reads it.
"""
import argparse
import os
import resource
import time

import numpy as np

from sgntk import kernels
from sgntk._util import versions, write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=20_000)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    n = args.n
    x = np.random.default_rng(0).normal(size=(n, 16))
    load_before = os.getloadavg()
    t = time.perf_counter()
    k = kernels.mlp(x, depth=3, activation="sign", surrogate="fast_sigmoid", sigma_b=0.1,
                    which=("sgntk",), tile_size=1024, progress=True)
    seconds = time.perf_counter() - t
    sgntk = np.asarray(k.sgntk)
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # KiB on Linux
    result = dict(n=n, depth=3, activation="sign", surrogate="fast_sigmoid", sigma_b=0.1,
                  tile_size=1024, seconds=round(seconds, 1), peak_rss_gib=round(peak_rss_gib, 2),
                  result_gib=round(sgntk.nbytes / 2**30, 2), dtype=str(sgntk.dtype),
                  finite=bool(np.isfinite(sgntk).all()), cpus=os.cpu_count(),
                  load_average_before=[round(v, 2) for v in load_before],
                  load_average_after=[round(v, 2) for v in os.getloadavg()], versions=versions())
    print(f"N = {n}: {seconds:.1f} s, peak RSS {peak_rss_gib:.2f} GiB, result {sgntk.shape} "
          f"{sgntk.dtype} {result['result_gib']:.2f} GiB, finite: {result['finite']}, "
          f"load average before {result['load_average_before']} after "
          f"{result['load_average_after']} ({os.cpu_count()} CPUs)")
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "bench_large_n.json"), result)


if __name__ == "__main__":
    main()
