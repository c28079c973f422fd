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

* ``concurrent.futures.ThreadPoolExecutor`` / ``ProcessPoolExecutor`` work as they are (for
  processes, units and their ``fn`` must be picklable -- module-level functions -- and the pool
  should use ``mp_context=multiprocessing.get_context("spawn")``: forking a process that runs JAX
  threads can deadlock);
* :class:`RayExecutor` runs each unit as a Ray task (``pip install -e ".[distributed]"``): a
  local Ray started embedded (``RayExecutor()``, ``num_workers`` CPUs) or an existing cluster
  (``RayExecutor("ray://head:10001")`` / ``"auto"``). Each task calls :func:`run_unit`, so it
  writes the same atomic unit file as the in-process run (``out`` must be a folder every worker
  can write: local disk for local Ray, a shared file system on a cluster). A task whose worker
  dies (killed, out of memory, node lost) is retried by Ray up to ``max_retries`` times; units
  that finished are on disk and are never recomputed. An exception raised by a unit's ``fn`` is
  not retried (it would fail again): it propagates as in the in-process run.
* ``with executor(args) as ex:`` turns the command-line flags ``--ray`` / ``--ray-address
  ADDR`` / ``--workers N`` (:func:`add_executor_arguments`) into ``None`` (in process, the
  default), a pool of ``N`` local processes (``--workers N`` alone: :func:`process_pool`, no
  extra needed) or a started :class:`RayExecutor`; ``sgntk reproduce`` and
  ``experiments/randman.py`` use them.

