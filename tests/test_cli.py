"""sgntk.cli: the demo writes JSON results and (with matplotlib) the figure drawn from them;
sgntk and sgntk.cli import without matplotlib; `sgntk reproduce` finds experiments/ or says why
not."""
import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sgntk import cli, kernels, plotting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, **env), timeout=300)


def test_import_without_matplotlib():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import sgntk, sgntk.cli, sgntk.runner, sgntk.plotting\n"
            "assert not sgntk.plotting.available()\n"
            "assert sgntk.cli.load_study('eilers2024').load_config('smoke')['name'] == 'smoke'\n"
            "assert not any(m.startswith('matplotlib') and sys.modules[m] is not None "
            "for m in sys.modules)\n"
            "print('ok')")
    r = _python(code)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr


@pytest.fixture(scope="module")
def demo_results():
    """The demo's numbers, computed once (small Monte Carlo: the tests check plumbing)."""
    return cli.demo_results(width=16, n_networks=4)


@pytest.fixture()
def demo_run(demo_results, tmp_path, monkeypatch):
    """``cli.demo`` end to end, with the computation replaced by the cached results."""
    monkeypatch.setattr(cli, "demo_results", lambda **kw: copy.deepcopy(demo_results))
    out = str(tmp_path / "demo")
    return out, cli.demo(out, width=16, n_networks=4)


def test_demo_results_are_the_kernels(demo_results):
    rows, c = demo_results["rows"], demo_results["curves"]
    assert rows[0]["delta_angle"] == 0.0
    np.testing.assert_allclose(rows[0]["sgntk"], 2.4908, atol=5e-5)  # the paper's check value
    np.testing.assert_allclose(rows[-1]["sgntk"], -1.5448, atol=5e-5)
    # the curves are the kernel rows the figure shows (independent recomputation)
    a = np.asarray(c["angles"])
    x = np.stack([np.sin(a), np.cos(a)], 1)
    row = kernels.mlp(x[100:101], x, depth=2, activation="sign", surrogate="fast_sigmoid",
                      sigma_b=0.1, which=("sgntk",)).sgntk[0]
    np.testing.assert_allclose(c["sgntk"]["fast_sigmoid"], row, rtol=1e-12)
    assert demo_results["monte_carlo"] == dict(width=16, n_networks=4, seed=0, jump_width=0.02)


def test_demo_writes_json_and_figure_from_it(demo_run, tmp_path):
    out, res = demo_run
    with open(os.path.join(out, "demo_kernels.json")) as f:
        saved = json.load(f)
    assert saved["figure"] == res["figure"] == os.path.join(out, "demo_kernels.png")
    assert os.path.getsize(saved["figure"]) > 10_000
    np.testing.assert_array_equal(saved["curves"]["sgntk"]["erf"], res["curves"]["sgntk"]["erf"])
    # paper_figs/demo.py redraws the same figure from the JSON alone
    png = str(tmp_path / "again.png")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "paper_figs", "demo.py"), out,
                        "--out", png], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import matplotlib.image
    np.testing.assert_array_equal(matplotlib.image.imread(png),
                                  matplotlib.image.imread(saved["figure"]))


def test_demo_without_matplotlib_writes_json_only(demo_results, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "demo_results", lambda **kw: copy.deepcopy(demo_results))
    monkeypatch.setattr(plotting, "available", lambda: False)
    monkeypatch.setattr(plotting, "demo_figure", None)  # would fail if called
    assert cli.main(["demo", "--out", str(tmp_path)]) == 0
    assert not os.path.exists(tmp_path / "demo_kernels.png")
    with open(tmp_path / "demo_kernels.json") as f:
        assert json.load(f)["figure"] is None
    assert "matplotlib is not installed" in capsys.readouterr().out


def test_experiments_dir_and_clear_error(tmp_path, monkeypatch):
    assert cli.experiments_dir() == os.path.join(ROOT, "experiments")
    monkeypatch.setenv("SGNTK_EXPERIMENTS", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="SGNTK_EXPERIMENTS"):
        cli.experiments_dir()
    r = _python("import sgntk.cli; sgntk.cli.main(['reproduce', 'eilers2024', '--smoke'])",
                SGNTK_EXPERIMENTS=str(tmp_path / "missing"))
    assert r.returncode == 2 and "SGNTK_EXPERIMENTS" in r.stderr
    monkeypatch.setenv("SGNTK_EXPERIMENTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no study 'nosuch'"):
        cli.load_study("nosuch")


def test_reproduce_command_runs_the_study(monkeypatch):
    study = cli.load_study("eilers2024")
    calls = []
    monkeypatch.setattr(study, "run", lambda config, **kw: calls.append((config, kw)))
    assert cli.main(["reproduce", "eilers2024", "--smoke", "--out", "somewhere"]) == 0
    assert cli.main(["reproduce", "eilers2024"]) == 0
    assert cli.main(["reproduce", "eilers2024", "--config", "medium", "--force"]) == 0
    assert cli.main(["reproduce", "eilers2024", "--paper"]) == 0
    assert cli.main(["reproduce", "eilers2024", "--smoke", "--even-angles"]) == 0
    plain = dict(paper=False, training_set=None)
    assert calls == [("smoke", dict(out="somewhere", force=False, **plain)),
                     ("quick", dict(out=None, force=False, **plain)),
                     ("medium", dict(out=None, force=True, **plain)),
                     ("full", dict(out=None, force=False, paper=True, training_set=None)),
                     ("smoke", dict(out=None, force=False, paper=False, training_set="even"))]
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "eilers2024", "--smoke", "--full"])
