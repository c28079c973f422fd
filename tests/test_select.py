"""sgntk.select: grid expansion, the score's documented properties, validation statistics,
resume, the command line, and the validation study's seed-vmapped trainer."""
import json
import os
import sys

import numpy as np
import pytest
from scipy import stats

from sgntk import diagnostics as D
from sgntk import select


def test_expand_grid_counts_and_tail():
    g = dict(shape=["fast_sigmoid", "q_pseudo_spike", "straight_through"], sharpness=[1.0, 5.0],
             dampening=[1.0], tail=[2.0, 4.0], sigma_w=[1.0, 2.0])
    pts = select.expand_grid(g)
    n = {s: sum(p["shape"] == s for p in pts) for s in g["shape"]}
    # tail multiplies q_pseudo_spike only; sharpness is irrelevant for straight-through
    assert n == {"fast_sigmoid": 4, "q_pseudo_spike": 8, "straight_through": 2}
    assert len({p["name"] for p in pts}) == len(pts)
    with pytest.raises(ValueError, match="unknown surrogate"):
        select.expand_grid(dict(shape=["nope"]))
    assert len(select.expand_grid(select.DEFAULT_GRID)) == 200


def _circle(n=16):
    a = np.linspace(-np.pi, np.pi, n, endpoint=False)
    x = np.stack([np.sin(a), np.cos(a)], 1) * (1 + 0.3 * np.cos(3 * a))[:, None]
    return x, (np.sin(2 * a) > 0).astype(np.int64)


@pytest.mark.slow
def test_score_is_invariant_to_surrogate_scale_under_adam():
    """Depth 1: the hidden part of the SG-NTK is linear in the dampening, so the layer-normalised
    (Adam) kernel, hence the score, does not depend on it; with SGD it does."""
    x, y = _circle()
    net = select.MLPNetwork(depth=1, activation="sign")
    r = {d: select.evaluate_point(net, x, y, surrogate=select.surrogate_of(
        dict(shape="fast_sigmoid", sharpness=2.0, dampening=d)), train_steps=30, folds=4,
        backward=False) for d in (0.1, 10.0)}
    assert r[0.1]["score"] == pytest.approx(r[10.0]["score"], abs=1e-12)
    assert r[0.1]["fit_score"] == pytest.approx(r[10.0]["fit_score"], abs=1e-12)
    assert r[0.1]["predicted_loss"] == pytest.approx(r[10.0]["predicted_loss"], rel=1e-9)
    s = {d: select.evaluate_point(net, x, y, surrogate=select.surrogate_of(
        dict(shape="fast_sigmoid", sharpness=2.0, dampening=d)), optimizer="sgd",
        train_steps=30, backward=False)["predicted_loss"] for d in (0.1, 10.0)}
    assert s[0.1] != pytest.approx(s[10.0], rel=1e-3)


