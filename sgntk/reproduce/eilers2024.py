"""Deprecated shim: the study moved to ``experiments/eilers2024/study.py``.

Use ``sgntk reproduce eilers2024``, ``python experiments/eilers2024/run.py CONFIG`` or
``sgntk.cli.load_study("eilers2024")``. This module forwards ``run``, ``load_config``,
``settings``, ``agreement_metrics``, ``format_table``, ``paper_config`` and
``training_angles`` to the study (configs are only the JSON
files in ``experiments/eilers2024/``; the old ``PRESETS`` dict is gone) and ``circle_data`` to
:func:`sgntk.data.unit_circle`.
"""
import warnings

from ..cli import load_study
from ..data import unit_circle as circle_data

warnings.warn("sgntk.reproduce.eilers2024 is deprecated: the study is "
              "experiments/eilers2024/study.py (sgntk.cli.load_study('eilers2024'))",
              DeprecationWarning, stacklevel=2)

_study = load_study("eilers2024")
run = _study.run
load_config = _study.load_config
settings = _study.settings
agreement_metrics = _study.agreement_metrics
format_table = _study.format_table
paper_config = _study.paper_config
training_angles = _study.training_angles

__all__ = ["run", "load_config", "settings", "agreement_metrics", "format_table", "circle_data",
           "paper_config", "training_angles"]