Checked by ``tests/test_runner.py`` (resume, force, stale configs, interruption, executors).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
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
           "map_units", "load_unit", "RayExecutor", "executor", "add_executor_arguments",
           "process_pool"]

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
        process pool, :class:`RayExecutor`). On an error or interrupt the pending futures are
        cancelled (and the executor's ``cancel_pending()`` called, if it has one: Ray tasks);
        finished units stay on disk.
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
                cancel = getattr(executor, "cancel_pending", None)  # e.g. RayExecutor's tasks
                if cancel is not None:
                    cancel()
                raise
    ordered = [results[u.name] for u in units]
    return RunResult(values={r.name: r.value for r in ordered},
                     paths={r.name: r.path for r in ordered},
                     computed=tuple(r.name for r in ordered if r.computed),
                     skipped=tuple(r.name for r in ordered if not r.computed),
                     seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------------------ Ray executor
def _import_ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the Ray executor needs Ray: pip install -e \".[distributed]\" "
                          "(or pip install 'ray>=2.9')") from e
    return ray


def _shipped_module(fn):
    """The module of a unit's ``fn`` when its code has to travel with the task (Ray pickles it by
    value): anything outside the ``sgntk`` package and outside installed packages -- scripts,
    ``experiments/*/study.py`` loaded from a path, test modules -- which a worker (in particular
    a cluster node) may not be able to import by name. None otherwise."""
    import sys
    while hasattr(fn, "func"):   # functools.partial
        fn = fn.func
    name = getattr(fn, "__module__", None) or type(fn).__module__
    mod = sys.modules.get(name)
    if mod is None or name == "__main__" or name.split(".")[0] in ("sgntk",):
        return None
    path = os.path.abspath(getattr(mod, "__file__", None) or "")
    if not path or any(part in ("site-packages", "dist-packages") for part in path.split(os.sep)):
        return None
    return mod


class RayExecutor:
    """Run each unit as a Ray task (``map_units(units, out, executor=RayExecutor())``).

    Args:
      address: None or ``"local"`` starts a local Ray embedded in this process (stopped by
        :meth:`shutdown` / leaving the ``with`` block); ``"auto"`` or ``"ray://host:10001"`` (or
        ``"host:6379"``) connects to an existing cluster (left running). If Ray is already
        initialised in this process it is used as it is.
      num_workers: CPUs of the embedded local Ray (= units at a time with ``cpus_per_unit=1``);
        default all CPUs of the machine. Ignored for a cluster (its nodes decide).
      cpus_per_unit: Ray CPUs reserved per unit (``num_cpus`` of each task).
      gpus_per_unit: Ray GPUs reserved per unit (``num_gpus``; 0 by default).
      max_retries: how many times Ray reruns a unit whose worker process died (killed, out of
        memory, node lost) before the sweep fails; finished units are on disk either way. A
        Python exception raised by the unit is not retried.
      init_kwargs: further keyword arguments of ``ray.init`` (``runtime_env``, ...).

    Unit functions from modules a worker cannot import by name (scripts, experiment studies
    loaded from a path, test modules) are shipped with the task (cloudpickle by value); the
    ``sgntk`` package itself must be installed on every node. ``out`` must be writable by every
    worker (a shared file system on a cluster). Each worker computes and writes its unit's file
    with :func:`run_unit`, so the files are the same as those of an in-process run.
    """

    def __init__(self, address: Optional[str] = None, *, num_workers: Optional[int] = None,
                 cpus_per_unit: float = 1, gpus_per_unit: float = 0, max_retries: int = 3,
                 init_kwargs: Optional[Mapping] = None):
        if num_workers is not None and (isinstance(num_workers, bool) or
                                        not isinstance(num_workers, int) or num_workers < 1):
            raise ValueError(f"num_workers must be an integer >= 1 or None; got {num_workers!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0; got {max_retries!r}")
        if not (cpus_per_unit > 0):
            raise ValueError(f"cpus_per_unit must be > 0; got {cpus_per_unit!r}")
        if not (gpus_per_unit >= 0):
            raise ValueError(f"gpus_per_unit must be >= 0; got {gpus_per_unit!r}")
        self.address = address
        self.num_workers = num_workers
        self.cpus_per_unit = cpus_per_unit
        self.gpus_per_unit = gpus_per_unit
        self.max_retries = max_retries
        self.init_kwargs = dict(init_kwargs or {})
        self._ray = None
        self._started = False
        self._remote = None
        self._refs: list = []
        self._shipped: set = set()

    # -------------------------------------------------------------- lifecycle
    def start(self) -> "RayExecutor":
        """Initialise Ray (embedded local instance or connection to ``address``)."""
        if self._ray is not None:
            return self
        ray = _import_ray()
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, **self.init_kwargs)
            if self.address in (None, "local"):
                kw.setdefault("num_cpus", self.num_workers)
                ray.init(address="local", **kw)
            else:
                ray.init(address=self.address, **kw)
            self._started = True
        self._ray = ray
        self._remote = ray.remote(max_retries=self.max_retries, retry_exceptions=False,
                                  num_cpus=self.cpus_per_unit,
                                  num_gpus=self.gpus_per_unit)(_run_unit_task)
        return self

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel pending tasks if asked; stop Ray if this executor started it."""
        if self._ray is None:
            return
        if cancel_futures:
            self.cancel_pending()
        if self._started:
            self._ray.shutdown()
        self._ray, self._remote, self._started, self._refs = None, None, False, []

    def __enter__(self) -> "RayExecutor":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.shutdown(cancel_futures=exc_type is not None)

    # -------------------------------------------------------------- executor protocol
    def submit(self, fn: Callable, *args, **kwargs) -> concurrent.futures.Future:
        """``fn(*args, **kwargs)`` as a Ray task; a :class:`concurrent.futures.Future`."""
        self.start()
        for a in args:
            if isinstance(a, Unit):
                mod = _shipped_module(a.fn)
                if mod is not None and mod.__name__ not in self._shipped:
                    from ray import cloudpickle
                    cloudpickle.register_pickle_by_value(mod)
                    self._shipped.add(mod.__name__)
        ref = self._remote.remote(fn, *args, **kwargs)
        self._refs.append(ref)
        return ref.future()

    def cancel_pending(self) -> None:
        """Cancel the Ray tasks submitted through this executor that have not finished
        (called by :func:`map_units` on an error or interrupt)."""
        if self._ray is None:
            return
        for ref in self._refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - finished or already gone
                pass
        self._refs = []


def _run_unit_task(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def process_pool(workers: int, *, threads_per_worker: Optional[int] = None
                 ) -> concurrent.futures.ProcessPoolExecutor:
    """``workers`` local processes started with ``spawn`` (forking a process that runs JAX
    threads can deadlock): the executor of ``--workers N`` without Ray. Each process compiles
    its own JAX functions; units and their ``fn`` must be module-level (picklable).

    ``threads_per_worker`` (default ``max(1, cpus // workers)``): XLA's CPU thread pools of each
    process are capped so that the workers together do not oversubscribe the cores (measured:
    the default 200-point ``sgntk select`` grid took 11.7 min with two workers and XLA's default
    pools, 7.2 min with one thread each, against ~10 min extrapolated in one process).
    """
    import multiprocessing

    if threads_per_worker is None:
        threads_per_worker = max(1, (os.cpu_count() or 1) // workers)
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=_limit_threads, initargs=(int(threads_per_worker),))


def _limit_threads(threads: int) -> None:
    """Worker initializer (runs before the worker imports JAX): cap XLA's CPU threads."""
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        flags += " --xla_cpu_multi_thread_eigen=false"
    if "intra_op_parallelism_threads" not in flags:
        flags += f" intra_op_parallelism_threads={threads}"
    os.environ["XLA_FLAGS"] = flags.strip()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


# ------------------------------------------------------------------------------ command line
def add_executor_arguments(parser) -> None:
    """Add ``--ray``, ``--ray-address ADDR`` and ``--workers N`` to an ``argparse`` parser
    (read back with :func:`executor`)."""
    g = parser.add_argument_group("distributed units (Ray; pip install -e \".[distributed]\")")
    g.add_argument("--ray", action="store_true",
                   help="run each unit as a task on a local Ray started here")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="run each unit as a task on an existing Ray cluster "
                        "('auto', 'ray://host:10001'); implies --ray")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="units at a time: without --ray, N local processes (no extra needed); "
                        "with --ray, CPUs of the local Ray (default: all CPUs)")


@contextlib.contextmanager
def executor(args=None, *, ray: bool = False, ray_address: Optional[str] = None,
             workers: Optional[int] = None, **ray_kwargs):
    """Context manager giving the executor the flags ask for: ``None`` (units in process, the
    default), ``workers = N >= 2`` without Ray: a pool of ``N`` local processes
    (:func:`process_pool`; ``N = 1`` is in process), or a started :class:`RayExecutor` (an
    embedded Ray is stopped on exit)::

        with runner.executor(args) as ex:
            runner.map_units(units, out, executor=ex)

    ``args`` is an ``argparse.Namespace`` from a parser with :func:`add_executor_arguments`;
    or give ``ray``/``ray_address``/``workers`` directly (``ray_kwargs``: more
    :class:`RayExecutor` options).
    """
    if args is not None:
        ray = getattr(args, "ray", False)
        ray_address = getattr(args, "ray_address", None)
        workers = getattr(args, "workers", None)
    if not (ray or ray_address):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise ValueError(f"workers (--workers) must be an integer >= 1; got {workers!r}")
        if workers is None or workers == 1:
            yield None
            return
        with process_pool(workers) as ex:
            yield ex
        return
    with RayExecutor(ray_address, num_workers=workers, **ray_kwargs) as ex:
        yield ex
