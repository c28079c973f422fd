"""Command line: ``sgntk demo`` and ``sgntk reproduce eilers2024``.

``sgntk demo [--out DIR]`` prints the SG-NTK of the paper's sign network on the unit circle
(analytic vs. Monte Carlo over wide networks, and the diverging naive erf_m NTK), writes
``DIR/demo_kernels.json`` and, if matplotlib is installed, ``DIR/demo_kernels.png``
(:mod:`sgntk.plotting`; or later ``python paper_figs/demo.py DIR``). It finishes in well under a
minute on a laptop CPU. This module never imports matplotlib itself.

``sgntk reproduce <study> [--smoke|--quick|--full|--config C] [--paper] [--even-angles]`` runs
``experiments/<study>/study.py`` of a source checkout (:func:`load_study`; the experiments are
not part of the installed package); ``--ray`` runs its units as tasks on a local Ray
(``--workers N`` at a time), ``--ray-address ADDR`` on an existing cluster
(:class:`sgntk.runner.RayExecutor`). ``--paper`` applies the paper's training sets and horizons
(alone it means ``--full``, which has them already); ``--even-angles`` spaces the training
angles evenly instead.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np

from . import plotting, runner
from ._util import write_json

__all__ = ["demo", "demo_results", "experiments_dir", "load_study", "main"]


def _circle(angles):
    return np.stack([np.sin(angles), np.cos(angles)], axis=1)


def demo(out: str = "results/demo", *, width: int = 512, n_networks: int = 64,
         seed: int = 0) -> dict:
    """Kernel table + figure for the paper's setting (L = 2, sigma_w = 1, sigma_b = 0.1).

    Writes :func:`demo_results` to ``out/demo_kernels.json`` and, if matplotlib is installed,
    draws ``out/demo_kernels.png`` from that file (:func:`sgntk.plotting.demo_figure`).
    """
    result = demo_results(width=width, n_networks=n_networks, seed=seed)
    png = os.path.join(out, "demo_kernels.png") if plotting.available() else None
    result["figure"] = png
    path = os.path.join(out, "demo_kernels.json")
    write_json(path, result)
    if png is None:
        print("matplotlib is not installed: no figure written (pip install matplotlib); "
              f"draw it later with `python paper_figs/demo.py {out}`")
    else:
        with open(path) as f:  # the figure is drawn from the saved results only
            plotting.demo_figure(json.load(f), png)
    print(f"wrote {png + ' and ' if png else ''}{path} in {result['seconds']:.1f} s")
    return result


def demo_results(*, width: int = 512, n_networks: int = 64, seed: int = 0) -> dict:
    """Compute and print the demo's kernel table and the curves of its figure.

    Returns a dict: ``setting``; ``rows`` (per angle difference: NNGP, analytic SG-NTK
    ``I_sign`` with the erf' surrogate, its Monte-Carlo mean and standard error over
    ``n_networks`` networks of width ``width``, the naive erf_m NTK for m = 2, 5, 20);
    ``monte_carlo`` (its settings); ``curves`` (``angles`` and the kernel rows
    ``K(x(0), x(angle))``: SG-NTK per surrogate, naive NTK per m); ``seconds``.
    """
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
                                       which=("ntk",), **setting).ntk)[0] for m in (2, 5, 20)}
    rows = []
    print("SG-NTK of a depth-2 sign network, erf' surrogate, inputs on the unit circle "
          "(Eilers et al. 2024)")
    print(f"{'delta angle':>11} {'NNGP':>8} {'I_sign':>8} {'MC mean':>8} {'MC se':>7} "
          f"{'z':>6} | naive NTK erf_m: {'m=2':>7} {'m=5':>7} {'m=20':>8}")
    for j, a in enumerate(table_angles):
        i_an, i_mc = float(an.sgntk[0, j]), float(mc.mean.sgntk[0, j])
        se = float(mc.stderr.sgntk[0, j])
        z = (i_mc - i_an) / se if se > 0 else float("nan")
        row = dict(delta_angle=float(a), nngp=float(an.nngp[0, j]), sgntk=i_an,
                   mc_mean=i_mc, mc_stderr=se, **{f"naive_ntk_m{m}": float(v[j])
                                                   for m, v in naive.items()})
        rows.append(row)
        print(f"{a:11.4f} {row['nngp']:8.4f} {i_an:8.4f} {i_mc:8.4f} {se:7.4f} "
              f"{z:6.2f} | {'':17}{naive[2][j]:7.3f} {naive[5][j]:7.3f} "
              f"{naive[20][j]:8.3f}")
    print(f"(MC: {n_networks} networks of width {width}, Dirac derivative smoothed to "
          "width 0.02; z = (MC - analytic)/se)")

    grid = np.linspace(-np.pi, np.pi, 201)
    xg = _circle(grid)
    curves = {s: np.asarray(kernels.mlp(xg[100:101], xg, activation="sign", surrogate=s,
                                        which=("sgntk",), **setting).sgntk)[0]
              for s in ("erf", "fast_sigmoid", "triangular", "straight_through")}
    naive_curves = {m: np.asarray(kernels.mlp(xg[100:101], xg, activation="erf", m=m,
                                              which=("ntk",), **setting).ntk)[0]
                    for m in (2, 5, 20)}
    return dict(setting=setting, rows=rows,
                monte_carlo=dict(width=width, n_networks=n_networks, seed=seed, jump_width=0.02),
                curves=dict(angles=grid, sgntk=curves,
                            naive_ntk={str(m): c for m, c in naive_curves.items()}),
                seconds=time.time() - t0)


def experiments_dir() -> str:
    """The ``experiments/`` folder of the source checkout.

    Looked up in ``$SGNTK_EXPERIMENTS`` if set, else next to the ``sgntk`` package (a checkout
    or an editable install), else in the current directory. Raises ``FileNotFoundError`` with
    what to do when none exists (e.g. after a non-editable ``pip install``).
    """
    env = os.environ.get("SGNTK_EXPERIMENTS")
    if env:
        if os.path.isdir(env):
            return os.path.abspath(env)
        raise FileNotFoundError(f"SGNTK_EXPERIMENTS={env!r} is not a folder")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tried = [os.path.join(here, "experiments"), os.path.join(os.getcwd(), "experiments")]
    for d in tried:
        if os.path.isdir(d):
            return d
    raise FileNotFoundError(
        "the experiments/ folder of the sgntk source checkout was not found (looked in "
        f"{', '.join(tried)}); clone the repository and `pip install -e .` there, run from "
        "its root, or set SGNTK_EXPERIMENTS=/path/to/experiments")


def load_study(name: str):
    """Import ``experiments/<name>/study.py`` (:func:`experiments_dir`) as a module."""
    mod_name = f"sgntk_study_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    path = os.path.join(experiments_dir(), name, "study.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no study {name!r}: {path} does not exist")
    spec = importlib.util.spec_from_file_location(mod_name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[mod_name]
        raise
    return mod


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["select"]:  # ``sgntk select ...``: its own options (sgntk.select.main)
        from . import select
        return select.main(argv[1:])
    parser = argparse.ArgumentParser(prog="sgntk", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("select", help="rank surrogates and initialisations from the SG-NTK "
                                  "(sgntk select --help)")
    p_demo = sub.add_parser("demo", help="kernel table + figure on the paper's setting")
    p_demo.add_argument("--out", default="results/demo")
    p_demo.add_argument("--seed", type=int, default=0)
    p_rep = sub.add_parser("reproduce", help="reproduce a paper's study (from a checkout)")
    p_rep.add_argument("study", choices=["eilers2024"])
    size = p_rep.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="reduced sizes, < 10 min on 2 cores")
    size.add_argument("--full", action="store_true",
                      help="the paper's sizes, training sets and horizons")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    size.add_argument("--config", default=None,
                      help="another config: a name in experiments/<study>/ or a JSON path")
    p_rep.add_argument("--out", default=None, help="results folder (default "
                                                   "results/<study>-<config name>)")
    p_rep.add_argument("--force", action="store_true", help="recompute finished units")
    p_rep.add_argument("--paper", action="store_true",
                       help="the paper's training sets and horizons (with no size option: "
                            "--full)")
    p_rep.add_argument("--even-angles", action="store_true",
                       help="evenly spaced training angles instead of the paper's sets")
    runner.add_executor_arguments(p_rep)   # --ray, --ray-address ADDR, --workers N
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.out, seed=args.seed)
        return 0
    try:
        study = load_study(args.study)
    except FileNotFoundError as e:
        parser.error(f"sgntk reproduce {args.study}: {e}")
    default = "full" if args.paper else "quick"
    config = args.config or ("full" if args.full else "smoke" if args.smoke else
                             "quick" if args.quick else default)
    with runner.executor(args) as ex:   # None (in process) unless --ray / --ray-address
        study.run(config, out=args.out, force=args.force, paper=args.paper,
                  training_set="even" if args.even_angles else None,
                  **({} if ex is None else {"executor": ex}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
