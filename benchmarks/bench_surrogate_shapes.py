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
    python benchmarks/bench_surrogate_shapes.py --n 10000 --tiles --shapes gaussian triangular

``--tiles``: each call streams the kernels tile by tile to ``.npy`` files in a temporary folder
(``kernels.mlp(..., tiles=folder)``, tiles of 1024), so the result is on disk, not in memory;
each shape is then called once (compile included) and once more for the gaussian reference,
and the peak RSS beyond the baseline is reported (no result is held in memory).

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
    import json, resource, sys, tempfile, time
    import numpy as np, sgntk
    n, shape, depth, tiled = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    x = np.random.default_rng(0).normal(size=(n, 5))

    def call(s):
        t0, c0 = time.perf_counter(), time.process_time()
        if tiled:
            with tempfile.TemporaryDirectory() as folder:
                k = sgntk.kernels.mlp(x, depth=depth, activation="sign", surrogate=s, tiles=folder,
                                      progress=False)
                assert not any(np.isnan(np.asarray(v[-1])).any() for v in k if v is not None)
                k = None
        else:
            k = sgntk.kernels.mlp(x, depth=depth, activation="sign", surrogate=s)
        return k, time.perf_counter() - t0, time.process_time() - c0

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if tiled:   # large N: one call each (compile included; it is seconds against minutes)
        _, t_shape, c_shape = call(shape)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        _, t_g, c_g = call("gaussian")
        print(json.dumps(dict(shape=shape, n=n, depth=depth, tiles=True, wall_s=t_shape,
                              cpu_s=c_shape, gaussian_wall_s=t_g, gaussian_cpu_s=c_g,
                              ratio_wall=t_shape / t_g, ratio_cpu=c_shape / c_g,
                              peak_beyond_baseline_gb=(peak - base) / 2**30)))
        sys.exit(0)
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
    from sgntk._util import write_json, write_text
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--shapes", nargs="*", default=list(surrogates.SHAPES))
    p.add_argument("--tiles", action="store_true", help="stream tiles to disk (large N)")
    p.add_argument("--resume", action="store_true",
                   help="keep every shape already in the results file (also those not in --shapes) "
                        "and measure only the missing ones")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    shapes = ["gaussian"] + [s for s in args.shapes if s != "gaussian"]
    suffix = ("" if args.n == 1000 else f"_{args.n}") + ("_tiles" if args.tiles else "")
    json_path = os.path.join(args.out, f"bench_surrogate_shapes{suffix}.json")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    if args.resume and os.path.exists(json_path):      # every shape already measured is kept
        with open(json_path) as f:
            rows = json.load(f)["rows"]
    for shape in shapes:
        if any(r["shape"] == shape for r in rows):
            continue
        res = subprocess.run([sys.executable, "-c", CHILD, str(args.n), shape, str(args.depth),
                              "1" if args.tiles else "0"],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"{shape} failed:\n{res.stderr[-3000:]}")
        row = json.loads(res.stdout.strip().splitlines()[-1])
        row["load_average"] = os.getloadavg()[0]      # at the end of this shape's run
        rows.append(row)
        order = ["gaussian"] + [s for s in surrogates.SHAPES if s != "gaussian"]
        rows.sort(key=lambda r: order.index(r["shape"]) if r["shape"] in order else len(order))
        if args.tiles:
            print(f"{shape:16s} {row['wall_s']:8.1f} s  x gaussian {row['ratio_wall']:6.1f} (wall) "
                  f"{row['ratio_cpu']:6.1f} (cpu)  peak beyond baseline "
                  f"{row['peak_beyond_baseline_gb']:.2f} GB", flush=True)
        else:
            print(f"{shape:16s} warm {row['warm_s']:8.2f} s  x gaussian {row['ratio_wall']:6.1f} (wall) "
                  f"{row['ratio_cpu']:6.1f} (cpu)  cold {row['cold_s']:8.2f} s  "
                  f"peak beyond result {row['peak_beyond_result_gb']:.2f} GB", flush=True)
        write_json(json_path, dict(rows=rows, load_average=os.getloadavg(), cpus=os.cpu_count()))
    load = os.getloadavg()
    if args.tiles:
        lines = [f"kernels.mlp(x, depth={args.depth}, activation='sign', surrogate=shape, tiles=folder), "
                 f"default kernels, N = {args.n}, x ~ normal(N, 5), tiles of 1024 streamed to disk; "
                 f"one call per shape (compile included) and one gaussian call in the same process; "
                 f"{os.cpu_count()} cores, load average after each shape's run in the last column "
                 f"(rows kept with --resume come from earlier runs)",
                 "", "| shape | wall (s) | x gaussian (wall) | x gaussian (CPU time) "
                 "| peak RSS beyond baseline (GB) | load |", "|---|---|---|---|---|---|"]
        for r in rows:
            ld = f"{r['load_average']:.1f}" if "load_average" in r else "-"
            lines.append(f"| {r['shape']} | {r['wall_s']:.1f} | {r['ratio_wall']:.1f} | "
                         f"{r['ratio_cpu']:.1f} | {r['peak_beyond_baseline_gb']:.2f} | {ld} |")
    else:
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
    write_text(os.path.join(args.out, f"bench_surrogate_shapes{suffix}.txt"), text)
    write_json(json_path, dict(rows=rows, load_average=load, cpus=os.cpu_count()))

if __name__ == "__main__":
    main()
