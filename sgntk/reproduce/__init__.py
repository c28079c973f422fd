"""Deprecated: paper reproductions now live in ``experiments/<study>/study.py`` of the source
checkout, built on :mod:`sgntk.runner` (``sgntk reproduce <study>`` and
:func:`sgntk.cli.load_study` find them). ``sgntk.reproduce.eilers2024`` is a thin shim that
forwards to ``experiments/eilers2024/study.py`` with a ``DeprecationWarning``; it will be removed.
"""
