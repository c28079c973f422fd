"""Run the Eilers et al. (2024) reproduction from a JSON config (thin wrapper of ``study.py``).

    python experiments/eilers2024/run.py experiments/eilers2024/quick.json [--out DIR] [--force]
    python paper_figs/eilers2024.py results/eilers2024-quick

``sgntk reproduce eilers2024 --smoke|--quick|--full`` runs ``smoke.json``, ``quick.json`` or
``full.json`` the same way; ``--paper`` applies the paper's training sets and horizons to any
of them (``full.json`` has them), ``--even-angles`` spaces the training angles evenly.
``fig3_paper.json`` is Fig. 3 alone at the paper's size (500 networks of width 500, 30 000 SGL
steps, in blocks of 50 networks); ``fig12_paper.json`` is Figs. 1-2 alone at the paper's size
(m = 2, 5, 20; widths 10-1000; 10 networks; 10 000 GD / 1 000 SGL steps);
``--available-only`` summarises the blocks finished so far. Copy a config and edit it for another size (``medium.json``: ~8 min,
``large.json``: the largest run that fits ~25 min on 2 CPU cores -- 500 nets per width for
Fig. 3 at 5000 steps). A rerun with the same output folder resumes: finished units of work are
loaded (:mod:`sgntk.runner`); a unit whose config changed is recomputed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study  # noqa: E402

if __name__ == "__main__":
    sys.exit(study.main())
