"""sgntk.runner.RayExecutor: sweeps on a local Ray with 2 workers (marker ``distributed``).

Run with ``python -m pytest -m distributed`` after ``pip install -e ".[distributed]"``; a missing
Ray FAILS these tests (they are never skipped). Not in the default run (pyproject addopts).
Last run: ``benchmarks/results/distributed_tests.txt``.

* a sweep on Ray gives the same unit files (names and contents) as the in-process run, and
  its units ran in two worker processes;
* a worker killed (SIGKILL from outside) while it computes a unit: Ray reruns that unit
  (``max_retries``), the units finished before are neither lost nor recomputed;
* with ``max_retries=0`` the sweep fails, the finished units stay on disk and a rerun resumes;
* a Python exception in a unit propagates and is not retried;
* ``experiments/randman.py --ray`` (the seeds sweep) and ``sgntk reproduce eilers2024 --smoke
  --ray`` (the study's 18 units) write the same results as in process.
"""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from sgntk import runner
from sgntk.runner import Unit, map_units

pytestmark = pytest.mark.distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------ unit functions
def kernel_unit(c, *, side=None):
    """A real unit: an SG-NTK block (sgntk imported on the worker); records its worker pid."""
    from sgntk import kernels

    if side:
        os.makedirs(side, exist_ok=True)
        with open(os.path.join(side, f"{c['seed']}-{os.getpid()}.done"), "w"):
            pass
    x = np.random.default_rng(c["seed"]).normal(size=(c["n"], 3))
    k = kernels.mlp(x, depth=2, activation="sign", surrogate=c["surrogate"], sigma_b=0.1,
                    which=("nngp", "sgntk"))
    return {"nngp": np.asarray(k.nngp), "sgntk": np.asarray(k.sgntk), "x": x}


def summary_unit(c):
    return {"total": sum(range(c["n"])), "label": c["label"]}


def blocking_unit(c, *, side, wait_for=()):
    """Writes ``attempt-<k>-<pid>`` and waits for ``release`` (the test kills it from outside
    while it waits); with ``c['die']`` it kills its own worker on the first attempt once the
    files ``wait_for`` exist."""
    os.makedirs(side, exist_ok=True)
    attempt = len(glob.glob(os.path.join(side, "attempt-*"))) + 1
    with open(os.path.join(side, f"attempt-{attempt}-{os.getpid()}"), "w"):
        pass
    t0 = time.time()
    while not all(os.path.exists(p) for p in wait_for):
        if time.time() - t0 > 300:
            raise TimeoutError("the other units never finished")
        time.sleep(0.05)
    if c.get("die") and attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    while not os.path.exists(os.path.join(side, "release")):
        if time.time() - t0 > 300:
            raise TimeoutError("never released")
        time.sleep(0.05)
    return {"attempt": np.int64(attempt)}


def failing_unit(c, *, side):
    with open(os.path.join(side, f"fail-{len(os.listdir(side))}"), "w"):
        pass
    raise RuntimeError("unit failed on purpose")


def _run_in_process_and_on_ray(args, tmp_path):
    """Run the command ``args`` into ``tmp_path/seq`` in process and into ``tmp_path/ray`` with
    ``--ray --workers 2``; both must succeed."""
    for out, extra in (("seq", []), ("ray", ["--ray", "--workers", "2"])):
        res = subprocess.run(args + ["--out", str(tmp_path / out)] + extra, capture_output=True,
                             text=True, timeout=900)
        assert res.returncode == 0, (out, res.stderr[-3000:])


def _files(folder):
    return sorted(os.path.relpath(p, folder) for p in glob.glob(os.path.join(folder, "**", "*"),
                                                                recursive=True)
                  if os.path.isfile(p))


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def ray_executor():
    import ray  # noqa: F401 - a missing ray fails here (no skip)

    with runner.RayExecutor(num_workers=2, max_retries=3,
                            init_kwargs=dict(object_store_memory=100 * 2**20,
                                             log_to_driver=False)) as ex:
        yield ex


