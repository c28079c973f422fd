"""Run the Eilers et al. (2024) reproduction from a JSON config (thin wrapper).

    python experiments/eilers2024/run.py experiments/eilers2024/quick.json [--out DIR]
    python paper_figs/eilers2024.py results/eilers2024-quick

The presets ``smoke.json``, ``quick.json``, ``full.json`` equal ``sgntk.reproduce.eilers2024
.PRESETS`` (checked by ``tests/test_reproduce.py``); copy one and edit it for another size
(``medium.json``: ~8 min, ``large.json``: the largest run that fits ~25 min on 2 CPU cores --
500 nets per width for Fig. 3 at 5000 steps). A rerun with the
same output folder resumes: finished units of work are skipped.
"""
import argparse
import json

from sgntk.reproduce import eilers2024


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="JSON config file")
    p.add_argument("--out", default=None, help="results folder (default results/eilers2024-<name>)")
    args = p.parse_args(argv)
    with open(args.config) as f:
        cfg = json.load(f)
    eilers2024.run(cfg, out=args.out)


if __name__ == "__main__":
    main()