def test_score_is_log10_slowest_mode_of_the_normalised_kernel():
    """The kernel part of the score: log10(lambda_min / mean diagonal) of the layer-normalised
    kernel, on a kernel with known eigenvalues: readout part S = 2 Q diag(lam) Q^T and hidden
    part S again, so the normalised kernel is 2 S / mean diag(S), whose slowest mode relative
    to its mean diagonal is lambda_min(S) / mean diag(S) = 2 lam_min / mean diag(S); a kernel
    with a negative eigenvalue scores -300."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    lam = np.geomspace(1e-3, 1.0, 10)
    s = 2.0 * (q * lam) @ q.T
    labels = np.arange(10) % 2
    y = D.one_hot_targets(labels)
    r = select._kernel_prediction(s, 2 * s, y, True, optimizer="adam", train_steps=5,
                                  lr_fraction=0.5, folds=2)
    assert r["log10_slowest_mode"] == pytest.approx(np.log10(2e-3 / np.mean(np.diag(s))),
                                                    rel=1e-9)
    neg = (q * np.r_[-0.1, lam[1:]]) @ q.T
    r = select._kernel_prediction(neg, neg, y, True, optimizer="sgd", train_steps=5,
                                  lr_fraction=0.5, folds=2)
    assert r["log10_slowest_mode"] == -300.0


def test_cv_score_vs_explicit_folds():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 12))
    k = a @ a.T / 12 + np.eye(12) + 0.1 * rng.normal(size=(12, 12))
    labels = np.arange(12) % 3
    y = D.one_hot_targets(labels)
    got_r2, got_acc = select._cv_score(k, y, True, folds=3, train_steps=20, lr_fraction=0.5)
    accs, r2 = [], []
    for f in range(3):
        te = np.arange(f, 12, 3)
        tr = np.setdiff1d(np.arange(12), te)
        ktt = k[np.ix_(tr, tr)]
        lam = np.linalg.eigvals(ktt)
        lr = 0.5 * np.min(2 * lam.real / np.abs(lam) ** 2)
        fte, r = np.zeros((len(te), 3)), -y[tr]
        for _ in range(20):
            fte, r = fte - lr * k[np.ix_(te, tr)] @ r, r - lr * ktt @ r
        accs.append(np.mean(fte.argmax(1) == labels[te]))
        r2.append(1 - np.mean((fte - y[te]) ** 2) / np.mean(y[te] ** 2))
    assert got_acc == pytest.approx(np.mean(accs), abs=1e-12)
    assert got_r2 == pytest.approx(np.mean(r2), rel=1e-10)


def test_spearman_and_validation_table():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=30), rng.normal(size=30)
    assert select.spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
    rows = [dict(name=f"c{i}", half="AB"[i % 2], score=float(i), hc_score=float(-i),
                 predicted_loss=float(-i), test_accuracy=0.1 + 0.01 * i, train_ce=2.0 - 0.01 * i)
            for i in range(10)]
    t = select.validation_table(rows)
    assert t["all"]["score"]["vs_accuracy"]["rho"] == pytest.approx(1.0)
    assert t["all"]["score"]["best_in_top3"] and t["all"]["score"]["best_measured_rank"] == 1
    assert t["all"]["hc_score"]["vs_accuracy"]["rho"] == pytest.approx(-1.0)
    assert not t["all"]["hc_score"]["best_in_top3"]
    assert t["all"]["predicted_vs_measured_loss"]["rho"] == pytest.approx(1.0)
    lo, hi = t["A"]["score"]["vs_accuracy"]["ci95"]
    assert lo <= 1.0 <= hi + 1e-12


@pytest.mark.slow
def test_run_grid_resumes(tmp_path, monkeypatch):
    x, y = _circle(12)
    grid = dict(shape=["fast_sigmoid", "gaussian"], sharpness=[1.0, 4.0], dampening=[1.0],
                sigma_w=[1.0])
    net = select.MLPNetwork(depth=1)
    rows = select.run_grid(net, grid, x, y, str(tmp_path / "g"), train_steps=10,
                           progress=False)
    assert len(rows) == 4 and all(np.isfinite(r["score"]) for r in rows)
    monkeypatch.setattr(select, "evaluate_point", lambda *a, **k: 1 / 0)  # must not be called
    again = select.run_grid(net, grid, x, y, str(tmp_path / "g"), train_steps=10,
                            progress=False)
    assert [r["score"] for r in again] == [r["score"] for r in rows]
    monkeypatch.undo()
    text = select.format_table(rows) + select.recommend(rows)
    assert "Recommendation:" in text and "Herranz-Celotti" in text


@pytest.mark.slow   # the same command runs in CI's Ray step (test_distributed, in process and on Ray)
def test_select_cli(tmp_path):
    grid = dict(shape=["fast_sigmoid", "gaussian"], sharpness=[1.0, 4.0], dampening=[1.0],
                sigma_w=[1.0])
    gpath = tmp_path / "grid.json"
    gpath.write_text(json.dumps(grid))
    from sgntk import cli
    assert cli.main(["select", "--data", "circle", "--n-samples", "12", "--grid", str(gpath),
                     "--network", '{"depth": 1}', "--train-steps", "10", "--no-progress",
                     "--out", str(tmp_path / "cli")]) == 0
    out = json.loads((tmp_path / "cli" / "select.json").read_text())
    assert len(out["rows"]) == 4 and out["recommendation"].startswith("Recommendation:")


@pytest.mark.slow
def test_validation_trainer_equals_lif_train():
    """experiments/selection/validation.py trains seeds in one vmap; per seed it must be the
    computation of sgntk.lif_train.train (same init, batches, loss, Adam)."""
    import jax
    from sgntk import lif_train
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments", "selection"))
    import validation as V
    spec = V.load_spec(smoke=True)
    spec["train"].update(epochs=1, nb_samples=10)
    splits = V.task_data("randman", spec)
    point = dict(shape="fast_sigmoid", sharpness=5.0, dampening=1.0, sigma_w=10.0,
                 threshold=1.0, reset="zero", detach_reset=True, recurrent=False)
    runs = V.train_seeds(point, spec, splits, [3])
    tc = V.train_config(point, spec, 3)
    # identical initialisation
    n_out = int(max(splits.train.labels.max(), splits.test.labels.max())) + 1
    p0, _, _ = V._init_state(tc, splits.train.spikes.shape[2], n_out)
    k_init, _ = jax.random.split(jax.random.key(3))
    ref = lif_train._lif.init_snn(k_init, splits.train.spikes.shape[2], tc.n_hidden, n_out,
                                  init="gaussian", sigma_w=10.0, sigma_out=tc.sigma_out)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(p0),
                                                    jax.tree_util.tree_leaves(ref)))
    _, hist = lif_train.train(tc, splits, progress=False)
    # one epoch = one minibatch here: the same loss up to float32 summation order
    assert runs[0]["history"]["loss"][0] == pytest.approx(hist["loss"][0], rel=1e-5)


@pytest.mark.parametrize("shape", [  # the five heaviest (measured) run with -m slow
    "rectangular", "sigmoid", "gaussian", "erf", "straight_through",
    *[pytest.param(s, marks=pytest.mark.slow) for s in
      ("triangular", "exponential", "fast_sigmoid", "cauchy", "q_pseudo_spike")]])
def test_evaluate_point_every_shape(shape):
    x, y = _circle(8)
    r = select.evaluate_point(select.MLPNetwork(depth=1, activation="sign"), x, y,
                              point=dict(shape=shape, sharpness=2.0, dampening=0.7, tail=3.0,
                                         sigma_w=1.2), train_steps=5, folds=2)
    # fit score: held-out R^2 (<= 1; -1e6 marks a diverging flow); cv_accuracy in [0, 1]
    assert -1e6 <= r["fit_score"] <= 1.0 and np.isfinite(r["predicted_loss"])
    # score: log10 of the slowest mode relative to the mean diagonal (<= 0 when the smallest
    # real part is below the mean diagonal, always for n > 1) minus |log10 backward gain|
    d = r["diagnostics"]
    assert r["score"] == pytest.approx(r["log10_slowest_mode"]
                                       - abs(d["backward_log10_gain"]), abs=1e-12)
    assert -300.0 <= r["log10_slowest_mode"] <= 0.0
    assert 0.0 <= r["diagnostics"]["cv_accuracy"] <= 1.0
    assert np.isfinite(r["hc_gain"]) and r["point"]["shape"] == shape
    with pytest.raises(ValueError, match="optimizer"):
        select.evaluate_point(select.MLPNetwork(), x, y, surrogate=shape, optimizer="rmsprop")


def test_validation_chooses_the_predictor_on_half_a_only():
    """choose_predictor picks the candidate best on half A (here the backward gain's distance
    from 1, which orders half A exactly); half B does not influence the choice, and a given
    choice (the first task's) is kept."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments", "selection"))
    import validation as V
    rows = []
    for i in range(12):
        half = "AB"[i % 2]
        acc = 0.1 + 0.05 * i
        gain = 2.0 - acc if half == "A" else acc   # -|gain|: perfect on A, reversed on B
        rows.append(dict(half=half, test_accuracy=acc, score=0.0 if half == "A" else acc,
                         predicted_loss=-acc if half == "B" else 1.0, hc_score=float(i % 3),
                         diagnostics={"backward_log10_gain": gain}))
    res = V.choose_predictor(rows)
    assert res["chosen"] == "unit_backward_gain"
    assert res["half_A"]["unit_backward_gain"] == pytest.approx(1.0)
    assert res["half_B"]["rho"] == pytest.approx(-1.0)
    assert V.choose_predictor(rows, chosen="score")["half_B"]["rho"] == pytest.approx(1.0)


def _validation_module(name="validation"):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments", "selection"))
    import importlib
    return importlib.import_module(name)


def test_noise_ceiling_known_cases():
    """Seeds that agree exactly have reliability 1 (ceiling 1); seeds in exactly reversed
    order have a negative seed-pair correlation and no defined ceiling; three seeds whose pairs
    have Spearman 0.5, 0.5 and -0.5 (mean r = 1/6) give the Spearman-Brown reliability
    3 r / (1 + 2 r) = 0.375."""
    V = _validation_module()
    acc = np.linspace(0.1, 0.9, 9)
    same = [dict(test_accuracy_seeds=[a, a]) for a in acc]
    nc = V.noise_ceiling(same)
    assert nc["seed_pair_spearman"] == pytest.approx(1.0) and nc["ceiling"] == pytest.approx(1.0)
    rev = [dict(test_accuracy_seeds=[a, 1 - a]) for a in acc]
    nc = V.noise_ceiling(rev)
    assert nc["seed_pair_spearman"] == pytest.approx(-1.0) and not np.isfinite(nc["ceiling"])
    # columns (1,2,3), (1,3,2), (2,1,3): pairwise Spearman 1 - 6 sum d^2 / (n (n^2 - 1)) =
    # 0.5, 0.5, -0.5
    seeds = np.array([[1, 1, 2], [2, 3, 1], [3, 2, 3]], float)
    rows = [dict(test_accuracy_seeds=list(s)) for s in seeds]
    nc = V.noise_ceiling(rows)
    assert nc["seed_pair_spearman"] == pytest.approx(1 / 6)
    assert nc["reliability_of_mean"] == pytest.approx(0.375)
    assert nc["ceiling"] == pytest.approx(np.sqrt(0.375))
    assert V.noise_ceiling(rows[:2]) == {}


def test_preregistered_evaluation_and_conditioning():
    """``conditioning`` is log10 of the normalised Gram's smallest eigenvalue minus |log10 gain|
    (a non-positive eigenvalue is worst); a predictor that orders the configurations as the
    accuracy does has Spearman 1 and its best pick is measured #1."""
    V = _validation_module()
    rows = []
    for i in range(8):
        acc = 0.2 + 0.1 * i
        rows.append(dict(name=f"c{i}", test_accuracy=acc, train_ce=2.0 - acc,
                         hc_score=-float(i % 2),
                         diagnostics={"backward_log10_gain": 0.0 if i > 1 else -3.0 + i},
                         by_kernel={"sg_gram": {"diagnostics": {"min_real_part": 10.0 ** (i - 9)
                                                                if i > 0 else -1.0}}}))
    assert V._conditioning(rows[3]) == pytest.approx(-6.0)
    assert V._conditioning(rows[1]) == pytest.approx(-8.0 - 2.0)
    assert V._conditioning(rows[0]) == pytest.approx(-303.0)
    res = V.preregistered_evaluation(rows, ["conditioning"])
    c = res["conditioning"]
    assert c["vs_accuracy"]["rho"] == pytest.approx(1.0)
    assert c["vs_training_loss"]["rho"] == pytest.approx(1.0)
    assert c["best"] == "c7" and c["best_measured_rank"] == 1 and c["best_in_top3"]
    assert set(res) == {"conditioning", "hc_score"}


def test_make_blind_draws_new_distinct_configurations(tmp_path):
    """make_blind: deterministic for a seed, no configuration repeats one of the excluded
    files or another draw, and the preregistered names are written into the config."""
    MB = _validation_module("make_blind")
    out1, out2 = tmp_path / "a.json", tmp_path / "b.json"
    MB.main(["--seed", "7", "--n", "30", "--out", str(out1)])
    MB.main(["--seed", "7", "--n", "30", "--out", str(out2)])
    a, b = (json.loads(p.read_text()) for p in (out1, out2))
    assert a["configs"] == b["configs"] and a["preregistered"] == ["conditioning"]
    keys = [MB._key(c) for c in a["configs"]]
    assert len(set(keys)) == 30
    here = os.path.join(os.path.dirname(__file__), "..", "experiments", "selection")
    old = set()
    for f in ("validation.json", "blind.json"):
        with open(os.path.join(here, f)) as fh:
            old |= {MB._key(c) for c in json.load(fh)["configs"]}
    assert not old & set(keys)
    with pytest.raises(SystemExit):
        MB.main(["--seed", "7", "--n", "2", "--out", str(out1)])


def test_selection_heatmaps_with_an_unusable_point(tmp_path):
    """One PNG per pair of varying fields; a point scored -300 (unusable kernel) does not stop
    the figure (its colour is clipped 5 decades below the best; values printed as they are)."""
    from sgntk import plotting
    rows = [dict(point=dict(shape=s, sharpness=b, sigma_w=1.0), score=sc)
            for (s, b), sc in zip([("fast_sigmoid", 1.0), ("fast_sigmoid", 5.0),
                                   ("gaussian", 1.0), ("gaussian", 5.0)],
                                  [-0.5, -1.2, -300.0, -0.8])]
    paths = plotting.selection_heatmaps(rows, tmp_path)
    assert [os.path.basename(p) for p in paths] == ["select_shape_sharpness.png"]
    assert os.path.getsize(paths[0]) > 1000


def test_ranking_record_best_pick_and_ties():
    """The predicted best is the highest score (a NaN score never is), its measured rank counts
    only strictly better configurations (ties in its favour)."""
    acc = [0.5, 0.9, 0.9, 0.7]
    rec = select.ranking_record([np.nan, 1.0, 3.0, 2.0], acc, ["a", "b", "c", "d"])
    assert rec["best"] == "c" and rec["best_measured_rank"] == 1 and rec["best_in_top3"]
    rec = select.ranking_record([0.0, 1.0, -1.0, 5.0], acc, ["a", "b", "c", "d"])
    assert rec["best"] == "d" and rec["best_measured_rank"] == 3 and rec["best_in_top3"]
    rec = select.ranking_record([9.0, 1.0, -1.0, 5.0], acc, ["a", "b", "c", "d"])
    assert rec["best"] == "a" and rec["best_measured_rank"] == 4 and not rec["best_in_top3"]
