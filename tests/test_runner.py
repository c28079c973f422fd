"""sgntk.runner: resume, force, config hashes, atomic files, interruption, executors."""
import concurrent.futures
import hashlib
import json
import math
import os

import numpy as np
import pytest

from sgntk import runner
from sgntk.runner import Unit, map_units


def square(c, *, scale=1.0):
    """A pure unit function (module level: picklable for process pools)."""
    return {"y": scale * np.arange(c["n"], dtype=float) ** 2, "n": np.int64(c["n"])}


def summary(c):
    return {"total": sum(range(c["n"])), "label": c.get("label", "")}


class Counter:
    """Unit function that counts its calls (the test's view of "was it recomputed")."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, c):
        if c["n"] == self.fail_on:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C in this unit
        self.calls.append(c["n"])
        return square(c)


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, fs in os.walk(folder) for f in fs)


def test_resume_loads_instead_of_recomputing(tmp_path):
    fn = Counter()
    units = [Unit(f"sq/n{n}", fn, {"n": n}) for n in (1, 2, 3)]
    r1 = map_units(units, tmp_path, progress=False)
    assert r1.computed == ("sq/n1", "sq/n2", "sq/n3") and r1.skipped == ()
    assert fn.calls == [1, 2, 3]
    r2 = map_units(units, tmp_path, progress=False)
    assert fn.calls == [1, 2, 3]  # nothing recomputed
    assert r2.n_computed == 0 and r2.n_skipped == 3
    for name in r1.values:
        assert r1.values[name].keys() == r2.values[name].keys()
        for k in r1.values[name]:
            np.testing.assert_array_equal(r1.values[name][k], r2.values[name][k])
    assert r1.paths == r2.paths
    # the stored config is provenance only; the loaded value is exactly what fn returned
    np.testing.assert_array_equal(r2.values["sq/n3"]["y"], [0.0, 1.0, 4.0])
    assert set(r2.values["sq/n3"]) == {"y", "n"}


def test_force_recomputes(tmp_path):
    fn = Counter()
    units = [Unit("a", fn, {"n": 2})]
    map_units(units, tmp_path, progress=False)
    r = map_units(units, tmp_path, force=True, progress=False)
    assert fn.calls == [2, 2] and r.computed == ("a",)


def test_changed_config_gets_a_new_file(tmp_path):
    fn = Counter()
    r1 = map_units([Unit("a", fn, {"n": 2})], tmp_path, progress=False)
    r2 = map_units([Unit("a", fn, {"n": 3})], tmp_path, progress=False)
    assert fn.calls == [2, 3] and r1.paths["a"] != r2.paths["a"]
    assert len(r2.values["a"]["y"]) == 3
    # the hash: stable, key order and numpy scalars do not matter, values and types do
    h = runner.config_hash
    assert h({"a": 1, "b": [1, 2]}) == h({"b": [1, 2], "a": 1})
    assert h({"a": np.int64(1), "b": np.array([1, 2])}) == h({"a": 1, "b": [1, 2]})
    assert h({"a": 1}) != h({"a": 2}) and h({"a": 1}) != h({"a": 1.0})
    # pinned to the documented definition (a code change must not rename existing files)
    assert h({"b": 0.1, "a": [1, "x"]}) == hashlib.sha256(b'{"a":[1,"x"],"b":0.1}').hexdigest()[:12]
    assert os.path.basename(r1.paths["a"]) == f"a-{h({'n': 2})}.npz"


def test_options_do_not_change_the_file(tmp_path):
    u1 = Unit("a", square, {"n": 3}, options={"scale": 1.0})
    u2 = Unit("a", square, {"n": 3}, options={"scale": 2.0})
    assert runner.unit_path(u1, tmp_path) == runner.unit_path(u2, tmp_path)
    map_units([u1], tmp_path, progress=False)
    r = map_units([u2], tmp_path, progress=False)  # reused: options are not part of the key
    assert r.n_skipped == 1
    np.testing.assert_array_equal(r.values["a"]["y"], [0.0, 1.0, 4.0])


def test_json_units_and_stored_config(tmp_path):
    u = Unit("s/sum", summary, {"n": 4, "label": "x"}, fmt="json")
    r1 = map_units([u], tmp_path, progress=False)
    r2 = map_units([u], tmp_path, progress=False)
    assert r1.values == r2.values == {"s/sum": {"label": "x", "total": 6}}
    with open(r1.paths["s/sum"]) as f:
        assert json.load(f)["config"] == {"label": "x", "n": 4}
    with np.load(map_units([Unit("b", square, {"n": 2})], tmp_path,
                           progress=False).paths["b"]) as z:
        assert json.loads(str(z["__unit_config__"])) == {"n": 2}


def test_interrupt_loses_no_finished_unit(tmp_path):
    fn = Counter(fail_on=3)
    units = [Unit(f"n{n}", fn, {"n": n}) for n in (1, 2, 3, 4)]
    with pytest.raises(KeyboardInterrupt):
        map_units(units, tmp_path, progress=False)
    assert _files(tmp_path) == sorted(os.path.basename(runner.unit_path(u, tmp_path))
                                      for u in units[:2])  # finished ones, no temp files
    fn.fail_on = None
    r = map_units(units, tmp_path, progress=False)
    assert r.skipped == ("n1", "n2") and r.computed == ("n3", "n4")
    assert fn.calls == [1, 2, 3, 4]


def test_failed_write_keeps_no_partial_file(tmp_path, monkeypatch):
    def boom(f, **kw):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        map_units([Unit("a", square, {"n": 2})], tmp_path, progress=False)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("pool", [concurrent.futures.ThreadPoolExecutor,
                                  lambda max_workers: runner.process_pool(max_workers)])
def test_executor_matches_sequential(tmp_path, pool):
    units = [Unit(f"n{n}", square, {"n": n}) for n in (5, 1, 3)]
    seq = map_units(units, tmp_path / "seq", progress=False)
    map_units(units[:1], tmp_path / "par", progress=False)  # one already done
    with pool(max_workers=2) as ex:
        par = map_units(units, tmp_path / "par", executor=ex, progress=False)
    assert list(par.values) == ["n5", "n1", "n3"]  # unit order, not completion order
    assert par.skipped == ("n5",) and par.computed == ("n1", "n3")
    for name in seq.values:
        np.testing.assert_array_equal(seq.values[name]["y"], par.values[name]["y"])


def test_executor_error_propagates_and_keeps_finished(tmp_path):
    def bad(c):
        raise RuntimeError("unit failed")
    units = [Unit("ok", square, {"n": 2}), Unit("bad", bad, {"n": 1})]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
        with pytest.raises(RuntimeError, match="unit failed"):
            map_units(units, tmp_path, executor=ex, progress=False)
    assert os.path.exists(runner.unit_path(units[0], tmp_path))


def test_bad_units_raise_value_errors(tmp_path):
    with pytest.raises(ValueError, match="unit name"):
        map_units([Unit("../escape", square, {"n": 1})], tmp_path, progress=False)
    with pytest.raises(ValueError, match="unit name"):
        map_units([Unit("/abs", square, {"n": 1})], tmp_path, progress=False)
    with pytest.raises(ValueError, match="fmt"):
        map_units([Unit("a", square, {"n": 1}, fmt="pickle")], tmp_path, progress=False)
    with pytest.raises(ValueError, match="different configs"):
        map_units([Unit("a", square, {"n": 1}), Unit("a", square, {"n": 2})], tmp_path,
                  progress=False)
    with pytest.raises(ValueError, match="must return a dict"):
        map_units([Unit("a", lambda c: [1], {"n": 1})], tmp_path, progress=False)
    with pytest.raises(TypeError, match="JSON-like"):
        runner.config_hash({"f": object()})
    # the same unit twice runs once
    r = map_units([Unit("a", square, {"n": 1})] * 2, tmp_path, progress=False)
    assert r.computed == ("a",)


def _xla_flags():
    return os.environ.get("XLA_FLAGS", "")


# ------------------------------------------------------------------------------ executor flags
def test_executor_flags_default_to_in_process():
    """``--ray``/``--ray-address``/``--workers`` (the Ray executor itself is tested in
    tests/test_distributed.py, marker ``distributed``)."""
    import argparse

    ap = argparse.ArgumentParser()
    runner.add_executor_arguments(ap)
    args = ap.parse_args([])
    assert (args.ray, args.ray_address, args.workers) == (False, None, None)
    with runner.executor(args) as ex:
        assert ex is None                      # default: units run in process
    args = ap.parse_args(["--ray-address", "ray://head:10001", "--workers", "3"])
    assert args.ray_address == "ray://head:10001" and args.workers == 3
    with runner.executor(ap.parse_args(["--workers", "1"])) as ex:
        assert ex is None                      # one worker: in process
    with runner.executor(ap.parse_args(["--workers", "2"])) as ex:   # no Ray: local processes
        assert isinstance(ex, concurrent.futures.ProcessPoolExecutor)
        assert ex.submit(math.factorial, 5).result() == 120
        # one core each (2 CPUs here or more): XLA's thread pools capped before JAX is imported
        flags = ex.submit(_xla_flags).result()
        assert "intra_op_parallelism_threads=" in flags
    with pytest.raises(ValueError, match="--workers"):
        with runner.executor(ap.parse_args(["--workers", "0"])):
            pass


def test_ray_executor_validates_its_arguments():
    with pytest.raises(ValueError, match="num_workers"):
        runner.RayExecutor(num_workers=0)
    with pytest.raises(ValueError, match="max_retries"):
        runner.RayExecutor(max_retries=-1)
    with pytest.raises(ValueError, match="cpus_per_unit"):
        runner.RayExecutor(cpus_per_unit=0)
    ex = runner.RayExecutor(num_workers=2)     # nothing started until used
    assert ex._ray is None
    ex.shutdown()


def test_unit_code_shipped_to_workers_unless_installed():
    import functools

    import sgntk.kernels

    assert runner._shipped_module(square).__name__ == __name__   # a test module: shipped
    assert runner._shipped_module(functools.partial(square, scale=2.0)).__name__ == __name__
    assert runner._shipped_module(sgntk.kernels.mlp) is None      # sgntk: installed on workers
    assert runner._shipped_module(np.sum) is None                 # site-packages
