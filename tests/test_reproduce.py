"""The Eilers et al. (2024) reproduction (experiments/eilers2024/study.py): smoke config end to
end, resume, atomic writes, the JSON configs, data convention, agreement metrics on known
Gaussians."""
import glob
import json
import os
import time
import warnings

import numpy as np
import pytest

from sgntk import data
from sgntk.cli import load_study
from sgntk.runner import config_hash

E = load_study("eilers2024")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "experiments", "eilers2024")


@pytest.mark.slow   # the same study runs in CI's Ray step (test_distributed: in process and on Ray)
def test_smoke_preset_end_to_end_and_resume(tmp_path):
    out = str(tmp_path / "run")
    t0 = time.perf_counter()
    r1 = E.run("smoke", out=out, progress=False)
    t1 = time.perf_counter() - t0
    assert r1["computed"] > 0 and r1["skipped"] == 0
    for name in ("config.json", "versions.json", "agreement.json", "agreement.txt",
                 "kernel_mse.json", "summary.json", "data.npz", "units.json"):
        assert os.path.exists(os.path.join(out, name)), name
    assert not [f for _, _, fs in os.walk(out) for f in fs if ".tmp" in f]
    with open(os.path.join(out, "units.json")) as f:
        files = json.load(f)
    assert len(files) == r1["computed"] and all(os.path.exists(os.path.join(out, p))
                                                for p in files.values())
    assert files["analytic/fig12_rows"].startswith("analytic/fig12_rows-")
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
    # deleting one unit recomputes exactly that unit, to the same numbers
    unit = sorted(os.listdir(os.path.join(out, "ensembles")))[0]
    os.remove(os.path.join(out, "ensembles", unit))
    r3 = E.run("smoke", out=out, progress=False)
    assert r3["computed"] == 1
    assert json.dumps(r3["agreement"]) == json.dumps(r1["agreement"])
    # a changed config recomputes only the units whose config changed (a name that does not
    # show the change is caught by the config hash), and a chunk size (speed only) changes none
    cfg = E.load_config("smoke")
    cfg["train"]["chunk_size"] = 5
    cfg["fig12"]["m_limit"] = [2, 5, 20, 100]
    r4 = E.run(cfg, out=out, progress=False)
    assert r4["computed"] == 1 and r4["skipped"] == r1["computed"] - 1  # analytic/fig12_rows
    with open(os.path.join(out, "units.json")) as f:
        new = json.load(f)["analytic/fig12_rows"]
    assert new != files["analytic/fig12_rows"] and os.path.exists(os.path.join(out, new))
    assert os.path.exists(os.path.join(out, files["analytic/fig12_rows"]))  # old one kept
    assert json.dumps(r4["agreement"]) == json.dumps(r1["agreement"])
    assert r4["kernel_mse"] == r1["kernel_mse"]


def test_atomic_writes_keep_old_file_on_failure(tmp_path, monkeypatch):
    """The study writes through sgntk._util (its summaries) and sgntk.runner (its units)."""
    from sgntk._util import write_json, write_npz
    p = str(tmp_path / "a.json")
    write_json(p, {"x": 1})
    with pytest.raises(TypeError):
        write_json(p, {"x": object()})  # not serialisable: fails mid-write
    with open(p) as f:
        assert json.load(f) == {"x": 1}
    q = str(tmp_path / "a.npz")
    write_npz(q, a=np.arange(3))

    def boom(f, **kw):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        write_npz(q, a=np.arange(5))
    monkeypatch.undo()
    with np.load(q) as z:
        np.testing.assert_array_equal(z["a"], np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["a.json", "a.npz"]


def test_config_files():
    """The JSON files are the only configs; every one loads, is complete and yields units."""
    names = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(CONFIG_DIR, "*.json")))
    assert {"smoke", "quick", "full"} <= set(names)
    for name in names:
        cfg = E.load_config(name)
        with open(os.path.join(CONFIG_DIR, f"{name}.json")) as f:
            assert json.load(f) == cfg, name
        assert cfg["name"] == name
        us = E.units(cfg)
        assert len({u.name for u in us.values()}) == len(us)  # no two units share a file
    full = E.load_config("full")
    assert full["fig3"]["n_networks"] == 500 and full["fig3"]["steps"] == 30000
    assert full["fig12"]["widths"] == [10, 100, 500, 1000]
    # the paper's horizons (Fig. 1: 10 000 GD steps, Fig. 2: 1 000 SGL steps) and data sets
    assert (full["fig12"]["steps_gd"], full["fig12"]["steps_sgl"]) == (10000, 1000)
    assert full["data"]["training_set"] == "paper"
    assert E.paper_config("full") == full  # --full already is --paper
    with pytest.raises(ValueError, match="config must be one of"):
        E.load_config("no-such-config")
    bad = E.load_config("smoke")
    del bad["fig3"]["record_steps"]
    with pytest.raises(ValueError, match="fig3.record_steps"):
        E.load_config(bad)


