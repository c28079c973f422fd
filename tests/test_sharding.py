"""sgntk.sharding: kernels computed on several devices (sharded in memory or streamed to disk)
equal the single-device kernels to 1e-12; the on-disk mode resumes.

The devices are 4 forced host CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``).
That flag must be set before JAX initialises, so the checks run in one subprocess
(:data:`SCRIPT`, started once per module) that prints one JSON line of measured differences;
the tests assert on them. Everything is float64.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

TOL = 1e-12   # max |sharded - unsharded| / max(1, |unsharded|) over finite entries

SCRIPT = textwrap.dedent(r'''
    import json, os, shutil, sys
    import numpy as np
    import jax
    from sgntk import empirical, kernels, lif, sharding
    from sgntk import lif_kernels as LK
    from sgntk.surrogates import get

    import time
    out_dir, sections = sys.argv[1], sys.argv[2].split(",")
    res = {"devices": len(jax.devices()), "seconds": {}}
    clock = [time.perf_counter()]

    def lap(name):
        now = time.perf_counter()
        res["seconds"][name] = round(now - clock[0], 2)
        clock[0] = now
    rng = np.random.default_rng(0)

    def diff(a, b):
        a, b = np.asarray(a), np.asarray(b)
        fin = np.isfinite(b)
        same_pattern = bool(np.array_equal(np.isfinite(a), fin)
                            and np.array_equal(a[~fin], b[~fin]))
        err = float(np.max(np.abs(a[fin] - b[fin]) / np.maximum(1.0, np.abs(b[fin])), initial=0.0))
        return {"err": err, "same_nonfinite": same_pattern, "shape": list(a.shape),
                "n_nonfinite": int((~fin).sum())}

    kw = dict(depth=2, activation="sign", surrogate="gaussian", sigma_b=0.1, tile_size=8)
    x, y = rng.normal(size=(37, 3)), rng.normal(size=(29, 3))
    xs = np.concatenate([x, x[:3]])   # 40 rows, 3 duplicates: inf naive NTK off the diagonal

    if "mlp" in sections:
        # kernels.mlp with mesh="all" (4 devices): rows not divisible (37) and divisible (40)
        # by 4, and tiles= (on disk); sign network (naive NTK inf on the diagonal)
        ref = kernels.mlp(x, y, **kw)
        shd = kernels.mlp(x, y, mesh="all", **kw)
        res["mlp_37x29"] = {k: diff(getattr(shd, k), getattr(ref, k)) for k in kernels.KERNELS}
        ref40 = kernels.mlp(xs, **kw)
        shd40 = kernels.mlp(xs, mesh="all", **kw)
        res["mlp_40x40"] = {k: diff(getattr(shd40, k), getattr(ref40, k)) for k in kernels.KERNELS}
        s = shd40.sgntk
        res["mlp_40x40_sharding"] = {"type": type(s).__name__,
                                     "n_devices": len(s.sharding.device_set),
                                     "shard_shapes": sorted({tuple(sh.data.shape)
                                                             for sh in s.addressable_shards})}
        lap("mlp sharded")
        disk = os.path.join(out_dir, "mlp")
        dsk = kernels.mlp(x, y, tiles=disk, **kw)
        res["mlp_disk"] = {k: diff(getattr(dsk, k), getattr(ref, k)) for k in kernels.KERNELS}
        res["mlp_disk_type"] = type(dsk.sgntk).__name__
        res["mlp_disk_files"] = sorted(os.listdir(disk))
        # resume: mark two tiles not done, write a sentinel into one done and one not-done
        # tile; the rerun recomputes exactly the not-done ones
        from sgntk._util import read_npz, write_npz
        done = read_npz(os.path.join(disk, "tiles_done.npz"))["done"]
        res["disk_grid"] = list(done.shape)
        res["disk_all_done"] = bool(done.all())
        done[1, 2] = done[4, 0] = False
        write_npz(os.path.join(disk, "tiles_done.npz"), done=done)
        mm = np.load(os.path.join(disk, "sgntk.npy"), mmap_mode="r+")
        mm[8:16, 16:24] = 12345.0     # tile (1, 2): not done -> recomputed
        mm[0:8, 0:8] = -777.0         # tile (0, 0): done -> kept (so it was not recomputed)
        mm.flush()
        del mm
        again = kernels.mlp(x, y, tiles=disk, **kw)
        a = np.array(again.sgntk)
        res["resume_recomputed_tile"] = diff(a[8:16, 16:24], np.asarray(ref.sgntk)[8:16, 16:24])
        res["resume_kept_tile"] = bool(np.all(a[0:8, 0:8] == -777.0))
        a[0:8, 0:8] = np.asarray(ref.sgntk)[0:8, 0:8]
        res["resume_rest"] = diff(a, ref.sgntk)
        try:
            kernels.mlp(x * 2, y, tiles=disk, **kw)
            res["other_inputs_error"] = None
        except ValueError as e:
            res["other_inputs_error"] = str(e)
        lap("mlp on disk")

    if "empirical" in sections:   # empirical kernels of one finite network
        params = empirical.mlp_init(jax.random.PRNGKey(1), 3, 64, 2)
        ekw = dict(activation="sign", surrogate="triangular", sigma_b=0.1, jump_width=0.1)
        with jax.enable_x64(True):
            params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), params)
            e_ref = empirical.mlp_empirical(params, x, y, **ekw)
            e_shd = sharding.mlp_empirical(params, x, y, tile=8, **ekw)
            e_dsk = sharding.mlp_empirical(params, x, y, tile=8, out=os.path.join(out_dir, "emp"),
                                           **ekw)
        res["empirical"] = {k: diff(e_shd[k], getattr(e_ref, k)) for k in kernels.KERNELS}
        res["empirical_disk"] = {k: diff(e_dsk[k], getattr(e_ref, k)) for k in kernels.KERNELS}
        lap("empirical")

    if "lif" in sections:   # LIF kernels: lif_kernels(mesh=, tiles=) and the generic mapper
        T, n_in = 6, 4
        s1 = (rng.random((9, T, n_in)) < 0.3).astype(float)
        s2 = (rng.random((7, T, n_in)) < 0.3).astype(float)
        cfg = lif.LIFConfig(reset="none", threshold=0.5, surrogate=get("gaussian", sharpness=2.0))
        lkw = dict(config=cfg, readout_weights="sum", sigma_b=0.2, which=("nngp", "sgntk"))
        l_ref = LK.lif_kernels(s1, s2, **lkw)
        l_sym = LK.lif_kernels(s1, **lkw)
        l_mesh = LK.lif_kernels(s1, s2, mesh="all", tile_size=3, **lkw)
        l_msym = LK.lif_kernels(s1, mesh="all", tile_size=4, **lkw)
        l_disk = LK.lif_kernels(s1, s2, tiles=os.path.join(out_dir, "lif"), tile_size=3, **lkw)
        with jax.enable_x64(True):
            cfg64 = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), cfg)
            lfn = LK.lif_kernel_fn(which=("nngp", "sgntk"))
            l_shd = sharding.map_tiles(lfn, s1, s2, tile=3,
                                       args=(cfg64, LK.readout_weights(T, "sum"), 1.0, 0.2, 1.0))
        res["lif"] = {k: diff(l_shd[k], getattr(l_ref, k)) for k in ("nngp", "sgntk")}
        res["lif_mesh"] = {k: diff(getattr(l_mesh, k), getattr(l_ref, k))
                           for k in ("nngp", "sgntk")}
        res["lif_mesh_sym"] = {k: diff(getattr(l_msym, k), getattr(l_sym, k))
                               for k in ("nngp", "sgntk")}
        res["lif_disk"] = {k: diff(getattr(l_disk, k), getattr(l_ref, k))
                           for k in ("nngp", "sgntk")}
        lap("lif")

    if "lif_empirical" in sections:   # finite LIF networks' kernels through mesh= and tiles=
        T, n_in = 6, 4
        s1 = (rng.random((9, T, n_in)) < 0.3).astype(float)
        s2 = (rng.random((7, T, n_in)) < 0.3).astype(float)
        rcfg = lif.LIFConfig(reset="subtract", threshold=0.5,
                             surrogate=get("fast_sigmoid", sharpness=2.0))
        for name, net in (("one", LK.init_lif_net(jax.random.PRNGKey(1), n_in, 16,
                                                   recurrent=True)),
                          ("deep", LK.init_lif_deep(jax.random.PRNGKey(2), n_in, 16, 2))):
            ekw = dict(config=rcfg, readout_weights="sum", sigma_b=0.2)
            e_ref = LK.lif_empirical(net, s1, s2, **ekw)
            e_shd = LK.lif_empirical(net, s1, s2, mesh="all", tile_size=3, **ekw)
            e_dsk = LK.lif_empirical(net, s1, s2, tiles=os.path.join(out_dir, "lif_emp_" + name),
                                     tile_size=4, **ekw)
            for route, e in (("mesh", e_shd), ("disk", e_dsk)):
                res[f"lif_empirical_{name}_{route}"] = {
                    k: diff(getattr(e, k), getattr(e_ref, k)) for k in LK.KERNELS}
        lap("lif_empirical")

    if "mesh2" in sections:   # a 2-device mesh out of the 4
        two = sharding.device_mesh(jax.devices()[:2])
        ref40 = kernels.mlp(xs, **kw)
        shd2 = kernels.mlp(xs, mesh=two, **kw)
        res["mlp_40x40_mesh2"] = {k: diff(getattr(shd2, k), getattr(ref40, k))
                                  for k in kernels.KERNELS}
        res["mlp_40x40_mesh2_devices"] = len(shd2.sgntk.sharding.device_set)
        lap("mesh2")

    if "quadrature" in sections:   # the generic mapper, 2-D tiles, a quadrature surrogate
        fn = kernels.mlp_kernel_fn(depth=1, activation="erf", which=("sgntk", "sg_gram"))
        with jax.enable_x64(True):
            sur = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), get("fast_sigmoid"))
            a = sharding.map_tiles(fn, x, y, args=(sur, 1.3, 0.2, 2.0), tile=(5, 11))
            b = fn(x, y, sur, 1.3, 0.2, 2.0)
        res["map_tiles_fast_sigmoid"] = {k: diff(a[k], getattr(b, k)) for k in ("sgntk", "sg_gram")}
        lap("quadrature")

    if "shapes" in sections:   # every surrogate shape through mesh= (all four kernels)
        from sgntk.surrogates import SHAPES
        res["shapes"] = {}
        for shape in SHAPES:
            skw = dict(depth=1, activation="sign", surrogate=shape, sigma_b=0.1, tile_size=8)
            ref = kernels.mlp(x[:17], y[:9], **skw)
            shd = kernels.mlp(x[:17], y[:9], mesh="all", **skw)
            res["shapes"][shape] = {k: diff(getattr(shd, k), getattr(ref, k))
                                    for k in kernels.KERNELS}
        lap("shapes")

    print("RESULT " + json.dumps(res))
''')


def _run(tmp_path_factory, sections):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    out = tmp_path_factory.mktemp("sharding")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out), ",".join(sections)], env=env,
                          capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """The default checks: kernels.mlp sharded and on disk (with resume), empirical, analytic
    LIF kernels (finite LIF networks' kernels: ``result_slow``)."""
    return _run(tmp_path_factory, ["mlp", "empirical", "lif"])


@pytest.fixture(scope="module")
def result_slow(tmp_path_factory):
    return _run(tmp_path_factory, ["mesh2", "quadrature", "shapes", "lif_empirical"])


def _assert_equal(d):
    for name, r in d.items():
        assert r["same_nonfinite"], f"{name}: inf/NaN pattern differs"
        assert r["err"] <= TOL, f"{name}: max relative difference {r['err']:.3g} > {TOL}"


def test_forced_devices(result):
    assert result["devices"] == 4


def test_mlp_sharded_equals_unsharded(result):
    for case in ("mlp_37x29", "mlp_40x40"):
        _assert_equal(result[case])
    # the naive NTK of sign is inf on the diagonal and at the duplicates: same places
    assert result["mlp_40x40"]["ntk"]["n_nonfinite"] == 40 + 2 * 3
    assert result["mlp_37x29"]["sgntk"]["shape"] == [37, 29]


def test_mlp_result_is_sharded_over_devices(result):
    s = result["mlp_40x40_sharding"]
    assert s["type"] == "ArrayImpl" and s["n_devices"] == 4
    assert s["shard_shapes"] == [[10, 40]]     # each device holds 10 full rows


@pytest.mark.slow
def test_two_device_mesh(result_slow):
    _assert_equal(result_slow["mlp_40x40_mesh2"])
    assert result_slow["mlp_40x40_mesh2_devices"] == 2


def test_mlp_on_disk_equals_unsharded(result):
    _assert_equal(result["mlp_disk"])
    assert result["mlp_disk_type"] == "memmap"
    assert result["mlp_disk_files"] == ["nngp.npy", "ntk.npy", "sg_gram.npy", "sgntk.npy",
                                        "tiles.json", "tiles_done.npz"]


def test_on_disk_resumes_only_missing_tiles(result):
    assert result["disk_grid"] == [5, 4] and result["disk_all_done"]
    _assert_equal({"recomputed": result["resume_recomputed_tile"],
                   "rest": result["resume_rest"]})
    assert result["resume_kept_tile"], "a tile marked done was recomputed"
    assert "another computation" in result["other_inputs_error"]


@pytest.mark.slow
def test_generic_mapper_quadrature_surrogate(result_slow):
    _assert_equal(result_slow["map_tiles_fast_sigmoid"])


@pytest.mark.slow
def test_every_surrogate_shape_sharded(result_slow):
    from sgntk.surrogates import SHAPES

    assert sorted(result_slow["shapes"]) == sorted(SHAPES)
    for shape, d in result_slow["shapes"].items():
        _assert_equal({f"{shape} {k}": v for k, v in d.items()})


def test_empirical_sharded_and_on_disk(result):
    _assert_equal(result["empirical"])
    _assert_equal(result["empirical_disk"])


def test_lif_kernels_through_map_tiles(result):
    _assert_equal(result["lif"])


def test_lif_kernels_mesh_and_tiles_equal_one_device(result):
    """lif_kernels(mesh=..., tiles=...) == the one-call route (x1 x x2 and x1 x x1), on 4 devices
    rows in tiles of 3 and 4 (9 rows: not a multiple of the device count, padding cut off)."""
    for name in ("lif_mesh", "lif_mesh_sym", "lif_disk"):
        _assert_equal(result[name])


@pytest.mark.slow   # ~20 s of compilation (six network kernels); the analytic LIF routes stay
def test_lif_empirical_mesh_and_tiles_equal_one_device(result_slow):
    """lif_empirical(mesh=..., tiles=...) of a finite recurrent one-layer network (subtract
    reset) and of a deep one == the one-call route, every kernel."""
    for name in ("one", "deep"):
        for route in ("mesh", "disk"):
            _assert_equal(result_slow[f"lif_empirical_{name}_{route}"])


def test_bad_arguments():
    from sgntk import sharding

    fn = lambda a, b: {"k": a @ b.T}   # noqa: E731
    with pytest.raises(ValueError, match="mesh"):
        sharding.map_tiles(fn, np.ones((3, 2)), mesh="gpu0")
    with pytest.raises(ValueError, match="tile"):
        sharding.map_tiles(fn, np.ones((3, 2)), tile=0)
    with pytest.raises(ValueError, match="same trailing shape"):
        sharding.map_tiles(fn, np.ones((3, 2)), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"\(rows, columns\)"):
        sharding.map_tiles(lambda a, b: {"k": a.sum(1)}, np.ones((3, 2)))
    with pytest.raises(ValueError, match="dict or a NamedTuple"):
        sharding.map_tiles(lambda a, b: a @ b.T, np.ones((3, 2)))


def test_nan_is_raised_with_its_index(tmp_path):
    import jax.numpy as jnp

    from sgntk import sharding

    def fn(a, b):
        k = a @ b.T
        return {"k": jnp.where((a[:, :1] > 4.5) & (b[:, :1].T > 5.5), jnp.nan, k)}

    x = np.arange(8.0)[:, None] * np.ones((1, 2))
    with pytest.raises(FloatingPointError, match=r"'k' is NaN at \(5, 6\)"):
        sharding.map_tiles(fn, x, tile=3)
    with pytest.raises(FloatingPointError, match=r"'k' is NaN at \(5, 6\)"):
        sharding.map_tiles(fn, x, tile=3, out=tmp_path / "k")


def test_memory_per_device_formula():
    from sgntk.sharding import memory_per_device

    # N = 100 000 SG-NTK in float64 on 8 devices, 1024 tiles: 12 500 rows of 100 000 each
    b = memory_per_device(100_000, 100_000, devices=8, tile=1024)
    assert b == 8 * (12_500 * 100_000 + 16 * 1024 ** 2)
    assert memory_per_device(10, 10, devices=1, tile=1024, kernels=2) == 8 * (200 + 1600)
    assert memory_per_device(10, 7, devices=4, tile=2) == 8 * (3 * 7 + 16 * 2 * 2)


def test_on_disk_run_interrupted_by_an_error_resumes(tmp_path):
    """A real interruption: the 6th tile's computation raises (host callback); the tiles
    written before are on disk and marked done, the rerun computes only the missing ones."""
    import jax
    import jax.numpy as jnp

    from sgntk import sharding
    from sgntk._util import read_npz

    calls, fail_at = [], [6]

    def record(v):
        calls.append(float(v))
        if len(calls) == fail_at[0]:
            raise RuntimeError("interrupted on purpose")
        return np.zeros((), np.float32)

    def fn(a, b):
        flag = jax.pure_callback(record, jax.ShapeDtypeStruct((), jnp.float32), a[0, 0])
        return {"k": a @ b.T + flag}

    x = np.arange(24, dtype=np.float32).reshape(12, 2) / 7.0
    want = x @ x.T
    out = tmp_path / "k"
    with pytest.raises(Exception, match="interrupted on purpose"):
        sharding.map_tiles(fn, x, tile=3, out=out, progress=False)
    done = read_npz(out / "tiles_done.npz")["done"]
    n_done = int(done.sum())
    assert done.shape == (4, 4) and 1 <= n_done < 6
    part = np.load(out / "k.npy")
    for i, j in zip(*np.nonzero(done)):
        np.testing.assert_array_equal(part[3 * i:3 * i + 3, 3 * j:3 * j + 3],
                                      want[3 * i:3 * i + 3, 3 * j:3 * j + 3])
    calls.clear()
    fail_at[0] = -1
    res = sharding.map_tiles(fn, x, tile=3, out=out, progress=False)
    assert len(calls) == 16 - n_done            # only the missing tiles were computed
    np.testing.assert_array_equal(res["k"], want)
    assert read_npz(out / "tiles_done.npz")["done"].all()
