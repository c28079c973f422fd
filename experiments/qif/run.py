"""LIF vs QIF at matched hyper-parameter budgets (issue 11, experiment 2).

Usage::

    python experiments/qif/run.py                 # the study of config.json (~30-40 min, 2 cores)
    python experiments/qif/run.py --smoke         # tiny, CI-sized
    python experiments/qif/run.py --out DIR       # default experiments/qif/results

Set-up (``config.json``, the only copy): one hidden layer of ``n_hidden`` neurons, leaky
readout with max-over-time, Adam, SuperSpike surrogate, fluctuation-driven init; LIF with the
zero reset (the library's default), QIF (``sgntk.lif.LIFConfig(neuron="qif")``) with the wrap
reset ``theta -> theta - 2 pi`` at the divergence (the paper's neuron, V_peak = -V_reset = inf).
Both neurons get the *same* hyper-parameter budget: every point of ``grid`` (learning rate x
surrogate sharpness beta; the QIF surrogate acts on the phase in half-turns, the LIF one on
``U - theta``, so beta is tuned per neuron) is trained once with ``select_seed``, the point with
the best validation accuracy is chosen per (task, neuron), and that point is retrained with
``seeds`` (network init and minibatch order; data and split fixed by ``data_seed``) and
evaluated on the test split.

Loss landscape (after Wenig, Memmesheimer & Klos, who plot loss and gradient along random
directions of trained networks; Li et al. 2018 filter normalisation): for each final network
and each of ``n_directions`` random Gaussian directions ``d`` over the *hidden* weights (input
and, if present, recurrent; each neuron's incoming weight vector of ``d`` rescaled to the norm
of the trained one; readout fixed), the cross-entropy ``L(a)`` on ``n_examples`` test examples
and its surrogate directional derivative ``g(a) = dL/da`` (forward-mode JVP through the
surrogate) on ``n_points`` values ``a`` in ``[-radius, radius]``. In discrete time the
network output depends on the hidden weights only through the binary spike trains, so ``L`` is
piecewise constant along the line *for both neurons*: every change of ``L`` between
neighbouring grid points is a discontinuity (a jump). Reported per line:

* ``jump_frac``: fraction of grid steps where ``L`` changes at all (some output spike moved,
  appeared or disappeared);
* ``large_jump_frac``: fraction of grid steps with ``|Delta L| > large_jump`` (nats);
* ``count_change_frac``: fraction of grid steps where the total number of hidden spikes
  changes (a spike (dis)appears rather than only moves) -- the paper's mechanism;
* ``example_jump_frac`` / ``example_count_change_frac``: the same per example (the mean
  over ``n_examples`` saturates ``jump_frac``): fraction of (grid step, example) pairs where that
  example's loss changes / its hidden spike count changes; ``example_shift_frac``: its loss
  changes while its count does not (spikes only moved) -- after Wenig et al.'s single-sample
  landscapes;
* ``roughness``: total variation over range, ``sum |Delta L| / (max L - min L)`` (1 for a
  monotone line, large for a fragmented one);
* ``grad_var``: variance of ``g`` along the line, and ``grad_incr`` =
  ``mean (Delta g)^2 / (2 var g)`` (about 1 for a gradient that is white noise along the line,
  near 0 for a smooth one).

Each (task, neuron, grid point, seed) is one resumable unit of :mod:`sgntk.runner` (JSON under
``<out>/units``); ``<out>/summary.json`` collects them (written atomically); the figure is
``paper_figs/qif.py``.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sgntk import data, lif, lif_train, runner
from sgntk._util import versions, write_json

HERE = os.path.dirname(os.path.abspath(__file__))


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path=os.path.join(HERE, "config.json"), *, smoke: bool = False) -> dict:
    with open(path) as f:
        cfg = json.load(f)
    smoke_over = cfg.pop("smoke")
    if smoke:
        cfg = _merge(cfg, smoke_over)
        cfg["tasks"] = {k: v for k, v in cfg["tasks"].items() if k in smoke_over["tasks"]}
    cfg.pop("description", None)
    return cfg


def task_splits(task: dict) -> data.Split:
    """Data set and fixed 80/10/10 stratified split of a task (seeded by ``data_seed``)."""
    t = dict(task)
    kind, seed = t.pop("kind"), t.pop("data_seed")
    if kind == "randman":
        ds = data.randman(**t, seed=seed)
    elif kind == "latency_digits":
        ds = data.latency_digits(**t)
    else:
        raise ValueError(f"task kind must be 'randman' or 'latency_digits'; got {kind!r}")
    return data.split(ds, (0.8, 0.1, 0.1), seed=seed)


# --------------------------------------------------------------------------------------
# Loss landscape along random directions.
# --------------------------------------------------------------------------------------
def _direction(key, params: lif.SNNParams) -> lif.SNNParams:
    """Gaussian direction over the hidden weights, each neuron's incoming vector (a column of
    ``w_in`` / ``w_rec``) rescaled to the trained column's norm; zero readout."""
    def norm_like(k, w):
        if w is None:
            return None
        d = jax.random.normal(k, w.shape, w.dtype)
        return d * (jnp.linalg.norm(w, axis=0, keepdims=True)
                    / jnp.maximum(jnp.linalg.norm(d, axis=0, keepdims=True), 1e-30))

    keys = jax.random.split(key, 2 * len(params.hidden))
    hidden = tuple(lif.LIFParams(norm_like(keys[2 * i], p.w_in), norm_like(keys[2 * i + 1], p.w_rec))
                   for i, p in enumerate(params.hidden))
    return lif.SNNParams(hidden, lif.ReadoutParams(jnp.zeros_like(params.readout.w)))