def test_unit_configs_hash_only_what_changes_results():
    smoke = E.load_config("smoke")
    us = E.units(smoke)
    faster = E.load_config("smoke")
    faster["train"]["chunk_size"] = 1
    assert [config_hash(u.config) for u in E.units(faster).values()] == \
        [config_hash(u.config) for u in us.values()]
    other = E.load_config("smoke")
    other["train"]["learning_rate"] = 0.05
    changed = [a.name for a, b in zip(us.values(), E.units(other).values())
               if config_hash(a.config) != config_hash(b.config)]
    assert len(changed) == len(us) - 1  # all but the analytic kernel rows


def test_deprecated_shim_forwards():
    import importlib
    import sys

    import sgntk.reproduce
    sys.modules.pop("sgntk.reproduce.eilers2024", None)  # import afresh: the warning is at import
    if hasattr(sgntk.reproduce, "eilers2024"):
        delattr(sgntk.reproduce, "eilers2024")
    with pytest.warns(DeprecationWarning, match="experiments/eilers2024/study.py"):
        old = importlib.import_module("sgntk.reproduce.eilers2024")
    assert old.run is E.run and old.agreement_metrics is E.agreement_metrics
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert old.load_config("smoke") == E.load_config("smoke")
    with pytest.warns(DeprecationWarning, match="preset= is deprecated"):
        with pytest.raises(ValueError, match="config must be one of"):
            E.run(preset="no-such-config", progress=False)


def test_circle_data_convention():
    d = data.unit_circle()
    assert d["x_train"].shape == (15, 2) and d["x_test"].shape == (100, 2)
    np.testing.assert_allclose(d["a_test"][:2], [-np.pi, -np.pi + 2 * np.pi / 100])
    np.testing.assert_allclose(d["x_test"][50], [0.0, 1.0], atol=1e-15)  # x(0) = (sin, cos)
    x1, x2 = d["x_train"].T
    np.testing.assert_allclose(d["y_train"], 4 * x1 * x2**2 - 0.8 * x1**3 + 1.2 * x2**2
                               - 0.8 * x1**2 * x2)


def test_agreement_metrics_on_exact_gaussian_samples():
    """KS statistic == scipy.stats.kstest per point (the study calls it), critical value from
    scipy.stats.kstwo; a Gaussian sample passes, a shifted/narrowed prediction fails."""
    rng = np.random.default_rng(0)
    mu, var = np.linspace(-1, 1, 100) + 2.0, np.linspace(0.5, 2.0, 100)
    y = mu + np.sqrt(var) * rng.normal(size=(4000, 100))
    m = E.agreement_metrics(y, mu, var)
    assert m["ks"] < m["ks_crit95"] and abs(m["var_ratio"] - 1) < 0.05
    assert m["rel_l2_mean"] < 3 * m["rel_l2_mean_noise"] and m["w1_over_std"] < 0.05
    m2 = E.agreement_metrics(y + 0.5, mu, 4 * var)
    assert m2["ks"] > 5 * m2["ks_crit95"] and abs(m2["var_ratio"] - 0.25) < 0.02


# the paper's training sets as listed in the reference notes (sg-ntk.md Sec. 4, from the
# paper's public code): Figs. 1-2 float32 angles, Fig. 3 indices into the 100 test angles
_PAPER_FIG12 = [-1.1745926141738892, -2.4250686168670654, -2.4657034873962402,
                1.0474662780761719, 1.8972047567367554, -2.9864375591278076,
                -0.06456051766872406, -1.7713344097137451, 1.7098395824432373,
                1.8946220874786377, 0.4341278076171875, 3.052441358566284,
                -0.42121556401252747, 2.8263049125671387, 1.436213493347168]
_PAPER_FIG3 = [54, 69, 18, 41, 23, 50, 65, 82, 63, 3, 0, 4, 58, 79, 95]


def test_paper_training_sets_are_the_listed_values():
    a12 = E.training_angles("paper", "fig12")
    assert a12.tolist() == _PAPER_FIG12  # exact: the float32 values as Python floats
    assert all(float(np.float32(a)) == a for a in a12)
    a_test = 2 * np.pi * np.arange(100) / 100 - np.pi
    assert E.training_angles("paper", "fig3").tolist() == a_test[_PAPER_FIG3].tolist()
    np.testing.assert_array_equal(E.training_angles("even", "fig3"),
                                  data.unit_circle()["a_train"])
    with pytest.raises(ValueError, match="training_set must be one of"):
        E.training_angles("random", "fig3")
    with pytest.raises(ValueError, match="n_train = 15"):
        E.training_angles("paper", "fig3", n_train=10)
    # every unit of the full config trains on exactly those angles; --even-angles changes them
    for cfg, fig12, fig3 in ((E.load_config("full"), _PAPER_FIG12, a_test[_PAPER_FIG3]),
                             (E.paper_config("full", training_set="even"),
                              data.unit_circle()["a_train"], data.unit_circle()["a_train"])):
        us = E.units(cfg)
        for key, u in us.items():
            if key[0] == "fig12":
                assert u.config["train_angles"] == list(fig12), u.name
                assert u.config["steps"] == (10000 if key[1] == "gd" else 1000), u.name
            elif key[0] in ("pred", "ensemble"):
                assert u.config["train_angles"] == list(fig3), u.name
        assert us[("pred", "sign-erf-L2-k1")].config["record_steps"][-1] == 30000
    bad = E.load_config("smoke")
    bad["data"]["training_set"] = "random"
    with pytest.raises(ValueError, match="data.training_set"):
        E.load_config(bad)


