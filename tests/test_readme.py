"""README.md's generated blocks equal what paper_figs/readme_tables.py makes of the committed
results (issue 14, item 8): a quoted number changes only together with its result file."""
import importlib.util
import json
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tables():
    spec = importlib.util.spec_from_file_location(
        "readme_tables", os.path.join(ROOT, "paper_figs", "readme_tables.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rt = _tables()


def _readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


@pytest.mark.parametrize("name", sorted(rt.BLOCKS))
def test_generated_block_is_current(name):
    have = rt.blocks_in(_readme())[name]
    want = rt.BLOCKS[name](ROOT)
    assert have == want, (f"README.md block '{name}' is stale: run "
                          f"`python paper_figs/readme_tables.py`\n--- README\n{have}\n"
                          f"--- generated\n{want}")


def test_check_mode_detects_a_changed_result(tmp_path):
    """End to end: copy the inputs, change one committed number, --check must fail and the
    rewrite must put the new number into the README."""
    # Every folder a generated block may read (results of experiments, figures' tables and
    # benchmark outputs), copied whole so that a new block needs no change here.
    shutil.copy(os.path.join(ROOT, "README.md"), tmp_path / "README.md")
    for rel in ["experiments", "paper_figs", "benchmarks/results"]:
        shutil.copytree(os.path.join(ROOT, rel), tmp_path / rel,
                        ignore=shutil.ignore_patterns("*.png", "__pycache__"))
    assert rt.main(["--check", "--root", str(tmp_path)]) == 0

    path = tmp_path / "experiments" / "results" / "randman" / "seed1" / "summary.json"
    summary = json.loads(path.read_text())
    summary["test_accuracy"] = 0.123
    path.write_text(json.dumps(summary))
    assert rt.main(["--check", "--root", str(tmp_path)]) == 1
    assert rt.main(["--root", str(tmp_path)]) == 0
    assert "0.123" in rt.blocks_in((tmp_path / "README.md").read_text())["randman-accuracy"]
    assert rt.main(["--check", "--root", str(tmp_path)]) == 0


def test_missing_marker_raises():
    with pytest.raises(ValueError, match="generated: benchmarks"):
        rt.blocks_in(_readme().replace("<!-- /generated: benchmarks -->", ""))


def test_lif_ratios_from_the_json():
    """The reset ratios quoted are (SG-NTK - NNGP) detached / differentiable, entry by entry,
    recomputed here from the JSON without the module's helpers."""
    with open(os.path.join(ROOT, "experiments", "results", "lif_kernels.json")) as f:
        rows = {r["variant"]: r for r in json.load(f)["rows"]}
    ratios = []
    for i in range(2):
        for j in range(2):
            part = {v: rows[f"zero {v} (MC)"]["sgntk"]["mean"][i][j]
                    - rows[f"zero {v} (MC)"]["nngp"]["mean"][i][j]
                    for v in ("detached", "differentiable")}
            ratios.append(part["detached"] / part["differentiable"])
    text = rt.lif_reset_recurrence(ROOT)
    assert f"{min(ratios):.1f}–{max(ratios):.1f}x for reset to zero" in text.replace("\n", " ")
