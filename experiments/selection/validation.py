"""Validate ``sgntk.select`` against real LIF training (issue 8).

Usage::

    python experiments/selection/validation.py train   [--task randman|digits|all] [--config C]
    python experiments/selection/validation.py predict [--task ...]
    python experiments/selection/validation.py analyse [--task ...]
    python experiments/selection/validation.py all                 # the three in order
    python experiments/selection/validation.py all --smoke         # tiny, CI-sized
    python experiments/selection/validation.py train --ray --workers 2   # units as Ray tasks
    python experiments/selection/validation.py all --task randman --config experiments/selection/blind.json \
        --out experiments/results/selection-blind \
        --reference experiments/results/selection/randman/validation.json   # blind check

Config: ``experiments/selection/validation.json`` (the only copy: seeds, training settings,
tasks, the list of configurations). Every (task, configuration, seed) training run and every
(task, configuration) prediction is one :class:`sgntk.runner.Unit`, written atomically to
``<out>/<task>/train/...json`` / ``<out>/<task>/predict/...json`` as it finishes, so an
interrupted run resumes where it stopped (run it under ``nice -n 10`` in the background).
``analyse`` reads the finished units only and writes ``<out>/<task>/validation.json``: Spearman
rank correlations (with bootstrap 95 % intervals over configurations) between the predicted score
and the measured test accuracy, and between the predicted and the measured training loss at
``fixed_epoch``; whether the predicted best configuration is in the measured top 3; the same for
the Herranz-Celotti & Rouat baseline; and the Zenke & Vogels / Herranz-Celotti questions (shape
at matched scale, scale sensitivity with differentiable reset or recurrence, robustness of
fast-sigmoid). Figures: ``python paper_figs/selection.py <out>``.

Default output: ``experiments/results/selection``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "validation.json")
DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "results", "selection")

SMOKE = dict(seeds=[0], train=dict(nb_samples=20, batch_size=50, epochs=2),
             predict=dict(n_sample=8, n_networks=2, width=32), n_configs=4, nb_steps=30)


# ----------------------------------------------------------------------------- config
def load_spec(path=DEFAULT_CONFIG, *, smoke: bool = False) -> dict:
    with open(path) as f:
        spec = json.load(f)
    if smoke:
        spec["seeds"] = SMOKE["seeds"]
        spec["train"].update(SMOKE["train"])
        spec["predict"].update(SMOKE["predict"])
        spec["configs"] = spec["configs"][:: max(1, len(spec["configs"]) // SMOKE["n_configs"])][
            : SMOKE["n_configs"]]
        for t in spec["tasks"].values():
            t["nb_steps"] = SMOKE["nb_steps"]
        spec["smoke"] = True
    return spec


def task_data(task: str, spec: dict):
    """``sgntk.data.Split`` of a task (seeded by ``train.data_seed``)."""
    from sgntk import data

    t = spec["tasks"][task]
    seed = spec["train"]["data_seed"]
    if task == "randman":
        ds = data.randman(nb_classes=t["nb_classes"], nb_units=t["nb_units"],
                          nb_steps=t["nb_steps"], nb_samples=spec["train"]["nb_samples"],
                          seed=seed)
    elif task == "digits":
        ds = data.latency_digits(nb_steps=t["nb_steps"], step_frac=t["step_frac"])
        n = 200 if spec.get("smoke") else t.get("n_samples", len(ds.labels))
        keep = np.random.default_rng(seed).permutation(len(ds.labels))[:n]
        ds = data.SpikeData(ds.spikes[keep], ds.labels[keep])
    else:
        raise ValueError(f"unknown task {task!r}; valid: randman, digits")
    return data.split(ds, (0.8, 0.1, 0.1), seed=seed)


def train_config(point: dict, spec: dict, seed: int):
    """:class:`sgntk.lif_train.TrainConfig` of one grid point (sgntk surrogate parameters).

    TrainConfig takes SuperSpike's beta for fast_sigmoid (sharpness = beta / 2) and the
    sharpness itself for other shapes; ``tail`` (q_pseudo_spike's q) is passed when the point
    has one.
    """
    from sgntk import lif_train

    beta = 2.0 * point["sharpness"] if point["shape"] == "fast_sigmoid" else point["sharpness"]
    tr = spec["train"]
    return lif_train.TrainConfig(
        surrogate=point["shape"], beta=beta, dampening=point["dampening"],
        sigma_w=point["sigma_w"], threshold=point["threshold"], reset=point["reset"],
        detach_reset=point["detach_reset"], recurrent=point["recurrent"], init=tr["init"],
        readout=tr["readout"], lr=tr["lr"], batch_size=tr["batch_size"], epochs=tr["epochs"],
        seed=seed, **({"tail": point["tail"]} if point.get("tail") is not None
                      and point["shape"] == "q_pseudo_spike" else {}))


# ----------------------------------------------------------------------------- units
_DATA_CACHE: dict = {}


def _cached_data(task, spec):
    key = (task, json.dumps(spec["tasks"][task], sort_keys=True), spec["train"]["nb_samples"],
           spec["train"]["data_seed"], bool(spec.get("smoke")))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = task_data(task, spec)
    return _DATA_CACHE[key]


def _init_state(tc, n_in: int, n_out: int):
    """Parameters and Adam state exactly as :func:`sgntk.lif_train.train` makes them."""
    import jax
    import optax

    from sgntk import lif

    k_init, k_train = jax.random.split(jax.random.key(tc.seed))
    params = lif.init_snn(k_init, n_in, tc.n_hidden, n_out, init=tc.init,
                          recurrent=tc.recurrent, sigma_w=tc.sigma_w, sigma_out=tc.sigma_out)
    return params, optax.adam(tc.lr).init(params), k_train


_EPOCH_CACHE: dict = {}


def _epoch_fn(n_train: int, bs: int, lr: float):
    """One epoch of :func:`sgntk.lif_train.train` (same shuffling, minibatches, loss and Adam
    update), vmapped over seeds and jitted with the LIF config as an argument, so one
    compilation serves every configuration with the same static fields."""
    import jax
    import optax

    from sgntk import lif_train

    key_ = (n_train, bs, lr)
    if key_ in _EPOCH_CACHE:
        return _EPOCH_CACHE[key_]
    opt = optax.adam(lr)
    n_batches = n_train // bs

    def one(params, opt_state, key, xs, ys, lif_config, reg):
        key, sub = jax.random.split(key)
        perm = jax.random.permutation(sub, n_train)[: n_batches * bs].reshape(n_batches, bs)

        def update(carry, idx):
            p, o = carry
            (loss, aux), g = jax.value_and_grad(lif_train.loss_fn, has_aux=True)(
                p, xs[idx], ys[idx], lif_config=lif_config, reg=reg)
            upd, o = opt.update(g, o, p)
            return (optax.apply_updates(p, upd), o), (loss, aux["ce"], aux["acc"])

        (params, opt_state), (loss, ce, acc) = jax.lax.scan(update, (params, opt_state), perm)
        return params, opt_state, key, dict(loss=loss.mean(), ce=ce.mean(), acc=acc.mean())

    fn = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None, None, None)))
    _EPOCH_CACHE[key_] = fn
    return fn


def train_seeds(point: dict, spec: dict, splits, seeds) -> list:
    """Train one configuration for several seeds at once (vmap over seeds).

    Same computation as :func:`sgntk.lif_train.train` per seed (checked by
    ``tests/test_select.py::test_validation_trainer_equals_lif_train``), without its per-run
    compilation: the validation grid would otherwise spend most of its time compiling.
    """
    import jax
    import jax.numpy as jnp

    from sgntk import lif_train

    tcs = [train_config(point, spec, s) for s in seeds]
    lc = lif_train.make_lif_config(tcs[0])
    tr = splits.train
    n_in = tr.spikes.shape[2]
    n_out = int(max(tr.labels.max(), splits.test.labels.max())) + 1
    states = [_init_state(tc, n_in, n_out) for tc in tcs]
    params, opt_state, keys = jax.tree_util.tree_map(lambda *v: jnp.stack(v), *states)
    n_train = len(tr.labels)
    bs = min(tcs[0].batch_size, n_train)
    epoch = _epoch_fn(n_train, bs, tcs[0].lr)
    reg = lif_train._reg(tcs[0])
    xs, ys = jnp.asarray(tr.spikes), jnp.asarray(tr.labels)
    hist = [dict(loss=[], ce=[], train_acc=[], val_acc=[]) for _ in seeds]
    for _ in range(tcs[0].epochs):
        params, opt_state, keys, m = epoch(params, opt_state, keys, xs, ys, lc, reg)
        for i in range(len(seeds)):
            p_i = jax.tree_util.tree_map(lambda v: v[i], params)
            val = lif_train.evaluate(p_i, splits.val.spikes, splits.val.labels, lif_config=lc)
            hist[i]["loss"].append(float(m["loss"][i]))
            hist[i]["ce"].append(float(m["ce"][i]))
            hist[i]["train_acc"].append(float(m["acc"][i]))
            hist[i]["val_acc"].append(val["accuracy"])
    out = []
    for i in range(len(seeds)):
        p_i = jax.tree_util.tree_map(lambda v: v[i], params)
        test = lif_train.evaluate(p_i, splits.test.spikes, splits.test.labels, lif_config=lc)
        out.append(dict(history=hist[i], test_accuracy=test["accuracy"], test_ce=test["ce"],
                        test=test, finite=bool(np.all(np.isfinite(hist[i]["loss"]))),
                        train_config=dataclasses.asdict(tcs[i])))
    return out


def train_unit(cfg: dict) -> dict:
    """All seeds of one configuration: ``cfg = {task, point, seeds, spec}``."""
    t0 = time.perf_counter()
    spec = cfg["spec"]
    splits = _cached_data(cfg["task"], spec)
    runs = train_seeds(cfg["point"], spec, splits, cfg["seeds"])
    return dict(runs=runs, seeds=cfg["seeds"], wall_time_s=time.perf_counter() - t0)


def predict_unit(cfg: dict) -> dict:
    """Diagnostics and score of one configuration on a sample of the task's training data."""
    from sgntk import select

    spec = cfg["spec"]
    splits = _cached_data(cfg["task"], spec)
    p = spec["predict"]
    rng = np.random.default_rng(0)
    idx = rng.choice(len(splits.train.labels), size=p["n_sample"], replace=False)
    x = splits.train.spikes[idx]
    y = splits.train.labels[idx]
    net = select.LIFNetwork(n_networks=p["n_networks"], width=p["width"])
    return select.evaluate_point(net, x, y, point=cfg["point"], train_steps=p["train_steps"],
                                 folds=p.get("folds", 4), seed=0)


def units(spec: dict, task: str, kind: str):
    from sgntk.runner import Unit

    out = []
    # training units hash only what training depends on (changing the prediction settings
    # must not retrain); prediction units also hash the prediction settings and version.
    keys = ("train", "tasks") if kind == "train" else ("train", "tasks", "predict", "version")
    slim = {k: spec[k] for k in keys}
    slim["smoke"] = bool(spec.get("smoke"))
    for point in spec["configs"]:
        if kind == "train":
            out.append(Unit(f"{task}/train/{point['name']}", train_unit,
                            dict(task=task, point=point, seeds=spec["seeds"], spec=slim),
                            fmt="json"))
        else:
            out.append(Unit(f"{task}/predict/{point['name']}", predict_unit,
                            dict(task=task, point=point, spec=slim), fmt="json"))
    return out


# ----------------------------------------------------------------------------- analysis
def _finished(spec, task, kind, out):
    """Values of the units of ``kind`` already on disk (analysis never computes)."""
    from sgntk.runner import load_unit, unit_path

    got = {}
    for u in units(spec, task, kind):
        path = unit_path(u, out)
        if os.path.exists(path):
            got[u.name] = load_unit(path)
    return got


def analyse(spec: dict, task: str, out: str, *, kernel: str | None = None,
            reference: dict | None = None) -> dict:
    """Correlations of predictions with measured training (see the module docstring).

    Only configurations with both a finished training unit and a finished prediction enter.
    ``kernel``: which kernel's score is "the score" (``sgntk`` or ``sg_gram``); ``None``
    chooses it on half A (higher Spearman with test accuracy there), so that half B is a
    held-out evaluation of the whole procedure. ``reference``: the analysis of the first task
    (randman); its kernel choice and fitted weights are used unchanged (nothing refitted).
    """
    from sgntk import select

    tr = _finished(spec, task, "train", out)
    pr = _finished(spec, task, "predict", out)
    fe = spec["fixed_epoch"] - 1
    rows = []
    for i, point in enumerate(spec["configs"]):
        tname, pname = f"{task}/train/{point['name']}", f"{task}/predict/{point['name']}"
        if tname not in tr or pname not in pr:
            continue
        runs, pred = tr[tname]["runs"], pr[pname]
        acc = [r["test_accuracy"] for r in runs]
        ce = [r["history"]["ce"][min(fe, len(r["history"]["ce"]) - 1)] for r in runs]
        rows.append(dict(name=point["name"], point=point, half="A" if i % 2 == 0 else "B",
                         test_accuracy=float(np.mean(acc)), test_accuracy_seeds=acc,
                         test_accuracy_sem=float(np.std(acc, ddof=1) / np.sqrt(len(acc)))
                         if len(acc) > 1 else float("nan"),
                         train_ce=float(np.mean(ce)), train_ce_seeds=ce,
                         final_train_ce=float(np.mean([r["history"]["ce"][-1] for r in runs])),
                         by_kernel=pred["by_kernel"], hc_score=pred["hc_score"],
                         hc_gain=pred["hc_gain"], diagnostics=pred["diagnostics"]))
    choice = {}
    for name in ("sgntk", "sg_gram"):
        a = [r for r in rows if r["half"] == "A"]
        choice[name] = select.spearman([r["by_kernel"][name]["score"] for r in a],
                                       [r["test_accuracy"] for r in a])
    if kernel is None and reference is not None:
        kernel = reference["kernel"]
    if kernel is None:
        kernel = max(choice, key=lambda k: -np.inf if not np.isfinite(choice[k]) else choice[k])
    for r in rows:
        r["score"] = r["by_kernel"][kernel]["score"]
        r["predicted_loss"] = r["by_kernel"][kernel]["predicted_loss"]
    per_diag = {}
    acc = [r["test_accuracy"] for r in rows]
    for key in ("alignment", "effective_rank", "asymmetry", "min_real_part",
                "condition_number", "backward_log10_gain"):
        per_diag[key] = select.spearman([r["diagnostics"].get(key, np.nan) for r in rows], acc)
    for name in ("sgntk", "sg_gram"):
        per_diag[f"score_{name}"] = select.spearman(
            [r["by_kernel"][name]["score"] for r in rows], acc)
        per_diag[f"minus_predicted_loss_{name}"] = select.spearman(
            [-r["by_kernel"][name]["predicted_loss"] for r in rows], acc)
    fitted = fitted_score(rows, fit=None if reference is None else reference.get("fitted") or None)
    choice_of_predictor = choose_predictor(
        rows, chosen=None if reference is None else
        reference.get("predictor_choice", {}).get("chosen"))
    within = {}
    for cond in ("ff_detached", "ff_diff", "rec_detached", "rec_diff"):
        rs = [r for r in rows if ("rec" if r["point"]["recurrent"] else "ff")
              + ("_detached" if r["point"]["detach_reset"] else "_diff") == cond]
        if len(rs) >= 4:
            a = [r["test_accuracy"] for r in rs]
            within[cond] = dict(n=len(rs), score=select.spearman([r["score"] for r in rs], a),
                                hc_score=select.spearman([r["hc_score"] for r in rs], a))
    return dict(task=task, n_configs=len(rows), seeds=spec["seeds"],
                preregistered=list(spec.get("preregistered") or []),
                fixed_predictors=preregistered_evaluation(rows, list(PREREGISTERED)),
                noise_ceiling=noise_ceiling(rows),
                fixed_epoch=spec["fixed_epoch"], kernel=kernel, fitted=fitted,
                predictor_choice=choice_of_predictor,
                within_condition=within,
                kernel_choice_half_A=choice, rows=rows,
                correlations=select.validation_table(rows, seed=0),
                single_diagnostics_vs_accuracy=per_diag, questions=questions(rows))


# Candidate predictors, each oriented before looking at any result so that larger predicts a
# higher accuracy. ``unit_backward_gain``: minus |log10| of the mean-field backward gain over the
# T steps (sgntk.diagnostics; the surrogate gradient should neither vanish nor explode, the
# principle of Herranz-Celotti & Rouat's condition, here with the whole unrolled network).
PREDICTORS = {
    "score": lambda r: r["score"],
    "minus_predicted_loss": lambda r: -r["predicted_loss"],
    "unit_backward_gain": lambda r: -abs(r["diagnostics"].get("backward_log10_gain", np.nan)),
    "hc_score": lambda r: r["hc_score"],
}


def _conditioning(r) -> float:
    """log10 of the smallest eigenvalue of the Adam-normalised surrogate Gram (the rate of the
    slowest mode of the linearised dynamics, relative to the mean diagonal) minus |log10| of
    the backward gain over the T steps (decades by which the surrogate gradient explodes or
    vanishes). A non-positive smallest eigenvalue scores -300 (worst)."""
    mrp = r["by_kernel"]["sg_gram"]["diagnostics"]["min_real_part"]
    gain = r["diagnostics"].get("backward_log10_gain", np.nan)
    return float(np.log10(mrp) if mrp > 0 else -300.0) - abs(gain)


# Predictors fixed before a blind grid (make_blind.py --preregistered) is trained, evaluated on
# it without any choice made from its results (``analyse`` reports them on every grid, as
# "fixed_predictors", and says for which grid they were preregistered). ``conditioning``
# (committed with blind2.json, 2026-12-01): chosen on the configurations of validation.json
# (both tasks) and blind.json, whose results had been seen; blind2.json is the test.
PREREGISTERED = {"conditioning": _conditioning}


def noise_ceiling(rows) -> dict:
    """How well the seeds agree: mean pairwise Spearman correlation ``r`` of the per-seed test
    accuracies over configurations, the Spearman-Brown reliability of their mean
    ``k r / (1 + (k - 1) r)`` (k seeds), and its square root, the correlation a perfect predictor
    of the expected accuracy would have with the measured mean (an upper bound to aim at)."""
    from sgntk import select

    seeds = np.array([r["test_accuracy_seeds"] for r in rows], float)
    k = seeds.shape[1] if seeds.ndim == 2 else 0
    if k < 2 or len(rows) < 3:
        return {}
    pairs = [select.spearman(seeds[:, i], seeds[:, j]) for i in range(k) for j in range(i + 1, k)]
    r = float(np.nanmean(pairs))
    rel = k * r / (1 + (k - 1) * r) if r > -1 / (k - 1) else float("nan")
    return dict(seed_pair_spearman=r, seeds=k, reliability_of_mean=rel,
                ceiling=float(np.sqrt(rel)) if rel > 0 else float("nan"))


def preregistered_evaluation(rows, names) -> dict:
    """Each preregistered predictor (and the Herranz-Celotti baseline) against the measured
    test accuracy on all configurations: Spearman with bootstrap 95 % interval, the measured
    rank of the predicted best, and against the training loss at the fixed epoch."""
    from sgntk import select

    acc = np.array([r["test_accuracy"] for r in rows])
    ce = np.array([r["train_ce"] for r in rows])
    out = {}
    for name in list(names) + ["hc_score"]:
        f = PREREGISTERED.get(name) or PREDICTORS[name]
        s = np.array([f(r) for r in rows], float)
        out[name] = dict(select.ranking_record(s, acc, [r["name"] for r in rows]),
                         vs_training_loss=select.bootstrap_spearman(-s, ce))
    return out


def choose_predictor(rows, *, chosen: str | None = None) -> dict:
    """The candidate of :data:`PREDICTORS` with the highest Spearman correlation with test
    accuracy on half A (or ``chosen``, the first task's choice, unchanged), evaluated on half B
    (and on all rows) with bootstrap 95 % intervals, next to the Herranz-Celotti baseline."""
    from sgntk import select

    def rho(name, part):
        return select.spearman([PREDICTORS[name](r) for r in part],
                               [r["test_accuracy"] for r in part])

    a = [r for r in rows if r["half"] == "A"]
    b = [r for r in rows if r["half"] == "B"]
    half_a = {name: rho(name, a) for name in PREDICTORS}
    if chosen is None:
        chosen = max(half_a, key=lambda k: half_a[k] if np.isfinite(half_a[k]) else -np.inf)

    def boot(name, part):
        return select.bootstrap_spearman([PREDICTORS[name](r) for r in part],
                                         [r["test_accuracy"] for r in part])

    return dict(half_A=half_a, chosen=chosen, chosen_on="randman half A",
                half_B=boot(chosen, b), half_B_hc=boot("hc_score", b),
                all=boot(chosen, rows), all_hc=boot("hc_score", rows))


FEATURES = ("score_sg_gram", "score_sgntk", "backward_explosion", "hc_score",
            "alignment_sg_gram", "effective_rank_sg_gram", "asymmetry_sgntk")


def features(row) -> list:
    """Pre-training diagnostics of one configuration (all from ``predict`` units)."""
    bk = row["by_kernel"]
    return [bk["sg_gram"]["score"], float(np.clip(bk["sgntk"]["score"], -1.0, 1.0)),
            max(0.0, row["diagnostics"].get("backward_log10_gain", 0.0)), row["hc_score"],
            bk["sg_gram"]["diagnostics"]["alignment"],
            bk["sg_gram"]["diagnostics"]["effective_rank"],
            bk["sgntk"]["diagnostics"]["asymmetry"]]


def fitted_score(rows, *, ridge: float = 1.0, fit: dict | None = None) -> dict:
    """Diagnostics combined by weights fitted on half A (ridge regression of the measured
    test-accuracy rank on z-scored features), evaluated on half B only (issue 8's protocol).
    ``fit``: weights/means/scales fitted elsewhere (the randman study), applied to all rows of
    this task without refitting."""
    from sgntk import select

    a = [r for r in rows if r["half"] == "A"]
    b = [r for r in rows if r["half"] == "B"] if fit is None else list(rows)
    if fit is None and (len(a) < 4 or len(b) < 3):
        return {}
    if fit is None:
        xa = np.array([features(r) for r in a], float)
        mu, sd = xa.mean(0), xa.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        za = (xa - mu) / sd
        ya = select._rank([r["test_accuracy"] for r in a])
        ya = (ya - ya.mean()) / ya.std()
        w = np.linalg.solve(za.T @ za + ridge * len(a) * np.eye(za.shape[1]), za.T @ ya)
    else:
        w, mu, sd = (np.asarray(fit[k]) for k in ("weights", "mean", "scale"))
    zb = (np.array([features(r) for r in b], float) - mu) / sd
    sb = zb @ w
    acc_b = np.array([r["test_accuracy"] for r in b])
    best = int(np.argmax(sb))
    return dict(features=list(FEATURES), weights=w.tolist(), mean=mu.tolist(),
                scale=sd.tolist(), ridge=ridge, refitted=fit is None,
                half_B=dict(vs_accuracy=select.bootstrap_spearman(sb, acc_b),
                            best=b[best]["name"],
                            best_measured_rank=int(1 + np.sum(acc_b > acc_b[best]))),
                half_B_theory_score=select.bootstrap_spearman(
                    [r["score"] for r in b], acc_b),
                half_B_hc=select.bootstrap_spearman([r["hc_score"] for r in b], acc_b))


def questions(rows) -> dict:
    """Numbers for the three literature claims (Zenke & Vogels; Herranz-Celotti & Rouat)."""
    by = {r["name"]: r for r in rows}
    shapes = ["triangular", "exponential", "fast_sigmoid", "rectangular", "sigmoid", "gaussian",
              "cauchy", "q_pseudo_spike", "erf", "straight_through"]
    out = {}
    for cond in ("ff_detached", "rec_diff"):
        accs = {s: by[f"{s}_{cond}"]["test_accuracy"] for s in shapes if f"{s}_{cond}" in by}
        if accs:
            v = np.array(list(accs.values()))
            w = np.array([a for sh, a in accs.items() if sh != "straight_through"])
            out[f"shape_spread_{cond}"] = dict(
                accuracy=accs, spread=float(v.max() - v.min()), std=float(v.std()),
                spread_without_straight_through=float(w.max() - w.min()) if len(w) else None)
    for cond in ("ff_detached", "ff_diff", "rec_detached"):
        names = [f"fast_sigmoid_{lab}_{cond}" for lab in
                 ("sharp0.1x", "sharp10x", "damp0.1x", "damp10x")]
        base = "fast_sigmoid_" + cond
        accs = {n: by[n]["test_accuracy"] for n in names + [base] if n in by}
        if accs:
            v = np.array(list(accs.values()))
            out[f"scale_spread_{cond}"] = dict(accuracy=accs, spread=float(v.max() - v.min()))
    # robustness of shapes to sharpness 0.1x / 10x (same condition, same other settings)
    for cond in ("ff_detached", "rec_diff"):
        rob = {}
        for shape in ("fast_sigmoid", "triangular"):
            names = [f"{shape}_{cond}"] + [f"{shape}_{lab}_{cond}" for lab in
                                           ("sharp0.1x", "sharp10x")]
            if all(n in by for n in names):
                accs = [by[n]["test_accuracy"] for n in names]
                rob[shape] = dict(default=accs[0], sharp0_1x=accs[1], sharp10x=accs[2],
                                  worst_drop=float(accs[0] - min(accs[1:])))
        if rob:
            out[f"sharpness_robustness_{cond}"] = rob
    return out


def format_preregistered(res) -> str:
    """Plain-text lines for the noise ceiling and the preregistered predictors of one task."""
    lines = []
    nc = res.get("noise_ceiling") or {}
    if nc:
        lines.append(f"  seeds agree: mean pairwise Spearman {nc['seed_pair_spearman']:+.2f} over "
                     f"{nc['seeds']} seeds; reliability of the mean {nc['reliability_of_mean']:.2f}"
                     f", ceiling for a perfect predictor {nc['ceiling']:.2f}")
    pre = set(res.get("preregistered") or [])
    for name, v in (res.get("fixed_predictors") or {}).items():
        a, lo = v["vs_accuracy"], v["vs_training_loss"]
        tag = ("preregistered" if name in pre else "baseline" if name == "hc_score"
               else "seen before")
        lines.append(f"  [{tag}] {name:13s} vs test accuracy: Spearman {a['rho']:+.2f} "
                     f"[{a['ci95'][0]:+.2f}, {a['ci95'][1]:+.2f}] (n={a['n']}); vs training "
                     f"loss {lo['rho']:+.2f}; best predicted {v['best']} is measured "
                     f"#{v['best_measured_rank']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["train", "predict", "analyse", "all"])
    ap.add_argument("--task", default="all", choices=["randman", "digits", "all"])
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--out", default=None)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--kernel", default=None, choices=["sgntk", "sg_gram"],
                    help="kernel of the score (default: chosen on half A of the randman grid)")
    ap.add_argument("--reference", default=None,
                    help="validation.json whose kernel and predictor choices are used unchanged "
                         "(a blind check on new configurations, e.g. --config blind.json)")
    from sgntk import runner
    runner.add_executor_arguments(ap)   # --ray, --ray-address ADDR, --workers N
    args = ap.parse_args(argv)
    spec = load_spec(args.config, smoke=args.smoke)
    out = args.out or (DEFAULT_OUT + ("-smoke" if args.smoke else ""))
    tasks = ["randman", "digits"] if args.task == "all" else [args.task]
    phases = ["train", "predict", "analyse"] if args.phase == "all" else [args.phase]
    with runner.executor(args) as ex:   # None (in process) unless --ray / --ray-address
        _run_phases(spec, args, tasks, phases, out, ex)
    return 0


def _run_phases(spec, args, tasks, phases, out, executor) -> None:
    from sgntk._util import write_json
    from sgntk.runner import map_units
    for phase in phases:
        for task in tasks:
            if phase in ("train", "predict"):
                r = map_units(units(spec, task, phase), out, force=args.force, executor=executor,
                              progress=not args.no_progress, desc=f"{task} {phase}")
                print(f"{task} {phase}: {len(r.computed)} computed, {len(r.skipped)} reused, "
                      f"{r.seconds:.0f} s", flush=True)
            else:
                ref = None
                if args.reference:     # choices made elsewhere (blind check)
                    with open(args.reference) as f:
                        ref = json.load(f)
                elif task != "randman":  # second task: the randman choices, nothing refitted
                    with open(os.path.join(out, "randman", "validation.json")) as f:
                        ref = json.load(f)
                res = analyse(spec, task, out, kernel=args.kernel, reference=ref)
                res["spec"] = {k: v for k, v in spec.items() if k != "configs"}
                write_json(os.path.join(out, task, "validation.json"), res)
                from sgntk import select
                print(select.format_validation(res))
                print(format_preregistered(res))


if __name__ == "__main__":
    sys.exit(main())