def landscape_line(params, direction, xs, ys, *, lif_config, alphas, chunk: int = 16) -> dict:
    """``L(a)``, surrogate ``dL/da`` and the total hidden spike count along ``params + a d``."""
    def point(a):
        def f(t):
            p = jax.tree_util.tree_map(lambda w, d: w + t * d, params, direction)
            out = lif.snn_apply(p, xs, config=lif_config)
            ce_ex = optax.softmax_cross_entropy_with_integer_labels(out.logits, ys)
            count_ex = sum(s.sum(axis=(1, 2)) for s in out.spikes)
            return ce_ex.mean(), (ce_ex, count_ex)
        (ce, aux), (g, _) = _jvp_aux(f, a)
        return ce, g, aux[1].sum(), aux[0], aux[1]

    fn = jax.jit(jax.vmap(point))
    res = [fn(jnp.asarray(alphas[i:i + chunk], jnp.float32)) for i in range(0, len(alphas), chunk)]
    loss, grad, count, loss_ex, count_ex = (np.concatenate([np.asarray(r[j]) for r in res])
                                            for j in range(5))
    return dict(loss=loss, grad=grad, count=count, loss_examples=loss_ex,
                count_examples=count_ex)


def _jvp_aux(f, a):
    """``((f(a)[0], aux), (d f(a)[0] / da, None))`` for ``f`` returning ``(value, aux)``."""
    value, tangent, aux = jax.jvp(f, (a,), (jnp.ones_like(a),), has_aux=True)
    return (value, aux), (tangent, None)


def line_metrics(line: dict, *, large_jump: float) -> dict:
    """Jump and gradient statistics of one line (module docstring); with per-example arrays
    ``loss_examples`` / ``count_examples`` ``(n_points, n_examples)`` also the per-example
    fractions."""
    dl = np.diff(line["loss"].astype(np.float64))
    g = line["grad"].astype(np.float64)
    rng = float(np.max(line["loss"]) - np.min(line["loss"]))
    var_g = float(np.var(g))
    extra = {}
    if "loss_examples" in line:
        jump_ex = np.diff(line["loss_examples"], axis=0) != 0
        count_ex = np.diff(line["count_examples"], axis=0) != 0
        extra = dict(example_jump_frac=float(np.mean(jump_ex)),
                     example_count_change_frac=float(np.mean(count_ex)),
                     example_shift_frac=float(np.mean(jump_ex & ~count_ex)))
    return dict(**extra, jump_frac=float(np.mean(dl != 0)),
                large_jump_frac=float(np.mean(np.abs(dl) > large_jump)),
                count_change_frac=float(np.mean(np.diff(line["count"]) != 0)),
                roughness=float(np.sum(np.abs(dl)) / rng) if rng > 0 else 1.0,
                grad_var=var_g,
                grad_incr=float(np.mean(np.diff(g) ** 2) / (2 * var_g)) if var_g > 0 else 0.0,
                loss_range=rng)


# --------------------------------------------------------------------------------------
# Units.
# --------------------------------------------------------------------------------------
def train_unit(config: dict, *, landscape: dict | None = None) -> dict:
    """Train one network (``config``: task + TrainConfig fields) and evaluate it; with
    ``landscape`` (in the config, so hashed) also measure the landscape lines."""
    t0 = time.perf_counter()
    splits = task_splits(config["task"])
    tc = lif_train.TrainConfig.from_dict(config["train"])
    params, hist = lif_train.train(tc, splits, progress=False)
    lc = lif_train.make_lif_config(tc)
    test = lif_train.evaluate(params, splits.test.spikes, splits.test.labels, lif_config=lc)
    out = dict(config=config, history=hist, val_accuracy=hist["val_acc"][-1],
               best_val_accuracy=max(hist["val_acc"]), test_accuracy=test["accuracy"],
               test=test, train_seconds=time.perf_counter() - t0)
    ls = config.get("landscape")
    if ls:
        n = ls["n_examples"]
        xs, ys = jnp.asarray(splits.test.spikes[:n]), jnp.asarray(splits.test.labels[:n])
        alphas = np.linspace(-ls["radius"], ls["radius"], ls["n_points"])
        lines, metrics = [], []
        for k in range(ls["n_directions"]):
            d = _direction(jax.random.key(1000 + 17 * tc.seed + k), params)
            line = landscape_line(params, d, xs, ys, lif_config=lc, alphas=alphas,
                                  chunk=ls["chunk"])
            metrics.append(line_metrics(line, large_jump=ls["large_jump"]))
            lines.append({k2: line[k2].tolist() for k2 in ("loss", "grad", "count")})
        out["landscape"] = dict(alphas=alphas.tolist(), lines=lines, metrics=metrics)
    out["seconds"] = time.perf_counter() - t0
    out["versions"] = versions()
    return out


