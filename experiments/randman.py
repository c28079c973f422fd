"""Train LIF networks on the random-manifold task for a few seeds (thin wrapper).

Usage::

    python experiments/randman.py                         # default config, seeds 0 1 2
    python experiments/randman.py --seeds 0 1 2 --out results/randman
    python experiments/randman.py --config cfg.json --set lr=0.005 epochs=20
    python experiments/randman.py --smoke                 # tiny, CI-sized run

A seed whose ``summary.json`` exists with the same configuration is reused (resume after an
interruption; ``--force`` retrains). Writes ``<out>/seed{N}/summary.json`` (atomically; config, seed, per-epoch loss and
validation accuracy, ``test_accuracy``, spike rates, wall time, versions) and prints one line
per seed plus the mean. Config fields: :class:`sgntk.lif_train.TrainConfig`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

from sgntk import lif_train

SMOKE = dict(nb_classes=3, nb_units=20, nb_steps=50, nb_samples=200, n_hidden=64,
             batch_size=25, epochs=10)


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", help="JSON file with TrainConfig fields")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override TrainConfig fields (values parsed as JSON)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="results/randman", help="output folder")
    ap.add_argument("--smoke", action="store_true", help="tiny configuration for CI")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--force", action="store_true",
                    help="retrain seeds whose summary.json already exists (default: reuse)")
    args = ap.parse_args(argv)

    cfg: dict = dict(SMOKE) if args.smoke else {}
    if args.config:
        with open(args.config) as f:
            cfg.update(json.load(f))
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set expects KEY=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        cfg[k] = _parse_value(v)
    fields = {f.name for f in dataclasses.fields(lif_train.TrainConfig)}
    bad = set(cfg) - fields
    if bad:
        ap.error(f"unknown config fields {sorted(bad)}; valid: {sorted(fields)}")

    accs = []
    for seed in args.seeds:
        out_dir = os.path.join(args.out, f"seed{seed}")
        done = os.path.join(out_dir, "summary.json")
        if os.path.exists(done) and not args.force:
            with open(done) as f:
                s = json.load(f)
            if s["config"] == {**s["config"], **cfg, "seed": seed}:
                print(f"seed {seed}: reusing {done} (--force to retrain)")
            else:
                s = None
        else:
            s = None
        if s is None:
            s = lif_train.train_randman({**cfg, "seed": seed}, out_dir=out_dir,
                                        progress=not args.no_progress)
        accs.append(s["test_accuracy"])
        print(f"seed {seed}: test accuracy {s['test_accuracy']:.3f}, "
              f"wall {s['wall_time_s']:.1f} s, hidden rate "
              f"{s['spike_rates']['hidden_rate_hz']:.1f} Hz -> {out_dir}/summary.json", flush=True)
    print(f"mean test accuracy {np.mean(accs):.3f} +- {np.std(accs):.3f} over {len(accs)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