def test_paper_config_sets_horizons_and_name():
    q = E.paper_config("quick")
    assert q["name"] == "quick-paper" and q["data"]["training_set"] == "paper"
    assert (q["fig12"]["steps_gd"], q["fig12"]["steps_sgl"], q["fig3"]["steps"]) == \
        (10000, 1000, 30000)
    quick = E.load_config("quick")
    assert q["fig3"]["record_steps"] == sorted(
        {t for t in quick["fig3"]["record_steps"] if t < 30000} | {30000})
    assert q["fig3"]["widths"] == quick["fig3"]["widths"]  # sizes kept
    assert E.paper_config("quick", training_set="even")["name"] == "quick-paper-even"


def test_cli_paper_and_even_angles(monkeypatch):
    from sgntk import cli

    calls = []
    monkeypatch.setattr(E, "run", lambda config, **kw: calls.append((config, kw)))
    cli.main(["reproduce", "eilers2024", "--paper"])
    cli.main(["reproduce", "eilers2024", "--quick", "--paper", "--even-angles"])
    cli.main(["reproduce", "eilers2024"])
    assert calls[0][0] == "full" and calls[0][1]["paper"] and calls[0][1]["training_set"] is None
    assert calls[1][0] == "quick" and calls[1][1]["paper"] and calls[1][1]["training_set"] == "even"
    assert calls[2][0] == "quick" and not calls[2][1]["paper"]


@pytest.mark.slow
def test_blocks_resume_and_available_only(tmp_path):
    """A split ensemble: blocks are units of their own; ``available_only`` summarises the
    finished blocks and trains nothing; the combined ensemble is the blocks in order."""
    cfg = E.load_config("smoke")
    cfg["name"] = "blocks"
    cfg["fig12"]["widths"] = []
    cfg["b2"]["widths"] = []
    cfg["beyond"].update(surrogates=[], depths=[])
    cfg["fig3"].update(widths=[20], n_networks=6, block_networks=4, steps=20,
                       record_steps=[0, 20])
    out = str(tmp_path / "run")
    r0 = E.run(cfg, out=out, progress=False, available_only=True)
    assert r0["missing"] == 2 and r0["agreement"] == []
    r1 = E.run(cfg, out=out, progress=False)
    blocks = sorted(os.listdir(os.path.join(out, "ensembles")))
    assert [b.split("-")[-2][-3:] for b in blocks] == ["_b0", "_b1"]
    fin = [r for r in r1["agreement"] if r["final"]]
    assert [r["n_networks"] for r in fin] == [6]
    inf = [r for r in r1["agreement"] if r["prediction"] == "inf"]
    assert len(inf) == 1 and inf[0]["step"] == 20
    # t = inf: training points among the test points have zero predicted variance: not compared
    assert 50 not in inf[0]["test_points_used"] and 10 in inf[0]["test_points_used"]
    os.remove(os.path.join(out, "ensembles", blocks[1]))
    r2 = E.run(cfg, out=out, progress=False, available_only=True)
    assert r2["missing"] == 1 and r2["computed"] == 0
    assert [r["n_networks"] for r in r2["agreement"] if r["final"]] == [4]
    with np.load(os.path.join(out, "ensembles", blocks[0])) as z:
        b0 = z["outputs"]
    ens = E.ensemble(dict(E.units(cfg)[("ensemble", "sign-erf-L2-k1", 20, 0)].config))
    np.testing.assert_array_equal(ens["outputs"], b0)
    bad = E.load_config(cfg)
    bad["fig3"]["block_networks"] = 0
    with pytest.raises(ValueError, match="block_networks"):
        E.load_config(bad)


def test_paper_values_table_from_kernel_rows():
    rows = E.fig12_rows(dict(n_test=100, depth=2, sigma_w=1.0, sigma_b=0.1, ms=[2, 5, 20],
                             m_limit=[2, 5, 20]))
    recs = {r["name"]: r for r in E.paper_values(rows)}
    assert set(recs) == set(E.PAPER_VALUES)
    for r in recs.values():  # every printed value is ours rounded to the printed digits
        assert r["ours_rounded_equal"], r
    txt = E.format_paper_values(list(recs.values()))
    assert "2.4908" in txt and "-1.5448" in txt
