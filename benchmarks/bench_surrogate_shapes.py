"""Default-kernel cost of every surrogate shape (issue 13): ``kernels.mlp(x, depth=3)`` with the
default kernels (NNGP, naive NTK, SG-NTK, surrogate Gram) at N = 1000, timed next to the
gaussian shape in the same run, and the peak resident memory beyond the result.

Each shape runs in its own subprocess (so peak RSS is per shape): import, build inputs, record
the RSS baseline, call once (compile + run), call again (warm), report both times and
``peak RSS - baseline - result bytes``; then the gaussian shape and the shape again,
alternately in the same process, for the ratio (wall clock and process CPU time: the machine
may be shared, and both calls of a pair see the same load). Inputs ``normal(size=(N, 5))`` (unequal norms, so the
first layer takes the per-pair route; the layers after ``sign`` take the correlation table).

    python benchmarks/bench_surrogate_shapes.py                  # N = 1000, all shapes
    python benchmarks/bench_surrogate_shapes.py --n 10000 --shapes gaussian fast_sigmoid

Writes ``benchmarks/results/bench_surrogate_shapes[_N].{txt,json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np, sgntk
    n, shape, depth = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    x = np.random.default_rng(0).normal(size=(n, 5))

    def call(s):
        t0, c0 = time.perf_counter(), time.process_time()
        k = sgntk.kernels.mlp(x, depth=depth, activation="sign", surrogate=s)
        return k, time.perf_counter() - t0, time.process_time() - c0

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    k, cold, _ = call(shape)
    del k
    k, warm, warm_cpu = call(shape)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = sum(np.asarray(v).nbytes for v in k if v is not None)
    del k
    # The gaussian reference in the same process, interleaved with a second warm call of the
    # shape, so that both see the same machine load: ratio = shape / gaussian (wall and CPU).
    call("gaussian")
    _, g1, gc1 = call("gaussian")
    _, warm2, warm_cpu2 = call(shape)
    _, g2, gc2 = call("gaussian")
    print(json.dumps(dict(shape=shape, n=n, depth=depth, cold_s=cold, warm_s=min(warm, warm2),
                          warm_cpu_s=min(warm_cpu, warm_cpu2), gaussian_warm_s=min(g1, g2),
                          gaussian_warm_cpu_s=min(gc1, gc2),
                          ratio_wall=min(warm, warm2) / min(g1, g2),
                          ratio_cpu=min(warm_cpu, warm_cpu2) / min(gc1, gc2),
                          peak_beyond_result_gb=(peak - base - result) / 2**30,
                          result_gb=result / 2**30)))
""")


def main(argv=None):
    from sgntk import surrogates
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--shapes", nargs="*", default=list(surrogates.SHAPES))
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    shapes = ["gaussian"] + [s for s in args.shapes if s != "gaussian"]
    rows = []
    for shape in shapes:
        res = subprocess.run([sys.executable, "-c", CHILD, str(args.n), shape, str(args.depth)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"{shape} failed:\n{res.stderr[-3000:]}")
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{shape:16s} warm {row['warm_s']:8.2f} s  x gaussian {row['ratio_wall']:6.1f} (wall) "
              f"{row['ratio_cpu']:6.1f} (cpu)  cold {row['cold_s']:8.2f} s  "
              f"peak beyond result {row['peak_beyond_result_gb']:.2f} GB", flush=True)
    load = os.getloadavg()
    lines = [f"kernels.mlp(x, depth={args.depth}, activation='sign', surrogate=shape), default kernels "
             f"(nngp, ntk, sgntk, sg_gram), N = {args.n}, x ~ normal(N, 5); each shape in its own "
             f"process, timed (best of 2 warm calls) next to the gaussian shape in the same process; "
             f"load average at the end {load[0]:.1f} on {os.cpu_count()} cores",
             "", "| shape | warm (s) | x gaussian (wall) | x gaussian (CPU time) | cold incl. compile (s) "
             "| peak RSS beyond result (GB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['warm_s']:.2f} | {r['ratio_wall']:.1f} | {r['ratio_cpu']:.1f} "
                     f"| {r['cold_s']:.1f} | {r['peak_beyond_result_gb']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    suffix = "" if args.n == 1000 else f"_{args.n}"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"bench_surrogate_shapes{suffix}.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, f"bench_surrogate_shapes{suffix}.json"), "w") as f:
        json.dump(dict(rows=rows, load_average=load, cpus=os.cpu_count()), f, indent=1)


if __name__ == "__main__":
    main()
