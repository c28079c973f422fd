"""Resumable units of work: the one runner every sweep uses.

A **unit** is ``Unit(name, fn, config)``: a readable name (``"ensembles/sign-erf_n20"``; ``/``
makes sub-folders), a pure compute function and the JSON-serialisable config it is called with,
``fn(config) -> result`` (plus optional ``options``, keyword arguments that do not change the
result, such as a chunk size: ``fn(config, **options)``). The result is a dict of arrays (saved
with ``np.savez_compressed``, ``fmt="npz"``) or a JSON-serialisable dict (``fmt="json"``). Its
file is

    <out>/<name>-<config_hash(config)>.<fmt>

so the file name is stable for a given config and a changed config never reuses a stale result
(the hash covers the config, not the code of ``fn``: put a ``"version"`` key in the config and
bump it when the computation changes).

:func:`map_units` runs a list of units into a folder:

* a unit whose file exists is **loaded, not recomputed** (resume); ``force=True`` recomputes;
* each file is written **atomically** (:func:`sgntk._util.write_npz` / ``write_json``: temporary
  file + ``os.replace``) the moment its unit finishes, so an interrupted run (Ctrl-C, a killed
  job, an exception in a later unit) loses no finished unit and never leaves a partial file;
* the counts of computed and skipped units come back in a :class:`RunResult` (no global state);
* a tqdm progress bar counts units.

Extension point -- executors (parallel or distributed sweeps). ``map_units(units, out,
executor=ex)`` calls ``ex.submit(run_unit, unit, out, force=force)`` for every unit whose file is
missing and waits with :func:`concurrent.futures.as_completed`; the worker computes *and writes*
the file, so resume and atomicity hold per worker. Any object whose ``submit(fn, *args,
**kwargs)`` returns a :class:`concurrent.futures.Future` plugs in:
``concurrent.futures.ThreadPoolExecutor`` / ``ProcessPoolExecutor`` work as they are (for
processes, units and their ``fn`` must be picklable -- module-level functions -- and the pool should
use ``mp_context=multiprocessing.get_context("spawn")``: forking a process that runs JAX threads
can deadlock), and a Ray backend is a small adapter,
``submit = lambda f, *a, **k: ray.remote(f).remote(*a, **k).future()`` (``out`` must then be a
folder every worker can write, e.g. a shared file system). Ray is not a dependency of sgntk.

Checked by ``tests/test_runner.py`` (resume, force, stale configs, interruption, executors).
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
import re
import time
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional

import numpy as np

from ._util import read_npz, write_json, write_npz

__all__ = ["Unit", "UnitResult", "RunResult", "config_hash", "unit_path", "run_unit",
           "map_units", "load_unit"]

_FORMATS = ("npz", "json")
_NAME = re.compile(r"^[A-Za-z0-9_.+=,-]+(/[A-Za-z0-9_.+=,-]+)*$")
_CONFIG_KEY = "__unit_config__"  # the unit's config, stored inside its file (provenance)


class Unit(NamedTuple):
    """One unit of work: ``fn(config, **options)`` -> dict of arrays (``fmt="npz"``) or JSON
    dict (``fmt="json"``), saved as ``<out>/<name>-<config_hash(config)>.<fmt>``."""

    name: str
    fn: Callable[..., Mapping]
    config: Mapping
    fmt: str = "npz"
    #: keyword arguments of ``fn`` that do not change the result (chunk sizes, threads): not
    #: hashed, not stored, so changing them reuses the file (``fn(config, **options)``).
    options: Optional[Mapping] = None


class UnitResult(NamedTuple):
    """What :func:`run_unit` returns: the unit's ``name``, its file ``path``, the loaded or
    computed ``value`` (dict), whether it was ``computed`` (False: loaded from disk) and the
    ``seconds`` it took."""

    name: str
    path: str
    value: dict
    computed: bool
    seconds: float


class RunResult(NamedTuple):
    """What :func:`map_units` returns.

    ``values`` and ``paths`` map unit names to results and files (in the order of the units);
    ``computed`` / ``skipped`` are the names computed in this call / loaded from disk.
    """

    values: dict
    paths: dict
    computed: tuple
    skipped: tuple
    seconds: float

    @property
    def n_computed(self) -> int:
        return len(self.computed)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)


# ------------------------------------------------------------------------------ naming
def _canonical(o):
    if isinstance(o, Mapping):
        return {str(k): _canonical(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_canonical(v) for v in o]
    if isinstance(o, np.ndarray):
        return _canonical(o.tolist())
    if isinstance(o, np.generic):
        return _canonical(o.item())
    if isinstance(o, bool) or o is None or isinstance(o, (int, str)):
        return o
    if isinstance(o, float):
        return o if math.isfinite(o) else repr(o)
    raise TypeError(f"unit config values must be JSON-like (dict, list, str, number, bool, None,"
                    f" numpy array); got {type(o).__name__}")


def config_hash(config: Mapping, *, length: int = 12) -> str:
    """First ``length`` hex digits of the SHA-256 of the canonical JSON of ``config`` (keys
    sorted, no whitespace; numpy scalars/arrays as Python numbers/lists, so ``np.int64(3)`` and
    ``3`` hash alike; ``1`` and ``1.0`` differ)."""
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _check_unit(unit) -> Unit:
    if not isinstance(unit, Unit):
        raise ValueError(f"units must be sgntk.runner.Unit; got {type(unit).__name__}")
    if not isinstance(unit.name, str) or not _NAME.match(unit.name) or any(
            p in (".", "..") for p in unit.name.split("/")):
        raise ValueError("unit name must be a relative path of letters, digits and _.+=,- "
                         f"(folders separated by '/'); got {unit.name!r}")
    if unit.fmt not in _FORMATS:
        raise ValueError(f"unit fmt must be one of {_FORMATS}; got {unit.fmt!r}")
    if not callable(unit.fn):
        raise ValueError(f"unit fn must be callable; got {unit.fn!r} for {unit.name!r}")
    if unit.options is not None and not isinstance(unit.options, Mapping):
        raise ValueError(f"unit options must be a mapping or None; got "
                         f"{type(unit.options).__name__} for {unit.name!r}")
    if not isinstance(unit.config, Mapping):
        raise ValueError(f"unit config must be a mapping; got {type(unit.config).__name__} "
                         f"for {unit.name!r}")
    return unit


def unit_path(unit: Unit, out) -> str:
    """``<out>/<name>-<config_hash(config)>.<fmt>``."""
    _check_unit(unit)
    return os.path.join(os.fspath(out), f"{unit.name}-{config_hash(unit.config)}.{unit.fmt}")


# ------------------------------------------------------------------------------ one unit
def load_unit(path) -> dict:
    """The result stored in a unit file (``.npz`` or ``.json``), without the stored config."""
    path = os.fspath(path)
    if path.endswith(".json"):
        with open(path) as f:
            return json.load(f)["result"]
    value = read_npz(path)
    value.pop(_CONFIG_KEY, None)
    return value


def _save(unit: Unit, path: str, value) -> None:
    if not isinstance(value, Mapping):
        raise ValueError(f"unit {unit.name!r}: fn must return a dict; got {type(value).__name__}")
    cfg = json.dumps(_canonical(unit.config), sort_keys=True)
    if unit.fmt == "json":
        write_json(path, {"config": json.loads(cfg), "result": dict(value)})
        return
    if _CONFIG_KEY in value:
        raise ValueError(f"unit {unit.name!r}: result key {_CONFIG_KEY!r} is reserved")
    write_npz(path, **{_CONFIG_KEY: np.array(cfg)}, **value)


def run_unit(unit: Unit, out, *, force: bool = False) -> UnitResult:
    """Load ``unit``'s file from ``out`` if it exists (and not ``force``), else compute
    ``unit.fn(unit.config)``, write it atomically and return it (the saved form: arrays for
    ``npz``, JSON types for ``json``, so a computed and a resumed result look alike).

    This is the function an executor runs on a worker (see the module docstring).
    """
    path = unit_path(unit, out)
    t0 = time.perf_counter()
    if os.path.exists(path) and not force:
        return UnitResult(unit.name, path, load_unit(path), False, time.perf_counter() - t0)
    value = unit.fn(unit.config, **(unit.options or {}))
    _save(unit, path, value)
    value = load_unit(path) if unit.fmt == "json" else {k: np.asarray(v)
                                                         for k, v in value.items()}
    return UnitResult(unit.name, path, value, True, time.perf_counter() - t0)


# ------------------------------------------------------------------------------ many units
def _dedupe(units: Iterable[Unit]) -> list:
    seen: dict = {}
    out = []
    for u in units:
        _check_unit(u)
        if u.name in seen:
            if config_hash(seen[u.name].config) != config_hash(u.config) or \
                    seen[u.name].fmt != u.fmt:
                raise ValueError(f"two units named {u.name!r} with different configs")
            continue
        seen[u.name] = u
        out.append(u)
    return out


def map_units(units: Iterable[Unit], out, *, executor: Any = None, force: bool = False,
              progress: bool = True, desc: Optional[str] = None) -> RunResult:
    """Run every unit into the folder ``out``; finished units are loaded, not recomputed.

    Args:
      units: :class:`Unit` s (names unique; a repeated name with the same config runs once).
      out: results folder (created if needed).
      executor: ``None`` runs the missing units here, in order; otherwise an object whose
        ``submit(fn, *args, **kwargs)`` returns a :class:`concurrent.futures.Future` (thread or
        process pool, a Ray adapter: module docstring). On an error or interrupt the pending
        futures are cancelled; finished units stay on disk.
      force: recompute (and overwrite) every unit.
      progress: show a tqdm bar over units.
      desc: the bar's label.

    Returns:
      :class:`RunResult` (values, paths, names computed / skipped, seconds).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    units = _dedupe(units)
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    results: dict = {}
    todo = []
    with tqdm(total=len(units), desc=desc, disable=not progress, unit="unit") as bar:
        for u in units:
            path = unit_path(u, out)
            if os.path.exists(path) and not force:
                results[u.name] = UnitResult(u.name, path, load_unit(path), False, 0.0)
                bar.update()
            else:
                todo.append(u)
        if executor is None:
            for u in todo:
                bar.set_postfix_str(u.name, refresh=True)
                results[u.name] = run_unit(u, out, force=force)
                bar.update()
        elif todo:
            futures = {executor.submit(run_unit, u, out, force=force): u for u in todo}
            try:
                for fut in concurrent.futures.as_completed(futures):
                    r = fut.result()
                    results[r.name] = r
                    bar.set_postfix_str(r.name, refresh=False)
                    bar.update()
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    ordered = [results[u.name] for u in units]
    return RunResult(values={r.name: r.value for r in ordered},
                     paths={r.name: r.path for r in ordered},
                     computed=tuple(r.name for r in ordered if r.computed),
                     skipped=tuple(r.name for r in ordered if not r.computed),
                     seconds=time.perf_counter() - t0)
