"""Issue 11, experiment 1: accuracy vs initial surrogate width, fixed-width SGL vs ASGL.

Usage::

    nice -n 10 python experiments/asgl/run.py                       # experiments/asgl/config.json
    python experiments/asgl/run.py --smoke --out /tmp/asgl-smoke     # tiny, for the tests
    python experiments/asgl/run.py --task randman --force            # one task, recompute
    python paper_figs/asgl.py                                        # table + figures from results
    python experiments/asgl/run.py experiments/asgl/long.json --out experiments/asgl/results_long

One unit of :mod:`sgntk.runner` per (task, mode, width factor, seed): it trains the network
(:func:`sgntk.lif_train.train`, ``mode="sgl"`` or ``"asgl"``), evaluates the hard network on
the test split, and computes the empirical SG-NTK and surrogate Gram
(:func:`sgntk.asgl.empirical_kernels`) of the network being trained on a fixed probe batch
(the first ``kernel.probe`` training examples) at the epochs ``kernel.epochs`` (0 = at
initialisation) with their condition numbers (:func:`sgntk.diagnostics.spectrum`). One more
unit per (task, seed), ``kernel_grid``, computes the kernels of the initial network over the
width factors x noise rates ``kernel_grid.noise_rates`` (and the SGL kernel per width). Each unit
is saved atomically as ``<out>/<task>/<mode>_x<factor>_seed<seed>-<hash>.json``; a rerun
loads finished units (an interrupted run resumes). The config file is the only copy of the
settings (``experiments/asgl/config.json``; its description says why the sizes are small).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "config.json")
DEFAULT_OUT = os.path.join(HERE, "results")

SMOKE = dict(seeds=[0], width_factors=[0.1, 1.0], epochs=2, nb_samples=20, n_samples=100,
             n_hidden=16, batch_size=40, nb_steps=20, probe=8, n_masks=2, kernel_epochs=[0, 2],
             noise_rates=[0.0, 1.0])


def load_spec(path=DEFAULT_CONFIG, *, smoke=False) -> dict:
    with open(path) as f:
        spec = json.load(f)
    if smoke:
        spec["seeds"] = SMOKE["seeds"]
        spec["width_factors"] = SMOKE["width_factors"]
        spec["train"].update(epochs=SMOKE["epochs"], n_hidden=SMOKE["n_hidden"],
                             batch_size=SMOKE["batch_size"])
        spec["tasks"]["randman"].update(nb_samples=SMOKE["nb_samples"], nb_classes=3,
                                        nb_steps=SMOKE["nb_steps"])
        spec["tasks"]["digits"].update(n_samples=SMOKE["n_samples"], nb_steps=SMOKE["nb_steps"])
        spec["kernel"].update(probe=SMOKE["probe"], n_masks=SMOKE["n_masks"],
                              epochs=SMOKE["kernel_epochs"])
        if spec.get("kernel_grid"):
            spec["kernel_grid"]["noise_rates"] = SMOKE["noise_rates"]
        spec["smoke"] = True
    return spec


_DATA: dict = {}


def task_data(task: str, t: dict):
    """``sgntk.data.Split`` (80/10/10) of a task, cached per process."""
    from sgntk import data

    key = (task, json.dumps(t, sort_keys=True))
    if key in _DATA:
        return _DATA[key]
    if task == "randman":
        ds = data.randman(nb_classes=t["nb_classes"], nb_units=t["nb_units"],
                          nb_steps=t["nb_steps"], nb_samples=t["nb_samples"], seed=t["data_seed"])
    elif task == "digits":
        ds = data.latency_digits(nb_steps=t["nb_steps"], step_frac=t["step_frac"])
        keep = np.random.default_rng(t["data_seed"]).permutation(len(ds.labels))[:t["n_samples"]]
        ds = data.SpikeData(ds.spikes[keep], ds.labels[keep])
    else:
        raise ValueError(f"unknown task {task!r}; valid: randman, digits")
    _DATA[key] = data.split(ds, (0.8, 0.1, 0.1), seed=t["data_seed"])
    return _DATA[key]


def train_config(config: dict):
    """The :class:`sgntk.lif_train.TrainConfig` of a unit: shape ``sigmoid`` etc. from
    ``config["train"]``, sharpness ``reference_sharpness * factor``; SGL with unit-area
    gradient (dampening = sharpness), ASGL with dampening 1 (unused: its gradient is G')."""
    from sgntk import lif_train

    tr = dict(config["train"])
    beta = config["reference_sharpness"] * config["factor"]
    if tr["surrogate"] == "fast_sigmoid":
        raise ValueError("use a shape whose TrainConfig.beta is the sharpness (not fast_sigmoid)")
    mode = config["mode"]
    return lif_train.TrainConfig(**tr, beta=beta, dampening=beta if mode == "sgl" else 1.0,
                                 mode=mode, seed=config["seed"])


def train_unit(config: dict) -> dict:
    """One unit (module docstring)."""
    import jax

    from sgntk import asgl, diagnostics, lif_train

    t0 = time.perf_counter()
    splits = task_data(config["task"], config["task_config"])
    tc = train_config(config)
    lif_config = lif_train.make_lif_config(tc)
    kc = config["kernel"]
    probe = splits.train.spikes[:kc["probe"]]
    kernels = {}

    def kernel_at(epoch, params):
        if epoch not in kc["epochs"]:
            return
        if isinstance(params, asgl.ASGLParams):
            beta = asgl.sharpness(params.width, tc.asgl_width_param)
            k = asgl.empirical_kernels(params.net, probe, config=lif_config, mode="asgl",
                                       beta=np.asarray(beta), noise_rate=tc.asgl_noise_rate,
                                       key=jax.random.key(1000 + epoch), n_masks=kc["n_masks"],
                                       spike_sharpness=kc["spike_sharpness"])
        else:
            k = asgl.empirical_kernels(params, probe, config=lif_config, mode="sgl",
                                       spike_sharpness=kc["spike_sharpness"])
        with jax.enable_x64(True):
            kernels[str(epoch)] = {
                name: dict(condition_number=float(s.condition_number),
                           min_real_part=float(s.min_real_part),
                           effective_rank=float(s.effective_rank), norm=float(s.norm))
                for name, s in ((n, diagnostics.spectrum(v)) for n, v in k.items())}

    params, hist = lif_train.train(tc, splits, progress=False, callback=kernel_at)
    test = lif_train.evaluate(params, splits.test.spikes, splits.test.labels,
                              lif_config=lif_config)
    return dict(task=config["task"], mode=config["mode"], factor=config["factor"],
                seed=config["seed"], sharpness0=tc.beta, test_accuracy=test["accuracy"],
                test=test, history=hist, kernels=kernels,
                sizes=dict(train=len(splits.train.labels), test=len(splits.test.labels)),
                wall_time_s=time.perf_counter() - t0)


def kernel_grid_unit(config: dict) -> dict:
    """The kernels at initialisation over (width, noise rate): the network of seed ``seed``
    exactly as training initialises it (``lif_train.train`` with 0 epochs), the ASGL kernels
    for every width factor and noise rate in ``noise_rates`` and the SGL kernels for
    every width; condition numbers and smallest real parts."""
    import jax

    from sgntk import asgl, diagnostics, lif_train

    t0 = time.perf_counter()
    splits = task_data(config["task"], config["task_config"])
    kc = config["kernel"]
    probe = splits.train.spikes[:kc["probe"]]
    rows = []
    for factor in config["width_factors"]:
        for mode, rates in (("sgl", [None]), ("asgl", config["noise_rates"])):
            tc = train_config(dict(config, factor=factor, mode=mode))
            tc.epochs = 0
            lif_config = lif_train.make_lif_config(tc)
            got = {}
            lif_train.train(tc, splits, progress=False, callback=lambda e, p: got.update(p=p))
            for rate in rates:
                if mode == "sgl":
                    k = asgl.empirical_kernels(got["p"], probe, config=lif_config, mode="sgl",
                                               spike_sharpness=kc["spike_sharpness"])
                else:
                    k = asgl.empirical_kernels(got["p"].net, probe, config=lif_config,
                                               mode="asgl", beta=tc.beta, noise_rate=rate,
                                               key=jax.random.key(1000), n_masks=kc["n_masks"],
                                               spike_sharpness=kc["spike_sharpness"])
                with jax.enable_x64(True):
                    spec = {n: diagnostics.spectrum(v) for n, v in k.items()}
                    rows.append(dict(mode=mode, factor=factor, sharpness=tc.beta, noise_rate=rate,
                                     **{f"cond_{n}": float(s.condition_number)
                                        for n, s in spec.items()},
                                     **{f"min_real_{n}": float(s.min_real_part)
                                        for n, s in spec.items()}))
    return dict(task=config["task"], seed=config["seed"], rows=rows,
                wall_time_s=time.perf_counter() - t0)


def units(spec: dict, tasks=None, out=DEFAULT_OUT):
    from sgntk import runner

    tasks = list(spec["tasks"]) if tasks is None else tasks
    result = []
    for task in tasks:
        for seed in spec["seeds"]:
            for factor in spec["width_factors"]:
                for mode in spec["modes"]:
                    cfg = dict(task=task, task_config=spec["tasks"][task], mode=mode,
                               factor=factor, seed=seed, train=spec["train"],
                               reference_sharpness=spec["reference_sharpness"],
                               kernel=spec["kernel"], version=spec["version"])
                    result.append(runner.Unit(f"{task}/{mode}_x{factor:g}_seed{seed}",
                                              train_unit, cfg, fmt="json"))
            if not spec.get("kernel_grid"):
                continue
            cfg = dict(task=task, task_config=spec["tasks"][task], seed=seed, train=spec["train"],
                       reference_sharpness=spec["reference_sharpness"], kernel=spec["kernel"],
                       width_factors=spec["width_factors"], version=spec["version"],
                       noise_rates=spec["kernel_grid"]["noise_rates"])
            result.append(runner.Unit(f"{task}/kernel_grid_seed{seed}", kernel_grid_unit, cfg,
                                      fmt="json"))
    return result


def main(argv=None) -> int:
    from sgntk import runner

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--task", choices=["randman", "digits", "all"], default="all")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (tests)")
    ap.add_argument("--force", action="store_true", help="recompute finished units")
    ap.add_argument("--no-progress", action="store_true")
    runner.add_executor_arguments(ap)
    args = ap.parse_args(argv)
    spec = load_spec(args.config, smoke=args.smoke)
    tasks = None if args.task == "all" else [args.task]
    with runner.executor(args) as ex:
        res = runner.map_units(units(spec, tasks, args.out), args.out, executor=ex,
                               force=args.force, progress=not args.no_progress)
    for name, v in res.values.items():
        if "history" not in v:
            continue
        sh = v["history"].get("sharpness")
        print(f"{name}: test {v['test_accuracy']:.3f}"
              + (f", sharpness {v['sharpness0']:g} -> {sh[-1][0]:.3g}" if sh else ""))
    print(f"{res.n_computed} computed, {res.n_skipped} loaded, {res.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