# ------------------------------------------------------------------------------ tests
def test_ray_sweep_equals_in_process(tmp_path, ray_executor):
    side = str(tmp_path / "side")
    units = [Unit(f"k/{sur}-n{n}", kernel_unit, {"seed": i, "n": n, "surrogate": sur},
                  options={"side": side})
             for i, (sur, n) in enumerate((("gaussian", 7), ("erf", 5), ("fast_sigmoid", 6),
                                           ("triangular", 4)))]
    units.append(Unit("s/sum", summary_unit, {"n": 5, "label": "x"}, fmt="json"))
    seq = map_units(units, tmp_path / "seq", progress=False)
    par = map_units(units, tmp_path / "ray", executor=ray_executor, progress=False)
    assert par.computed == seq.computed == tuple(u.name for u in units)
    assert _files(tmp_path / "seq") == _files(tmp_path / "ray")
    for u in units:
        a = runner.load_unit(par.paths[u.name])
        b = runner.load_unit(seq.paths[u.name])
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    pids = {int(p.rsplit("-", 1)[1].split(".")[0]) for p in os.listdir(side)}
    assert os.getpid() in pids and len(pids) >= 2   # in process + Ray worker(s)
    ray_pids = {int(p.rsplit("-", 1)[1].split(".")[0]) for p in os.listdir(side)} - {os.getpid()}
    assert ray_pids, "no unit ran in a Ray worker"
    again = map_units(units, tmp_path / "ray", executor=ray_executor, progress=False)
    assert again.n_computed == 0 and again.n_skipped == len(units)


def test_two_workers_run_at_once(tmp_path, ray_executor):
    """Two blocking units both start before either is released: two workers in parallel."""
    side = str(tmp_path / "side")
    units = [Unit(f"b{i}", blocking_unit, {"i": i}, options={"side": side}) for i in range(2)]
    th = threading.Thread(target=lambda: map_units(units, tmp_path / "out",
                                                   executor=ray_executor, progress=False))
    th.start()
    t0 = time.time()
    while len(glob.glob(os.path.join(side, "attempt-*"))) < 2 and time.time() - t0 < 120:
        time.sleep(0.1)
    started = len(glob.glob(os.path.join(side, "attempt-*")))
    open(os.path.join(side, "release"), "w").close()
    th.join(timeout=120)
    assert started == 2
    assert len(_files(tmp_path / "out")) == 2


def test_killed_worker_is_retried_and_loses_no_finished_unit(tmp_path, ray_executor):
    side_fast, side_slow = str(tmp_path / "fast"), str(tmp_path / "slow")
    fast = [Unit(f"fast{i}", kernel_unit, {"seed": i, "n": 4, "surrogate": "erf"},
                 options={"side": side_fast}) for i in range(3)]
    slow = Unit("slow", blocking_unit, {"i": 0}, options={"side": side_slow})
    out = tmp_path / "out"
    box = {}

    def sweep():
        try:
            box["result"] = map_units([slow] + fast, out, executor=ray_executor, progress=False)
        except BaseException as e:  # noqa: BLE001 - reported below
            box["error"] = e

    th = threading.Thread(target=sweep)
    th.start()
    paths = {u.name: runner.unit_path(u, out) for u in fast}
    t0 = time.time()
    while not (all(os.path.exists(p) for p in paths.values())
               and glob.glob(os.path.join(side_slow, "attempt-1-*"))):
        assert time.time() - t0 < 180, "units did not start"
        time.sleep(0.1)
    finished = {name: os.stat(p).st_mtime_ns for name, p in paths.items()}
    (first,) = glob.glob(os.path.join(side_slow, "attempt-1-*"))
    os.kill(int(first.rsplit("-", 1)[1]), signal.SIGKILL)     # kill the worker mid-unit
    while not glob.glob(os.path.join(side_slow, "attempt-2-*")):
        assert time.time() - t0 < 180, "the killed unit was not retried"
        time.sleep(0.1)
    open(os.path.join(side_slow, "release"), "w").close()
    th.join(timeout=180)
    assert "error" not in box, box.get("error")
    res = box["result"]
    assert set(res.computed) == {"slow", "fast0", "fast1", "fast2"}
    assert int(res.values["slow"]["attempt"]) == 2
    # the finished units: still there, not rewritten, each computed exactly once
    assert {n: os.stat(p).st_mtime_ns for n, p in paths.items()} == finished
    assert len(os.listdir(side_fast)) == 3
    assert sorted(_files(out)) == sorted(os.path.basename(runner.unit_path(u, out))
                                         for u in [slow] + fast)


