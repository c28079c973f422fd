"""Draw a blind grid of LIF configurations for ``validation.py`` (issue 8).

Usage::

    python experiments/selection/make_blind.py --seed 20261202 --n 40 \
        --out experiments/selection/blind2.json

Each configuration draws, independently and uniformly: the surrogate shape (all ten), the
sharpness (0.1x, 0.3x, 1x, 3x, 10x of the default 5), the dampening (0.1, 0.3, 1, 3, 10), the
weight scale sigma_w (5, 7, 10, 14, 20), the threshold (0.5, 0.75, 1, 1.5, 2), detached or
differentiable reset, and recurrence or not. A draw that repeats a configuration of the
reference configs (``validation.json``, ``blind.json``) or an earlier draw is redrawn. The
training and prediction settings are copied from ``validation.json`` (``--like``); the
predictors to evaluate are the ``preregistered`` names of ``validation.PREREGISTERED``, fixed in
the file before any of its configurations is trained.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = ("triangular", "exponential", "fast_sigmoid", "rectangular", "sigmoid", "gaussian",
          "cauchy", "q_pseudo_spike", "erf", "straight_through")
SHARPNESS = (0.5, 1.5, 5.0, 15.0, 50.0)
DAMPENING = (0.1, 0.3, 1.0, 3.0, 10.0)
SIGMA_W = (5.0, 7.0, 10.0, 14.0, 20.0)
THRESHOLD = (0.5, 0.75, 1.0, 1.5, 2.0)
FIELDS = ("shape", "sharpness", "dampening", "sigma_w", "threshold", "detach_reset", "recurrent")


def _key(c: dict) -> tuple:
    return tuple(c[f] for f in FIELDS)


def _g(v: float) -> str:
    return f"{v:g}"


def draw(n: int, seed: int, exclude=()) -> list:
    """``n`` distinct configurations (dicts in validation.json's format), none in ``exclude``."""
    rng = np.random.default_rng(seed)
    seen = {_key(c) for c in exclude}
    out = []
    while len(out) < n:
        c = dict(shape=SHAPES[rng.integers(len(SHAPES))],
                 sharpness=float(SHARPNESS[rng.integers(5)]),
                 dampening=float(DAMPENING[rng.integers(5)]),
                 sigma_w=float(SIGMA_W[rng.integers(5)]),
                 threshold=float(THRESHOLD[rng.integers(5)]), reset="zero",
                 detach_reset=bool(rng.integers(2)), recurrent=bool(rng.integers(2)))
        if _key(c) in seen:
            continue
        seen.add(_key(c))
        c["name"] = (f"{c['shape']}_b{_g(c['sharpness'])}_g{_g(c['dampening'])}_"
                     f"w{_g(c['sigma_w'])}_th{_g(c['threshold'])}_"
                     f"{'rec' if c['recurrent'] else 'ff'}_"
                     f"{'detached' if c['detach_reset'] else 'diff'}")
        out.append(c)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                    help="training seeds per configuration")
    ap.add_argument("--like", default=os.path.join(HERE, "validation.json"))
    ap.add_argument("--exclude", nargs="*", default=[os.path.join(HERE, "validation.json"),
                                                      os.path.join(HERE, "blind.json")])
    ap.add_argument("--preregistered", nargs="+", default=["conditioning"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.n < 3:
        ap.error(f"--n must be >= 3 (a rank correlation needs 3 configurations); got {args.n}")
    with open(args.like) as f:
        like = json.load(f)
    exclude = []
    for p in args.exclude:
        with open(p) as f:
            exclude += json.load(f)["configs"]
    spec = {k: like[k] for k in ("version", "train", "fixed_epoch", "tasks", "predict")}
    spec["seeds"] = list(args.seeds)
    spec["preregistered"] = list(args.preregistered)
    spec["description"] = (
        f"Blind grid drawn by experiments/selection/make_blind.py --seed {args.seed} --n "
        f"{args.n}: {args.n} configurations, none in {', '.join(os.path.basename(p) for p in args.exclude)}; "
        f"training and prediction settings of {os.path.basename(args.like)}. The predictors "
        f"evaluated on it ({', '.join(args.preregistered)}, validation.PREREGISTERED) were fixed "
        "and committed with this file before any of its configurations was trained.")
    spec["configs"] = draw(args.n, args.seed, exclude)
    from sgntk._util import write_json
    write_json(args.out, spec)
    print(f"{args.out}: {args.n} configurations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