def _unit_config(cfg, task, neuron, lr, beta, seed, *, with_landscape):
    train = dict(cfg["train"], **cfg["neurons"][neuron], lr=lr, beta=beta, seed=seed)
    c = dict(task=dict(cfg["tasks"][task]), train=train, task_name=task, neuron_name=neuron)
    if with_landscape:
        c["landscape"] = dict(cfg["landscape"])
    return c


def _unit(name, config):
    return runner.Unit(name, train_unit, config, fmt="json")


def run(cfg: dict, out: str, *, force: bool = False) -> dict:
    units_dir = os.path.join(out, "units")
    grid = list(itertools.product(cfg["grid"]["lr"], cfg["grid"]["beta"]))
    combos = [(t, n) for t in cfg["tasks"] for n in cfg["neurons"]]
    # Stage 1: the hyper-parameter grid, one seed, same budget for every neuron.
    sel_units = [_unit(f"select_{t}_{n}_lr{lr:g}_beta{b:g}",
                       _unit_config(cfg, t, n, lr, b, cfg["select_seed"], with_landscape=False))
                 for t, n in combos for lr, b in grid]
    sel = runner.map_units(sel_units, units_dir, force=force, desc="grid")
    best = {}
    for t, n in combos:
        rows = [(sel.values[f"select_{t}_{n}_lr{lr:g}_beta{b:g}"]["val_accuracy"], lr, b)
                for lr, b in grid]
        v, lr, b = max(rows, key=lambda r: r[0])   # ties: first grid point
        best[f"{t}/{n}"] = dict(lr=lr, beta=b, val_accuracy=v,
                                grid=[dict(lr=r[1], beta=r[2], val_accuracy=r[0]) for r in rows])
    # Stage 2: the chosen point, several seeds, test accuracy and landscape.
    fin_units = [_unit(f"final_{t}_{n}_seed{s}",
                       _unit_config(cfg, t, n, best[f"{t}/{n}"]["lr"], best[f"{t}/{n}"]["beta"],
                                    s, with_landscape=True))
                 for t, n in combos for s in cfg["seeds"]]
    fin = runner.map_units(fin_units, units_dir, force=force, desc="final")
    results = {}
    for t, n in combos:
        runs = [fin.values[f"final_{t}_{n}_seed{s}"] for s in cfg["seeds"]]
        acc = np.array([r["test_accuracy"] for r in runs])
        mets = [m for r in runs for m in r["landscape"]["metrics"]]
        agg = {}
        for key in mets[0]:
            v = np.array([m[key] for m in mets])
            agg[key] = dict(mean=float(v.mean()),
                            se=float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None,
                            values=v.tolist())
        results[f"{t}/{n}"] = dict(
            task=t, neuron=n, chosen=best[f"{t}/{n}"], seeds=cfg["seeds"],
            test_accuracy=dict(mean=float(acc.mean()),
                               se=float(acc.std(ddof=1) / np.sqrt(len(acc))) if len(acc) > 1
                               else None, values=acc.tolist()),
            hidden_rate_per_step=float(np.mean([r["test"]["rate_per_step"] for r in runs])),
            frac_silent=float(np.mean([r["test"]["frac_silent_neurons"] for r in runs])),
            landscape=agg, n_lines=len(mets),
            unit_files=[os.path.relpath(fin.paths[f"final_{t}_{n}_seed{s}"], out)
                        for s in cfg["seeds"]])
    summary = dict(config=cfg, results=results,
                   # compute time summed over the units (when they were computed)
                   unit_seconds=dict(grid=sum(v["seconds"] for v in sel.values.values()),
                                     final=sum(v["seconds"] for v in fin.values.values())),
                   versions=versions())
    write_json(os.path.join(out, "summary.json"), summary)
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default=os.path.join(HERE, "config.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--smoke", action="store_true", help="tiny configuration (CI)")
    ap.add_argument("--force", action="store_true", help="recompute finished units")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, smoke=args.smoke)
    s = run(cfg, args.out, force=args.force)
    for key, r in s["results"].items():
        ls = r["landscape"]
        print(f"{key:16s} lr={r['chosen']['lr']:g} beta={r['chosen']['beta']:g}  test acc "
              f"{r['test_accuracy']['mean']:.3f} +- {r['test_accuracy']['se'] or 0:.3f}  "
              f"jumps {ls['jump_frac']['mean']:.3f}  large {ls['large_jump_frac']['mean']:.3f}  "
              f"count-changes {ls['count_change_frac']['mean']:.3f}  roughness "
              f"{ls['roughness']['mean']:.1f}  grad_incr {ls['grad_incr']['mean']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