def test_no_retries_fails_but_keeps_finished_units(tmp_path, ray_executor):
    side_fast, side_slow = str(tmp_path / "fast"), str(tmp_path / "slow")
    fast = [Unit(f"fast{i}", kernel_unit, {"seed": i, "n": 4, "surrogate": "gaussian"},
                 options={"side": side_fast}) for i in range(2)]
    out = tmp_path / "out"
    dying = Unit("dying", blocking_unit, {"die": True},
                 options={"side": side_slow,
                          "wait_for": [runner.unit_path(u, out) for u in fast]})
    os.makedirs(side_slow)
    open(os.path.join(side_slow, "release"), "w").close()
    import ray

    with runner.RayExecutor(max_retries=0) as ex:   # joins the running Ray
        with pytest.raises(ray.exceptions.RayError):
            map_units(fast + [dying], out, executor=ex, progress=False)
    assert not os.path.exists(runner.unit_path(dying, out))
    res = map_units(fast + [dying], out, executor=ray_executor, progress=False)
    assert res.computed == ("dying",) and set(res.skipped) == {"fast0", "fast1"}
    assert int(res.values["dying"]["attempt"]) == 2
    assert not [f for f in _files(out) if ".tmp_" in f]


def test_unit_exception_propagates_without_retry(tmp_path, ray_executor):
    side = tmp_path / "side"
    side.mkdir()
    units = [Unit("bad", failing_unit, {"n": 1}, options={"side": str(side)})]
    with pytest.raises(RuntimeError, match="unit failed on purpose"):
        map_units(units, tmp_path / "out", executor=ray_executor, progress=False)
    assert len(os.listdir(side)) == 1   # not retried


def test_randman_seeds_on_ray_equal_in_process(tmp_path):
    """``experiments/randman.py --smoke --ray --workers 2`` == the in-process run (same unit
    files, same accuracies and losses)."""
    args = [sys.executable, os.path.join(ROOT, "experiments", "randman.py"), "--smoke",
            "--set", "epochs=2", "--seeds", "0", "1", "--no-progress"]
    _run_in_process_and_on_ray(args, tmp_path)
    assert _files(tmp_path / "seq") == _files(tmp_path / "ray")
    for f in _files(tmp_path / "seq"):
        if f.endswith("summary.json"):
            continue
        a = json.load(open(tmp_path / "seq" / f))
        b = json.load(open(tmp_path / "ray" / f))
        assert a["config"] == b["config"]
        for key in ("test_accuracy", "history", "test"):
            assert a["result"][key] == b["result"][key], (f, key)


def test_reproduce_cli_runs_units_on_ray(monkeypatch, tmp_path):
    """``sgntk reproduce ... --ray --workers 2`` hands the study a RayExecutor whose units run
    (the study itself is replaced by a one-unit sweep)."""
    from sgntk import cli

    study = cli.load_study("eilers2024")
    seen = {}

    def fake_run(config, **kw):
        ex = kw.get("executor")
        seen["executor"] = type(ex).__name__
        seen["result"] = map_units([Unit("s", summary_unit, {"n": 3, "label": "cli"},
                                         fmt="json")], tmp_path, executor=ex, progress=False)

    monkeypatch.setattr(study, "run", fake_run)
    assert cli.main(["reproduce", "eilers2024", "--smoke", "--ray", "--workers", "2"]) == 0
    assert seen["executor"] == "RayExecutor"
    assert seen["result"].computed == ("s",)
    assert seen["result"].values["s"] == {"label": "cli", "total": 3}


