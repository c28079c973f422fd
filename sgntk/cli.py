"""Command line: ``sgntk demo`` and ``sgntk reproduce eilers2024``.

``sgntk demo [--out DIR]`` prints the SG-NTK of the paper's sign network on the unit circle
(analytic vs. Monte Carlo over wide networks, and the diverging naive erf_m NTK) and writes
``DIR/demo_kernels.png``. It finishes in well under a minute on a laptop CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _circle(angles):
    return np.stack([np.sin(angles), np.cos(angles)], axis=1)


def demo(out: str = "results/demo", *, width: int = 512, n_networks: int = 64,
         seed: int = 0) -> dict:
    """Kernel table + figure for the paper's setting (L = 2, sigma_w = 1, sigma_b = 0.1)."""
    from . import kernels, monte_carlo

    t0 = time.time()
    setting = dict(depth=2, sigma_w=1.0, sigma_b=0.1)
    table_angles = np.linspace(0.0, np.pi, 5)
    x_table = _circle(table_angles)
    an = kernels.mlp(x_table[:1], x_table, activation="sign", surrogate="erf", **setting)
    mc = monte_carlo.mlp_kernels(x_table[:1], x_table, activation="sign", surrogate="erf",
                                 width=width, n_networks=n_networks, seed=seed,
                                 jump_width=0.02, progress=False, **setting)
    naive = {m: np.asarray(kernels.mlp(x_table[:1], x_table, activation="erf", m=m,
                                       get=("ntk",), **setting).ntk)[0] for m in (2, 5, 20)}
    rows = []
    print("SG-NTK of a depth-2 sign network, erf' surrogate, inputs on the unit circle "
          "(Eilers et al. 2024)")
    print(f"{'delta angle':>11} {'NNGP':>8} {'I_sign':>8} {'MC mean':>8} {'MC se':>7} "
          f"{'z':>6} | naive NTK erf_m: {'m=2':>7} {'m=5':>7} {'m=20':>8}")
    for j, a in enumerate(table_angles):
        i_an, i_mc = float(an.sgntk[0, j]), float(mc.mean.sgntk[0, j])
        se = float(mc.stderr.sgntk[0, j])
        row = dict(delta_angle=float(a), nngp=float(an.nngp[0, j]), sgntk=i_an,
                   mc_mean=i_mc, mc_stderr=se, **{f"naive_ntk_m{m}": float(v[j])
                                                   for m, v in naive.items()})
        rows.append(row)
        print(f"{a:11.4f} {row['nngp']:8.4f} {i_an:8.4f} {i_mc:8.4f} {se:7.4f} "
              f"{(i_mc - i_an) / se:6.2f} | {'':17}{naive[2][j]:7.3f} {naive[5][j]:7.3f} "
              f"{naive[20][j]:8.3f}")
    print(f"(MC: {n_networks} networks of width {width}, Dirac derivative smoothed to "
          "width 0.02; z = (MC - analytic)/se)")

    grid = np.linspace(-np.pi, np.pi, 201)
    xg = _circle(grid)
    curves = {s: np.asarray(kernels.mlp(xg[100:101], xg, activation="sign", surrogate=s,
                                        get=("sgntk",), **setting).sgntk)[0]
              for s in ("erf", "fast_sigmoid", "triangular", "straight_through")}
    naive_curves = {m: np.asarray(kernels.mlp(xg[100:101], xg, activation="erf", m=m,
                                              get=("ntk",), **setting).ntk)[0]
                    for m in (2, 5, 20)}
    os.makedirs(out, exist_ok=True)
    png = os.path.join(out, "demo_kernels.png")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for s, c in curves.items():
            axes[0].plot(grid, c, label=s)
        axes[0].errorbar(table_angles, [r["mc_mean"] for r in rows],
                         yerr=[2 * r["mc_stderr"] for r in rows], fmt="ko", ms=4,
                         label=f"MC erf' ({n_networks} nets, n={width})")
        axes[0].set(xlabel="angle difference", ylabel="I_sign(x(0), x(angle))",
                    title="SG-NTK of sign networks by surrogate")
        axes[0].legend(fontsize=7)
        for m, c in naive_curves.items():
            axes[1].plot(grid, np.arcsinh(c), label=f"naive NTK erf_{m}")
        axes[1].plot(grid, np.arcsinh(curves["erf"]), "k--", label="SG-NTK I_sign")
        axes[1].set(xlabel="angle difference", ylabel="asinh(kernel)",
                    title="naive NTK diverges as m grows")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(png, dpi=120)
        plt.close(fig)
    except ImportError:
        png = None
        print("matplotlib is not installed: no figure written (pip install matplotlib)")
    result = dict(setting=setting, rows=rows, figure=png, seconds=time.time() - t0)
    tmp = os.path.join(out, "demo_kernels.json.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, os.path.join(out, "demo_kernels.json"))
    print(f"wrote {png} and {os.path.join(out, 'demo_kernels.json')} "
          f"in {result['seconds']:.1f} s")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sgntk", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="kernel table + figure on the paper's setting")
    p_demo.add_argument("--out", default="results/demo")
    p_demo.add_argument("--seed", type=int, default=0)
    p_rep = sub.add_parser("reproduce", help="reproduce a paper's study")
    p_rep.add_argument("study", choices=["eilers2024"])
    size = p_rep.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="reduced sizes, < 10 min on 2 cores")
    size.add_argument("--full", action="store_true", help="the paper's sizes")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    p_rep.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.out, seed=args.seed)
        return 0
    from .reproduce import eilers2024

    preset = "full" if args.full else "smoke" if args.smoke else "quick"
    eilers2024.run(preset, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
