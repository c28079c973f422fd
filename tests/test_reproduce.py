"""The Eilers et al. (2024) reproduction: smoke preset end to end, resume, atomic writes,
config files == presets, data convention, agreement metrics on known Gaussians."""
import json
import os
import time

import numpy as np
import pytest

from sgntk.reproduce import eilers2024 as E

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_smoke_preset_end_to_end_and_resume(tmp_path):
    out = str(tmp_path / "run")
    t0 = time.perf_counter()
    r1 = E.run("smoke", out=out, progress=False)
    t1 = time.perf_counter() - t0
    assert r1["computed"] > 0 and r1["skipped"] == 0
    for name in ("config.json", "versions.json", "agreement.json", "agreement.txt",
                 "kernel_mse.json", "summary.json", "data.npz", "analytic/fig12_rows.npz"):
        assert os.path.exists(os.path.join(out, name)), name
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")]
    with open(os.path.join(out, "agreement.json")) as f:
        ag = json.load(f)
    rec = ag["records"][-1]
    for key in ("setting", "width", "step", "rel_l2_mean", "rel_l2_mean_noise", "var_ratio",
                "ks", "ks_crit95", "w1_over_std", "n_networks"):
        assert key in rec
    assert ag["slopes"] and "slope_rel_l2_mean" in ag["slopes"][0]
    # a finished unit is skipped on rerun (counter) and the rerun is much faster
    t0 = time.perf_counter()
    r2 = E.run("smoke", out=out, progress=False)
    t2 = time.perf_counter() - t0
    assert r2["computed"] == 0 and r2["skipped"] == r1["computed"]
    assert t2 < 0.5 * t1, (t1, t2)
    assert json.dumps(r2["agreement"]) == json.dumps(r1["agreement"])  # NaN-safe
    # deleting one unit recomputes exactly that unit
    unit = sorted(os.listdir(os.path.join(out, "ensembles")))[0]
    os.remove(os.path.join(out, "ensembles", unit))
    r3 = E.run("smoke", out=out, progress=False)
    assert r3["computed"] == 1


def test_atomic_writes_keep_old_file_on_failure(tmp_path, monkeypatch):
    p = str(tmp_path / "a.json")
    E.save_json(p, {"x": 1})
    with pytest.raises(TypeError):
        E.save_json(p, {"x": object()})  # not serialisable: fails mid-write
    with open(p) as f:
        assert json.load(f) == {"x": 1}
    q = str(tmp_path / "a.npz")
    E.save_npz(q, a=np.arange(3))

    def boom(f, **kw):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        E.save_npz(q, a=np.arange(5))
    monkeypatch.undo()
    with np.load(q) as z:
        np.testing.assert_array_equal(z["a"], np.arange(3))


def test_config_files_equal_presets():
    for name, cfg in E.PRESETS.items():
        with open(os.path.join(ROOT, "experiments", "eilers2024", f"{name}.json")) as f:
            assert json.load(f) == cfg, name
    assert E.PRESETS["full"]["fig3"]["n_networks"] == 500
    assert E.PRESETS["full"]["fig3"]["steps"] == 30000
    assert E.PRESETS["full"]["fig12"]["widths"] == [10, 100, 500, 1000]


def test_circle_data_convention():
    d = E.circle_data()
    assert d["x_train"].shape == (15, 2) and d["x_test"].shape == (100, 2)
    np.testing.assert_allclose(d["a_test"][:2], [-np.pi, -np.pi + 2 * np.pi / 100])
    np.testing.assert_allclose(d["x_test"][50], [0.0, 1.0], atol=1e-15)  # x(0) = (sin, cos)
    x1, x2 = d["x_train"].T
    np.testing.assert_allclose(d["y_train"], 4 * x1 * x2**2 - 0.8 * x1**3 + 1.2 * x2**2
                               - 0.8 * x1**2 * x2)


def test_agreement_metrics_on_exact_gaussian_samples():
    rng = np.random.default_rng(0)
    mu, var = np.linspace(-1, 1, 100) + 2.0, np.linspace(0.5, 2.0, 100)
    y = mu + np.sqrt(var) * rng.normal(size=(4000, 100))
    m = E.agreement_metrics(y, mu, var)
    assert m["ks"] < m["ks_crit95"] and abs(m["var_ratio"] - 1) < 0.05
    assert m["rel_l2_mean"] < 3 * m["rel_l2_mean_noise"] and m["w1_over_std"] < 0.05
    m2 = E.agreement_metrics(y + 0.5, mu, 4 * var)
    assert m2["ks"] > 5 * m2["ks_crit95"] and abs(m2["var_ratio"] - 0.25) < 0.02