def test_eilers_smoke_study_on_ray_equals_in_process(tmp_path):
    """The real sweep: ``sgntk reproduce eilers2024 --smoke`` in process and with ``--ray
    --workers 2`` write the same files; every unit file holds the same arrays (only the
    recorded wall time ``seconds`` differs)."""
    sgntk = [sys.executable, "-m", "sgntk.cli", "reproduce", "eilers2024", "--smoke"]
    for name, extra in (("seq", []), ("ray", ["--ray", "--workers", "2"])):
        p = subprocess.run(sgntk + ["--out", str(tmp_path / name)] + extra, capture_output=True,
                           text=True, timeout=1500, cwd=ROOT)
        assert p.returncode == 0, p.stderr[-3000:]
    files = _files(tmp_path / "seq")
    assert files == _files(tmp_path / "ray")
    units = [f for f in files if f.endswith(".npz") and "-" in os.path.basename(f)]
    computed = re.search(r"(\d+) units computed, 0 resumed", p.stdout)
    assert computed and int(computed.group(1)) == len(units) >= 10   # all ran on Ray
    for f in units + ["data.npz"]:
        a = runner.load_unit(tmp_path / "seq" / f)
        b = runner.load_unit(tmp_path / "ray" / f)
        assert a.keys() == b.keys(), f
        for key in a:
            if key != "seconds":
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{f}: {key}")


def test_select_cli_on_ray_equals_in_process(tmp_path):
    """``sgntk select ... --ray --workers 2``: every grid point a Ray task; the same rows
    (scores and diagnostics) as the in-process run."""
    grid = dict(shape=["fast_sigmoid", "gaussian"], sharpness=[1.0, 4.0], dampening=[1.0],
                sigma_w=[1.0])
    gpath = tmp_path / "grid.json"
    gpath.write_text(json.dumps(grid))
    args = [sys.executable, "-m", "sgntk.cli", "select", "--data", "circle", "--n-samples", "12",
            "--grid", str(gpath), "--network", '{"depth": 1}', "--train-steps", "10",
            "--no-progress"]
    _run_in_process_and_on_ray(args, tmp_path)
    a = json.loads((tmp_path / "seq" / "select.json").read_text())["rows"]
    b = json.loads((tmp_path / "ray" / "select.json").read_text())["rows"]
    assert len(a) == 4 and a == b


def test_selection_validation_training_on_ray_equals_in_process(tmp_path):
    """``experiments/selection/validation.py train --smoke --ray --workers 2`` (the selection
    study's LIF training runs, one unit per configuration): the same unit files and the same
    trained accuracies and histories as in process (two configurations of the real config;
    only the recorded wall time differs)."""
    with open(os.path.join(ROOT, "experiments", "selection", "validation.json")) as f:
        spec = json.load(f)
    spec["configs"] = spec["configs"][:2]
    cfg = tmp_path / "validation.json"
    cfg.write_text(json.dumps(spec))
    args = [sys.executable, os.path.join(ROOT, "experiments", "selection", "validation.py"),
            "train", "--smoke", "--task", "randman", "--config", str(cfg), "--no-progress"]
    _run_in_process_and_on_ray(args, tmp_path)
    files = _files(tmp_path / "seq")
    assert files == _files(tmp_path / "ray") and len(files) == 2
    for f in files:
        a = json.load(open(tmp_path / "seq" / f))
        b = json.load(open(tmp_path / "ray" / f))
        assert a["config"] == b["config"]
        a["result"].pop("wall_time_s"), b["result"].pop("wall_time_s")   # only the clock differs
        assert a["result"] == b["result"], f
