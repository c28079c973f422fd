"""Throughput of sharded kernels vs device count (forced host CPU devices, or the GPUs there are).

``python benchmarks/bench_sharding.py [--n 2048] [--tile 256] [--devices 1 2 4] [--out DIR]``

For each device count ``D`` a fresh process is started with
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (the flag must be set before JAX starts;
on a GPU host ``--platform gpu`` uses the first ``D`` GPUs instead). In that process the N x N
SG-NTK of a depth-3 sign network with the fast-sigmoid surrogate (the route of
``bench_large_n.py``) is computed

* by the default single-device ``kernels.mlp`` (the baseline, measured in the same process),
* with ``mesh="all"`` (tiles on all D devices, rows of the result sharded in memory),
* with ``tiles=<tmp>`` (streamed to an on-disk ``.npy`` memmap on all D devices),

each once to compile and then ``--repeats`` times, the three interleaved so that a change of
the machine's load hits all of them (best time kept); every result is checked
against the baseline (max relative difference). Prints one line per device count and writes
``bench_sharding.json`` (pairs per second, ratios to the baseline of the same process and to
the 1-device sharded run, load average, versions) to ``--out``. On a CPU the forced devices
share the machine's cores (XLA already uses every core for one device), so the ratios measure
the overhead of the sharded and on-disk paths there, not a speed-up; on a multi-GPU host they
measure the scaling. ``paper_figs/readme_tables.py`` reads the JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(r'''
    import json, os, sys, tempfile, time
    import numpy as np
    import jax
    from sgntk import kernels, sharding
    n, tile, repeats, platform = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    want = int(sys.argv[5])
    devices = jax.devices()[:want]
    mesh = sharding.device_mesh(devices)
    x = np.random.default_rng(0).normal(size=(n, 16))
    kw = dict(depth=3, activation="sign", surrogate="fast_sigmoid", sigma_b=0.1,
              which=("sgntk",), tile_size=tile, progress=False)

    def block(k):
        v = k.sgntk
        if isinstance(v, jax.Array):
            v.block_until_ready()
        return v

    tmp = tempfile.mkdtemp()
    runs = iter(range(1000))
    modes = {
        "baseline": lambda: block(kernels.mlp(x, **kw)),
        "sharded": lambda: block(kernels.mlp(x, mesh=mesh, **kw)),
        "on_disk": lambda: block(kernels.mlp(x, tiles=os.path.join(tmp, str(next(runs))),
                                             mesh=mesh, **kw)),
    }
    outs = {name: fn() for name, fn in modes.items()}     # compile
    times = {name: [] for name in modes}
    for _ in range(repeats):          # interleaved, so a change of machine load hits all three
        for name, fn in modes.items():
            t = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t)
    t_base, t_mesh, t_disk = (min(times[k]) for k in ("baseline", "sharded", "on_disk"))
    base, shd, dsk = np.asarray(outs["baseline"]), outs["sharded"], outs["on_disk"]
    rel = lambda a: float(np.max(np.abs(np.asarray(a) - base) / np.maximum(1, np.abs(base))))
    print("RESULT " + json.dumps(dict(
        devices=len(devices), platform=devices[0].platform, device_kind=devices[0].device_kind,
        baseline_s=t_base, sharded_s=t_mesh, on_disk_s=t_disk, all_times_s=times,
        shards=len(shd.sharding.device_set) if isinstance(shd, jax.Array) else None,
        max_rel_diff_sharded=rel(shd), max_rel_diff_on_disk=rel(dsk))))
''')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--platform", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    from sgntk._util import versions, write_json

    rows = []
    load_before = os.getloadavg()
    for d in args.devices:
        env = dict(os.environ, JAX_PLATFORMS=args.platform)
        if args.platform == "cpu":
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={d}"
        proc = subprocess.run([sys.executable, "-c", CHILD, str(args.n), str(args.tile),
                               str(args.repeats), args.platform, str(d)], env=env,
                              capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.exit(f"device count {d} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(lines[-1][len("RESULT "):])
        pairs = args.n ** 2
        r.update(pairs_per_s_baseline=pairs / r["baseline_s"],
                 pairs_per_s_sharded=pairs / r["sharded_s"],
                 pairs_per_s_on_disk=pairs / r["on_disk_s"],
                 sharded_vs_baseline=r["baseline_s"] / r["sharded_s"],
                 on_disk_vs_baseline=r["baseline_s"] / r["on_disk_s"])
        rows.append(r)
        print(f"{r['devices']} {r['platform']} device(s): baseline {r['baseline_s']:.2f} s, "
              f"sharded {r['sharded_s']:.2f} s ({r['sharded_vs_baseline']:.2f}x, "
              f"{r['shards']} shards), on disk {r['on_disk_s']:.2f} s "
              f"({r['on_disk_vs_baseline']:.2f}x); max rel. diff {r['max_rel_diff_sharded']:.1e}"
              f" / {r['max_rel_diff_on_disk']:.1e}", flush=True)
    one = next((r for r in rows if r["devices"] == 1), None)
    for r in rows:
        r["sharded_vs_1_device"] = one["sharded_s"] / r["sharded_s"] if one else None
    result = dict(n=args.n, tile=args.tile, depth=3, activation="sign", surrogate="fast_sigmoid",
                  which=["sgntk"], repeats=args.repeats, rows=rows, cpus=os.cpu_count(),
                  load_average_before=[round(v, 2) for v in load_before],
                  load_average_after=[round(v, 2) for v in os.getloadavg()], versions=versions())
    print(f"N = {args.n}, tile {args.tile}; load average before {result['load_average_before']}"
          f" after {result['load_average_after']} ({os.cpu_count()} CPUs)")
    os.makedirs(args.out, exist_ok=True)
    name = "bench_sharding.json" if args.platform == "cpu" else "bench_sharding_gpu.json"
    write_json(os.path.join(args.out, name), result)


if __name__ == "__main__":
    main()
