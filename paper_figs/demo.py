"""The ``sgntk demo`` figure from its saved results (no computation).

    python paper_figs/demo.py [results/demo] [--out PNG]

Reads ``<results>/demo_kernels.json`` (written by ``sgntk demo``, also without matplotlib) and
draws ``demo_kernels.png`` next to it with :func:`sgntk.plotting.demo_figure` -- the same
function ``sgntk demo`` calls when matplotlib is installed.
"""
import argparse
import json
import os

from sgntk.plotting import demo_figure


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default="results/demo")
    ap.add_argument("--out", default=None, help="PNG path (default <results>/demo_kernels.png)")
    args = ap.parse_args(argv)
    with open(os.path.join(args.results, "demo_kernels.json")) as f:
        result = json.load(f)
    print(demo_figure(result, args.out or os.path.join(args.results, "demo_kernels.png")))


if __name__ == "__main__":
    main()
