"""Kernel speed against neural-tangents, measured in one run (ratios, not absolute times).

1. Analytic: ``sgntk.kernels.mlp`` (the validated, tiled, float64 entry point; NNGP + SG-NTK)
   vs neural-tangents' own ``stax.Erf`` NNGP + NTK (jit-compiled kernel_fn, float64) of the
   same depth-3 MLP, for N in {500, 1000, 2000} inputs. Closed-form surrogate (erf') and a
   quadrature surrogate (fast sigmoid, tabulated moments). Goals: <= 1.5x and <= 3x.
2. Empirical: ``sgntk.empirical.mlp_empirical`` (structured J J~^T) vs the fastest of
   neural-tangents' ``empirical_ntk_fn`` implementations 1-3 (J J^T) on the same finite
   network. Goal: <= 2x.

Run: ``python benchmarks/bench_kernels.py [--quick]``. Times are medians of repeats after a
warm-up (compilation excluded for both sides). The machine may be shared: compare ratios.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def median_time(fn, repeats):
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def block(x):
    return jax.tree_util.tree_map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, x)


def analytic(nt, sizes, repeats):
    from sgntk import kernels

    print("\n== analytic kernels, depth 3, d = 16 (seconds; ratio = sgntk / neural-tangents) ==")
    print(f"{'N':>6} {'nt Erf':>9} {'sgntk sign+erf':>15} {'ratio':>6} {'sgntk sign+fast_sigmoid':>24} {'ratio':>6}")
    rows = []
    for n in sizes:
        x = np.random.default_rng(0).normal(size=(n, 16))
        with jax.enable_x64(True):
            layers = []
            for _ in range(3):
                layers += [nt.stax.Dense(512, W_std=1.0, b_std=0.1), nt.stax.Erf()]
            _, _, kfn = nt.stax.serial(*layers, nt.stax.Dense(1, W_std=1.0, b_std=0.1))
            kfn = jax.jit(kfn, static_argnames="get")
            xj = jnp.asarray(x)
            t_nt = median_time(lambda: block(kfn(xj, xj, get=("nngp", "ntk"))), repeats)
        kw = dict(depth=3, activation="sign", sigma_b=0.1, which=("nngp", "sgntk"), progress=False)
        t_cf = median_time(lambda: kernels.mlp(x, surrogate="erf", **kw), repeats)
        t_q = median_time(lambda: kernels.mlp(x, surrogate="fast_sigmoid", **kw), repeats)
        rows.append((n, t_nt, t_cf, t_q))
        print(f"{n:6d} {t_nt:9.3f} {t_cf:15.3f} {t_cf / t_nt:6.2f} {t_q:24.3f} {t_q / t_nt:6.2f}")
    return rows


def empirical(nt, n_inputs, width, repeats):
    from sgntk import empirical as emp

    print(f"\n== empirical kernels: depth 3, width {width}, {n_inputs} inputs, d = 16 ==")
    depth, d = 3, 16
    params = emp.mlp_init(jax.random.PRNGKey(0), d, width, depth)
    x = jax.random.normal(jax.random.PRNGKey(1), (n_inputs, d))
    ours = jax.jit(lambda p, x: emp.mlp_empirical(p, x, activation="erf", surrogate="fast_sigmoid",
                                                  sigma_b=0.1, m=2.0, which=("sgntk",)).sgntk)
    t_ours = median_time(lambda: ours(params, x).block_until_ready(), repeats)
    # The same network written in stax, with the same parameters (stax Dense: W (in, out)).
    layers = []
    for _ in range(depth):
        layers += [nt.stax.Dense(width, W_std=1.0, b_std=0.1), nt.stax.Erf(a=1.0, b=2.0, c=0.0)]
    _, apply_fn, _ = nt.stax.serial(*layers, nt.stax.Dense(1, W_std=1.0, b_std=0.1))
    nt_params = []
    for w, b in zip(params.weights[:-1], params.biases[:-1]):
        nt_params += [(w, b), ()]
    nt_params.append((params.weights[-1], params.biases[-1]))
    best = None
    for impl in (1, 2, 3):
        fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation=impl))
        t = median_time(lambda: fn(x, None, nt_params).block_until_ready(), repeats)
        print(f"  neural-tangents empirical_ntk_fn implementation {impl}: {t:.4f} s")
        best = t if best is None else min(best, t)
    print(f"  sgntk mlp_empirical (structured J J~^T): {t_ours:.4f} s")
    print(f"  ratio sgntk / fastest neural-tangents: {t_ours / best:.2f} (goal <= 2)")
    # Sanity: the same network gives the same kernel when psi' = the true derivative.
    from sgntk import surrogates
    sur = surrogates.get("erf", sharpness=2.0, dampening=2.0)
    k_ours = emp.mlp_empirical(params, x, activation="erf", surrogate=sur, sigma_b=0.1, m=2.0,
                               which=("sgntk",)).sgntk
    k_nt = nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation=1)(x, None, nt_params)
    err = float(jnp.max(jnp.abs(k_ours - k_nt[..., 0, 0] if k_nt.ndim == 4 else k_ours - k_nt)))
    print(f"  max |sgntk - nt| with psi' = erf_m' (same kernel): {err:.2e}")
    return t_ours, best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="N in {250, 500} only")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from sgntk.nt_compat import import_neural_tangents

    nt = import_neural_tangents()
    print(f"jax {jax.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    analytic(nt, [250, 500] if args.quick else [500, 1000, 2000], args.repeats)
    empirical(nt, 128 if args.quick else 256, 256 if args.quick else 1024, args.repeats)


if __name__ == "__main__":
    main()
