"""N = 20 000 SG-NTK in tiles: wall time and peak memory (run under /usr/bin/time -v).

``python benchmarks/bench_large_n.py [N]`` computes the 20 000 x 20 000 SG-NTK of a depth-3 sign
network with the fast-sigmoid surrogate (tabulated quadrature) through ``sgntk.kernels.mlp``
(tiles of 1024 x 1024), asking only for the SG-NTK so the result (3.2 GB in float64) is the
only large allocation.
"""
import sys
import time

import numpy as np

from sgntk import kernels

n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
x = np.random.default_rng(0).normal(size=(n, 16))
t = time.perf_counter()
k = kernels.mlp(x, depth=3, activation="sign", surrogate="fast_sigmoid", sigma_b=0.1,
                get=("sgntk",), progress=True)
print(f"N = {n}: {time.perf_counter() - t:.1f} s, result {k.sgntk.shape} {k.sgntk.dtype}, "
      f"{k.sgntk.nbytes / 2**30:.2f} GiB, finite: {bool(np.isfinite(np.asarray(k.sgntk)).all())}")
