"""Train LIF networks on the random-manifold task for a few seeds (thin wrapper).

Usage::

    python experiments/randman.py                         # default config, seeds 0 1 2
    python experiments/randman.py --seeds 0 1 2 --out results/randman
    python experiments/randman.py --config cfg.json --set lr=0.005 epochs=20
    python experiments/randman.py --smoke                 # tiny, CI-sized run
    python experiments/randman.py --seeds 0 1 2 3 --ray --workers 2      # seeds as Ray tasks
    python experiments/randman.py --seeds 0 1 2 3 --ray-address auto     # on a Ray cluster

Each seed is one unit of :mod:`sgntk.runner` (``map_units``): its result is saved atomically as
``<out>/seed{N}-<config hash>.json`` and a rerun loads it instead of retraining (``--force``
retrains); a seed whose ``<out>/seed{N}/summary.json`` exists with the same configuration (the
layout before the runner) is reused too. Units run in this process by default; ``--ray`` runs
each seed as a task on a local Ray (``--workers N`` at a time), ``--ray-address ADDR`` on an
existing cluster (:class:`sgntk.runner.RayExecutor`; a killed worker's seed is retried). Every
seed also writes ``<out>/seed{N}/summary.json`` (atomically; config, seed, per-epoch loss and
validation accuracy, ``test_accuracy``, spike rates, wall time, versions). Prints one line per
seed plus the mean. Config fields: :class:`sgntk.lif_train.TrainConfig`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

from sgntk import lif_train, runner

SMOKE = dict(nb_classes=3, nb_units=20, nb_steps=50, nb_samples=200, n_hidden=64,
             batch_size=25, epochs=10)


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def train_seed(config: dict, *, out_dir: str, progress: bool = True,
               reuse_summary: bool = True) -> dict:
    """One unit: train the randman network of ``config`` (all :class:`TrainConfig` fields, seed
    included) and return its summary; ``out_dir/summary.json`` is written too. With
    ``reuse_summary`` an existing ``out_dir/summary.json`` of the same config is returned
    instead of retraining."""
    done = os.path.join(out_dir, "summary.json")
    if reuse_summary and os.path.exists(done):
        with open(done) as f:
            s = json.load(f)
        if s.get("config") == config:
            return s
    return lif_train.train_randman(config, out_dir=out_dir, progress=progress)


def seed_unit(cfg: dict, seed: int, out: str, *, progress: bool = True,
              reuse_summary: bool = True) -> runner.Unit:
    """The :class:`sgntk.runner.Unit` of one seed: name ``seed{N}``, config the full
    :class:`TrainConfig` (defaults filled in, so the hash changes with any field)."""
    config = dataclasses.asdict(lif_train.TrainConfig.from_dict({**cfg, "seed": seed}))
    return runner.Unit(f"seed{seed}", train_seed, config, fmt="json",
                       options=dict(out_dir=os.path.join(out, f"seed{seed}"), progress=progress,
                                    reuse_summary=reuse_summary))


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
                    help="retrain seeds whose results already exist (default: reuse)")
    runner.add_executor_arguments(ap)
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

    units = [seed_unit(cfg, seed, args.out, progress=not args.no_progress and not
                       (args.ray or args.ray_address), reuse_summary=not args.force)
             for seed in args.seeds]
    with runner.executor(args) as ex:
        res = runner.map_units(units, args.out, executor=ex, force=args.force,
                               progress=False)
    accs = []
    for u in units:
        s = res.values[u.name]
        how = "computed" if u.name in res.computed else "loaded"
        accs.append(s["test_accuracy"])
        print(f"seed {s['seed']}: test accuracy {s['test_accuracy']:.3f}, "
              f"wall {s['wall_time_s']:.1f} s, hidden rate "
              f"{s['spike_rates']['hidden_rate_hz']:.1f} Hz ({how}: {res.paths[u.name]}; "
              f"summary {u.options['out_dir']}/summary.json)", flush=True)
    print(f"mean test accuracy {np.mean(accs):.3f} +- {np.std(accs):.3f} over {len(accs)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
