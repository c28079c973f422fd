"""README.md's numbers, regenerated from the committed results (issue 14, item 8).

    python paper_figs/readme_tables.py            # rewrite the generated blocks of README.md
    python paper_figs/readme_tables.py --check    # exit 1 and show a diff if any block is stale

Each block of README.md between ``<!-- generated: NAME -->`` and ``<!-- /generated: NAME -->`` is
the output of ``BLOCKS[NAME](root)`` for the repository root ``root``:

* ``eilers-agreement`` — ``paper_figs/eilers2024/large/agreement.json`` (final-step records of the
  erf'-surrogate, depth-2 sign networks, and the noise-corrected width slope);
* ``eilers-paper-values`` — ``paper_figs/eilers2024/fig3_paper/paper_values.json`` (the values
  printed in or read off the paper next to ours);
* ``eilers-fig3-paper`` — ``paper_figs/eilers2024/fig3_paper/agreement.json`` (Fig. 3 at the
  paper's size, training set and horizon: every recorded step vs the prediction at that t, the
  last one also vs t = inf);
* ``randman-accuracy`` — ``experiments/results/randman/seed*/summary.json``;
* ``lif-reset-recurrence`` — ``experiments/results/lif_kernels.json``;
* ``conversion-table`` — ``sgntk.conversions.conversion_table_markdown`` (the rows that map;
  checked against the libraries' formulas and autograd in ``tests/test_conversions.py``);
* ``surrogate-shapes`` — ``benchmarks/results/bench_surrogate_shapes.json``.
* ``benchmarks`` — ``benchmarks/results/`` (``bench_kernels.txt``, ``bench_train.txt``,
  ``bench_lif.txt`` as printed by their scripts; ``bench_large_n.json``).
* ``selection-validation`` — ``experiments/results/selection/<task>/validation.json``
  (``experiments/selection/validation.py analyse``; issue 8).
* ``selection-predictors`` — the fixed predictors and the seeds' noise ceiling on every
  validation grid (``experiments/results/selection*/<task>/validation.json``; issue 8);
* ``lif-kernel-speed`` — ``benchmarks/results/bench_lif_kernels.json`` (issue 9);
* ``lif-depth`` — ``experiments/lif_depth/results/summary.json`` (issue 9);
* ``asgl`` — ``paper_figs/asgl/summary.json`` (``python paper_figs/asgl.py``) and, for the
  longer-training arm, ``paper_figs/asgl/long/summary.json`` (``python paper_figs/asgl.py
  experiments/asgl/results_long --out paper_figs/asgl/long``); issue 11;
* ``qif`` — ``experiments/qif/results/summary.json`` (``python experiments/qif/run.py``; issue 11);
* ``sharding-scaling`` — ``benchmarks/results/bench_sharding.json`` (kernels on 1, 2, 4 forced
  host devices, sharded and on disk, vs the single-device path of the same process).

``tests/test_readme.py`` fails when a block differs from what this script produces, so a number
in the README changes only together with the result it comes from.
"""
from __future__ import annotations

import argparse
import difflib
import glob
import json
import os
import re
import sys
import textwrap

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = "README.md"


def _load(root, *path):
    with open(os.path.join(root, *path)) as f:
        return json.load(f)


def _read(root, *path):
    with open(os.path.join(root, *path)) as f:
        return f.read()


def _match(pattern, text, what):
    m = re.search(pattern, text, re.MULTILINE)
    if m is None:
        raise ValueError(f"{what}: no line matches {pattern!r} (did the script's output change?)")
    return m


def _wrap(text: str) -> str:
    """One paragraph, wrapped at 100 columns like the rest of README.md."""
    return textwrap.fill(" ".join(text.split()), 100, break_long_words=False,
                         break_on_hyphens=False)


def _span(values, fmt="{:.1f}", unit="x"):
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return f"{lo}{unit}" if lo == hi else f"{lo}–{hi}{unit}"


# ------------------------------------------------------------------------------- blocks
def eilers_agreement(root, setting="sign-erf-L2-k1") -> str:
    d = _load(root, "paper_figs", "eilers2024", "large", "agreement.json")
    rows = sorted((r for r in d["records"] if r["setting"] == setting and r["final"]),
                  key=lambda r: r["width"])
    if not rows:
        raise ValueError(f"agreement.json has no final records of {setting!r}")
    out = ["| width | networks | rel. L2 error of the mean | its noise floor "
           "| variance ratio (nets / GP) | KS (5 % crit.) |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['width']} | {r['n_networks']} | {r['rel_l2_mean']:.3f} "
                   f"| {r['rel_l2_mean_noise']:.3f} | {r['var_ratio']:.2f} "
                   f"| {r['ks']:.2f} ({r['ks_crit95']:.2f}) |")
    (s,) = [s for s in d["slopes"] if s["setting"] == setting]
    widths = ", ".join(str(w) for w in s["widths_above_noise"])
    out += ["", _wrap(f"The mean error falls like width^{s['slope_noise_corrected']:.2f} after "
                      f"subtracting the ensemble noise (widths {widths}; theory: -1/2).")]
    return "\n".join(out)


def eilers_paper_values(root) -> str:
    d = _load(root, "paper_figs", "eilers2024", "fig3_paper", "paper_values.json")
    out = ["| quantity | paper | sgntk (analytic) |", "|---|---|---|"]
    for r in d["rows"]:
        dg = r["paper_digits"]
        ours = "—" if r["ours"] is None else f"{r['ours']:.{max(dg, 4)}f}"
        out.append(f"| {r['description']} | {r['paper']:.{dg}f} | {ours} |")
    return "\n".join(out)


def eilers_fig3_paper(root) -> str:
    d = _load(root, "paper_figs", "eilers2024", "fig3_paper", "agreement.json")
    cfg = _load(root, "paper_figs", "eilers2024", "fig3_paper", "config.json")
    rows = [r for r in d["records"] if r["setting"] == "sign-erf-L2-k1" and r["step"] > 0]
    if not rows:
        raise ValueError("fig3_paper/agreement.json has no Fig. 3 records")
    out = ["| SGL step | compared with | rel. L2 error of the mean | its noise floor "
           "| variance ratio (nets / GP) | KS (5 % crit.) |", "|---|---|---|---|---|---|"]
    for r in rows:
        vs = "t = inf" if r.get("prediction") == "inf" else f"t = {r['step']}"
        out.append(f"| {r['step']} | {vs} | {r['rel_l2_mean']:.3f} | {r['rel_l2_mean_noise']:.3f} "
                   f"| {r['var_ratio']:.2f} | {r['ks']:.2f} ({r['ks_crit95']:.2f}) |")
    f3 = cfg["fig3"]
    n, w = rows[0]["n_networks"], rows[0]["width"]
    missing = len(d.get("missing_units", []))
    if missing:
        nets = (f"{n} sign networks of width {w} (of the {f3['n_networks']} the paper trains: "
                f"{missing} blocks of {f3.get('block_networks', n)} networks were not reached "
                f"on the shared 2-core CPU)")
    else:
        nets = f"{n} sign networks of width {w} (all {f3['n_networks']} the paper trains)"
    over = [r for r in rows if r["ks"] > r["ks_crit95"]]
    ks = (f" The KS statistic exceeds its 5 % critical value at steps "
          f"{', '.join(str(r['step']) if r.get('prediction') != 'inf' else 't = inf' for r in over)}"
          f" ({len(over)} of the {len(rows)} comparisons, not corrected for multiple testing); "
          f"SGL of sign networks does not lower every network's training loss monotonically, so "
          f"single records can catch networks in a transient." if over else "")
    out += ["", _wrap(f"{nets}, the paper's Fig. 3 training set, {rows[-1]['step']} SGL steps "
                      f"of the paper's {f3['steps']}.{ks}")]
    return "\n".join(out)


def randman_accuracy(root) -> str:
    paths = sorted(glob.glob(os.path.join(root, "experiments", "results", "randman", "seed*",
                                          "summary.json")))
    if not paths:
        raise ValueError("no experiments/results/randman/seed*/summary.json")
    runs = sorted((json.load(open(p)) for p in paths), key=lambda s: s["seed"])
    acc = ", ".join(f"{s['test_accuracy']:.3f}" for s in runs)
    seeds = ", ".join(str(s["seed"]) for s in runs)
    wall = [s["wall_time_s"] for s in runs]
    return _wrap(f"Measured (2-core CPU, {_span(wall, '{:.0f}', ' s')} per seed): test accuracy "
                 f"{acc} for seeds {seeds} (summaries with per-epoch losses and spike rates in "
            f"`experiments/results/randman/seed*/summary.json`).")


def lif_reset_recurrence(root) -> str:
    d = _load(root, "experiments", "results", "lif_kernels.json")
    rows = {r["variant"]: r for r in d["rows"]}

    def mean(variant, k):
        return np.asarray(rows[variant][k]["mean"], float)

    def hidden(variant):  # the readout-weight term of the SG-NTK is the NNGP
        return mean(variant, "sgntk") - mean(variant, "nngp")

    shrink = {reset: (hidden(f"{reset} detached (MC)") / hidden(f"{reset} differentiable (MC)"))
              for reset in ("zero", "subtract")}
    (ff,) = [v for v in rows if v.startswith("zero detached, feed-forward")]
    (rec,) = [v for v in rows if v.startswith("zero detached, recurrent")]
    rise = 100.0 * (mean(rec, "sgntk") / mean(ff, "sgntk") - 1.0)
    m = d["meta"]
    text = ("`python experiments/lif_kernels.py` prints how the kernel changes with the reset and "
            "recurrence (measured at T = {T}, tau_mem = {tm:g}, tau_syn = {ts:g}, threshold {th:g}, "
            "{sur}: a differentiable reset shrinks the SG-NTK's hidden-layer part (SG-NTK minus "
            "NNGP, the readout term) {z} for reset to zero and {s} for reset by subtraction; "
            "recurrence with sigma_rec = {sr:g} raises the SG-NTK {r}; JSON in "
            "`experiments/results/lif_kernels.json`).").format(
                T=m["T"], tm=m["tau_mem"], ts=m["tau_syn"], th=m["threshold"], sur=m["surrogate"],
                z=_span(shrink["zero"].ravel()), s=_span(shrink["subtract"].ravel()),
                sr=m["sigma_rec"], r=_span(rise.ravel(), "{:.0f}", " %"))
    return _wrap(text)


def benchmarks(root) -> str:
    res = ("benchmarks", "results")
    # bench_kernels.txt: "     N    nt Erf  sgntk sign+erf  ratio  sgntk sign+fast_sigmoid  ratio"
    kern = _read(root, *res, "bench_kernels.txt")
    table = re.findall(r"^\s+(\d+)\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+[\d.]+\s+([\d.]+)\s*$", kern,
                       re.MULTILINE)
    if not table:
        raise ValueError("bench_kernels.txt: no 'N nt sgntk ratio sgntk ratio' rows")
    ns = " / ".join(n for n, _, _ in table)
    closed = " / ".join(r for _, r, _ in table)
    quad = " / ".join(r for _, _, r in table)
    emp = _match(r"ratio sgntk / fastest neural-tangents: ([\d.]+)", kern, "bench_kernels.txt")
    big = _load(root, *res, "bench_large_n.json")
    big["n"] = f"{big['n']:,d}".replace(",", " ")  # 20 000
    # bench_train.txt: one block per configuration
    train = _read(root, *res, "bench_train.txt")
    parts = []
    first = re.split(r"^(?=# python benchmarks/bench_train.py)", train, flags=re.MULTILINE)
    first = next((b for b in first if "ensemble training" in b), train)  # the newest run
    for block in re.split(r"^(?=ensemble training)", first, flags=re.MULTILINE)[1:]:
        w = _match(r"width (\d+), (\d+) nets", block, "bench_train.txt")
        load = _match(r"load average ([\d.]+)", block, "bench_train.txt")
        scan = _match(r"loop \(nets, scanned\).*vmapped is\s+([\d.]+)x", block, "bench_train.txt")
        peak = re.search(r"([\d.]+) % of\s+peak FLOP/s", block)
        ceil = re.search(r"batching ceiling: scanned loop / FLOP roofline =\s+([\d.]+)x", block)
        if peak and ceil:
            parts.append(f"width {w.group(1)}, {w.group(2)} nets: {float(scan.group(1)):.2g}x "
                         f"the scanned per-network loop (ceiling of any batching "
                         f"{float(ceil.group(1)):.2g}x), {float(peak.group(1)):.0f} % of peak "
                         f"FLOP/s (load {float(load.group(1)):.0f})")
        else:
            mm = _match(r"=\s+([\d.]+) % of matmul", block, "bench_train.txt")
            parts.append(f"width {w.group(1)}, {w.group(2)} nets: {float(scan.group(1)):.2g}x "
                         f"vs loop, {float(mm.group(1)):.0f} % of matmul")
    if not parts:
        raise ValueError("bench_train.txt: no 'ensemble training' blocks")
    train_cell = "; ".join(parts)
    # bench_lif.txt: one section per run; quote the quietest run of the newest format (public
    # snn_apply on the batch, Spyx), else the quietest run
    lif = _read(root, *res, "bench_lif.txt")
    runs = []
    for block in re.split(r"^(?=\$ python benchmarks/bench_lif.py)", lif, flags=re.MULTILINE):
        if "speed-up, best vs best" not in block:
            continue
        load = float(_match(r"load average before: \(([\d.]+)", block, "bench_lif.txt").group(1))
        best = _match(r"speed-up, best vs best: ([\d.]+)x", block, "bench_lif.txt").group(1)
        new = re.search(r"speed-up of snn_apply \(batch\) vs best snnTorch: ([\d.]+)x", block)
        spyx = re.search(r"speed-up of snn_apply \(batch\) vs Spyx: ([\d.]+)x", block)
        if new:
            api = f"{new.group(1)}x through the public `snn_apply` on the batch"
        else:
            api = _match(r"speed-up of vmap\(snn_apply\) vs best snnTorch: ([\d.]+)x", block,
                         "bench_lif.txt").group(1) + "x through the high-level `vmap(snn_apply)`"
        if spyx:
            api += f", {spyx.group(1)}x faster than Spyx (same network and surrogate)"
        runs.append((not (new and spyx), load, best, api))
    if not runs:
        raise ValueError("bench_lif.txt: no run with a 'speed-up, best vs best' line")
    _, load, best, vm = min(runs)
    return "\n".join([
        "| script | comparison | measured |",
        "|---|---|---|",
        f"| `bench_kernels.py` | `kernels.mlp` (NNGP + SG-NTK, depth 3) vs neural-tangents "
        f"`stax.Erf` (NNGP + NTK), N = {ns} | closed-form surrogate {closed}x; quadrature "
        f"surrogate (fast sigmoid) {quad}x |",
        f"| `bench_kernels.py` | structured empirical `J J~^T` vs fastest neural-tangents "
        f"`empirical_ntk_fn` (impl. 3), width 1024, 256 inputs | {emp.group(1)}x |",
        f"| `bench_large_n.py` | N = {big['n']} SG-NTK (depth {big['depth']}, fast sigmoid) in {big['tile_size']} x "
        f"{big['tile_size']} tiles | {big['seconds']:.0f} s, peak RSS {big['peak_rss_gib']:.1f} GiB for a "
        f"{big['result_gib']:.1f} GiB result (load {big['load_average_before'][0]:.0f} on "
        f"{big['cpus']} cores) |",
        f"| `bench_train.py` | vmapped ensemble training vs a per-network loop; vs the machine's "
        f"peak FLOP/s (large GEMM, same run) | {train_cell} |",
        f"| `bench_lif.py` | LIF forward+backward vs snnTorch 1.0 and Spyx (CPU, 20-100-10, T = "
        f"100, batch 250, same surrogate; median) | best sgntk route {best}x snnTorch; {vm} "
        f"(load {load:.0f}) |",
    ])


def conversion_table(root) -> str:
    from sgntk import conversions

    return conversions.conversion_table_markdown(include_unrepresentable=False)


def surrogate_shapes(root) -> str:
    """Per-shape cost of the default kernels (benchmarks/bench_surrogate_shapes.json)."""
    res = _load(root, "benchmarks", "results", "bench_surrogate_shapes.json")
    rows = res["rows"]
    n, depth = rows[0]["n"], rows[0]["depth"]
    lines = [f"`kernels.mlp(x, depth={depth})`, default kernels (NNGP, NTK, SG-NTK, surrogate Gram), "
             f"N = {n}, sign network, inputs of unequal norm, each shape timed next to the gaussian "
             f"shape in the same process (load average {res['load_average'][0]:.1f} "
             f"on {res['cpus']} cores; `benchmarks/bench_surrogate_shapes.py`):", "",
             "| shape | warm (s) | x gaussian (wall) | x gaussian (CPU time) | peak memory beyond the result (GB) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['shape']}` | {r['warm_s']:.2f} | {r['ratio_wall']:.1f} | "
                     f"{r['ratio_cpu']:.1f} | {r['peak_beyond_result_gb']:.2f} |")
    return "\n".join(lines)


def sharding_scaling(root) -> str:
    """Throughput vs device count (benchmarks/results/bench_sharding.json)."""
    res = _load(root, "benchmarks", "results", "bench_sharding.json")
    rows = res["rows"]
    lines = [_wrap(f"N = {res['n']} SG-NTK (depth {res['depth']}, {res['activation']}, "
                   f"{res['surrogate']}), tiles of {res['tile']}, best of {res['repeats']}; "
                   f"{rows[0]['platform'].upper()} devices forced on a {res['cpus']}-core "
                   f"machine (load average {res['load_average_before'][0]:.1f}; "
                   "`benchmarks/bench_sharding.py`). Ratios are to the default single-device "
                   "`kernels.mlp` timed in the same process:"), "",
             "| devices | single-device path (s) | `mesh=` sharded (s) | speed-up | `tiles=` on disk (s) "
             "| speed-up | sharded, pairs/s | max rel. difference |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['devices']} | {r['baseline_s']:.2f} | {r['sharded_s']:.2f} "
                     f"| {r['sharded_vs_baseline']:.2f}x | {r['on_disk_s']:.2f} "
                     f"| {r['on_disk_vs_baseline']:.2f}x | {r['pairs_per_s_sharded']:.2g} "
                     f"| {max(r['max_rel_diff_sharded'], r['max_rel_diff_on_disk']):.0e} |")
    return "\n".join(lines)



def selection_validation(root) -> str:
    """``experiments/results/selection/<task>/validation.json`` (issue 8)."""
    lines = ["| task | configs x seeds | predictor | Spearman vs test accuracy, all [95 % CI] | "
             "held-out half B | predicted best: measured rank | predicted vs measured "
             "training loss |", "|---|---|---|---|---|---|---|"]
    notes = []
    for task in ("randman", "digits"):
        path = os.path.join(root, "experiments", "results", "selection", task, "validation.json")
        if not os.path.exists(path):
            continue
        d = _load(root, "experiments", "results", "selection", task, "validation.json")
        c = d["correlations"]
        for pred, label in (("score", f"kernel-fit score ({d['kernel']})"),
                            ("hc_score", "Herranz-Celotti")):
            a, b = c["all"][pred], c.get("B", {}).get(pred)
            loss = c["all"]["predicted_vs_measured_loss"] if pred == "score" else None
            lines.append(
                f"| {task} | {d['n_configs']} x {len(d['seeds'])} | {label} | "
                f"{a['vs_accuracy']['rho']:+.2f} [{a['vs_accuracy']['ci95'][0]:+.2f}, "
                f"{a['vs_accuracy']['ci95'][1]:+.2f}] | "
                + (f"{b['vs_accuracy']['rho']:+.2f} (n = {b['vs_accuracy']['n']})" if b else "-")
                + f" | {a['best_measured_rank']} of {d['n_configs']} | "
                + (f"{loss['rho']:+.2f} [{loss['ci95'][0]:+.2f}, {loss['ci95'][1]:+.2f}]"
                   if loss else "-") + " |")
        pc = d.get("predictor_choice")
        if pc:
            b, a = pc["half_B"], pc["all"]
            lines.append(
                f"| {task} | {d['n_configs']} x {len(d['seeds'])} | {pc['chosen']} (chosen on "
                f"{pc['chosen_on']}) | {a['rho']:+.2f} [{a['ci95'][0]:+.2f}, {a['ci95'][1]:+.2f}] | "
                f"{b['rho']:+.2f} [{b['ci95'][0]:+.2f}, {b['ci95'][1]:+.2f}] (n = {b['n']}) | - | - |")
        q = d["questions"]
        bits = []
        for cond, what in (("ff_detached", "feed-forward, detached reset"),
                           ("rec_diff", "recurrent, differentiable reset")):
            k = f"shape_spread_{cond}"
            if k in q and len(q[k]["accuracy"]) > 1:
                bits.append(f"spread of test accuracy over {len(q[k]['accuracy'])} shapes at "
                            f"matched scale, {what}: {q[k]['spread']:.3f} "
                            f"({q[k]['spread_without_straight_through']:.3f} without "
                            f"straight-through)")
        for cond, what in (("ff_detached", "detached feed-forward"),
                           ("ff_diff", "differentiable reset"),
                           ("rec_detached", "recurrent")):
            k = f"scale_spread_{cond}"
            if k in q and len(q[k]["accuracy"]) > 1:
                bits.append(f"spread over fast-sigmoid sharpness/dampening 0.1x-10x, {what}: "
                            f"{q[k]['spread']:.3f} ({len(q[k]['accuracy'])} configurations)")
        if bits:
            notes.append(f"{task}: " + "; ".join(bits) + ".")
    blind = os.path.join(root, "experiments", "results", "selection-blind", "randman",
                         "validation.json")
    if os.path.exists(blind):   # new configurations, every choice taken from randman unchanged
        d = _load(root, "experiments", "results", "selection-blind", "randman", "validation.json")
        pc, c = d["predictor_choice"], d["correlations"]["all"]
        for label, r in ((f"{pc['chosen']} (randman's choice)", pc["all"]),
                         (f"kernel-fit score ({d['kernel']})", c["score"]["vs_accuracy"]),
                         ("Herranz-Celotti", pc["all_hc"])):
            lines.append(f"| randman, blind: {d['n_configs']} new configurations | "
                         f"{d['n_configs']} x {len(d['seeds'])} | {label} | {r['rho']:+.2f} "
                         f"[{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}] | - | - | - |")
        flat = sum(abs(r["diagnostics"]["backward_log10_gain"]) < 1e-12 for r in d["rows"])
        notes.append(f"Blind set: the backward gain is exactly 1 (no growth over T) for {flat} of "
                     f"the {d['n_configs']} new configurations, so the chosen predictor only "
                     "separates the exploding ones (its bootstrap interval is not meaningful: "
                     "resamples without an exploding configuration have no defined rank "
                     "correlation and are dropped).")
    if len(lines) == 2:
        raise ValueError("no experiments/results/selection/*/validation.json")
    return "\n".join(lines) + "\n\n" + _wrap(" ".join(notes))


def lif_kernel_speed(root) -> str:
    """Throughput of the LIF kernels next to kernels.mlp (benchmarks/results/bench_lif_kernels.json)."""
    rows = _load(root, "benchmarks", "results", "bench_lif_kernels.json")["rows"]
    (mlp,) = [r for r in rows if r["route"] == "kernels.mlp"]
    sizes = sorted({(r["P"], r["T"]) for r in rows if r["route"] == "analytic"},
                   key=lambda s: -s[1])
    lines = [_wrap(f"`benchmarks/bench_lif_kernels.py` (entries = input pairs x time pairs of "
                   f"`K(X, X)`, NNGP + SG-NTK, one hidden layer, readout sum; measured in one run "
                   f"next to `kernels.mlp` at {mlp['rate'] / 1e6:.2f} M pair-layers/s (N = "
                   f"{mlp['n']}, depth {mlp['depth']}) on the shared 2-core machine; "
                   "the analytic rows were measured on the first P' inputs, see "
                   "`benchmarks/results/bench_lif_kernels.txt`):"), "",
             "| route | " + " | ".join(f"P = {p}, T = {t}: M entries/s (x mlp)" for p, t in sizes)
             + " |", "|---|" + "---|" * len(sizes)]
    keys = []
    for r in rows:
        if r["route"] == "kernels.mlp":
            continue
        k = (r["route"], r.get("shape", ""))
        if k not in keys:
            keys.append(k)
    for route, shape in keys:
        cells = []
        for p, t in sizes:
            sel = [r for r in rows if r["route"] == route and r.get("shape", "") == shape
                   and r.get("T") == t and (r["route"] == "reference" or r["P"] == p)]
            cells.append(f"{sel[0]['rate'] / 1e6:.3g} ({sel[0]['ratio_to_mlp']:.3g})" if sel
                         else "–")
        label = {"analytic": "analytic",
                 "reference": "before issue 9 (measured on P' = " + ", ".join(
                     sorted({str(r["P"]) for r in rows if r["route"] == route
                             and r.get("shape") == shape})) + ")"}.get(route, route)
        lines.append(f"| {label} `{shape}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def lif_depth(root) -> str:
    """Conditioning of the deep LIF SG-NTK (experiments/lif_depth/results/summary.json)."""
    d = _load(root, "experiments", "lif_depth", "results", "summary.json")
    rows, cfg = d["rows"], d["config"]
    shapes = sorted({r["shape"] for r in rows})
    depths = sorted({r["depth"] for r in rows})
    parts = []
    for s in shapes:
        def cond(depth, s=s):
            return [r["cond"] for r in rows if r["shape"] == s and r["depth"] == depth]
        neg = sorted({(r["depth"], r["sharpness"]) for r in rows
                      if r["shape"] == s and r["eig_min_real"] <= 0})
        best = min((r for r in rows if r["shape"] == s), key=lambda r: r["cond"])
        parts.append(f"{s}: condition number {_span(cond(depths[0]), '{:.3g}', '')} at depth "
                     f"{depths[0]} and {_span(cond(depths[-1]), '{:.3g}', '')} at depth "
                     f"{depths[-1]} over sharpness {min(cfg['sharpness']):g}–"
                     f"{max(cfg['sharpness']):g}, lowest ({best['cond']:.3g}) at depth "
                     f"{best['depth']}, sharpness {best['sharpness']:g}; "
                     + ("all eigenvalues have positive real parts" if not neg else
                        "eigenvalues with real part <= 0 at (depth, sharpness) " +
                        ", ".join(f"({a}, {b:g})" for a, b in neg)))
    inp, net = cfg["inputs"], cfg["network"]
    text = (f"`python experiments/lif_depth/run.py` (P = {inp['P']} Bernoulli spike trains, "
            f"T = {inp['T']}, {inp['n_in']} channels; tau_mem = {net['tau_mem']:g}, tau_syn = "
            f"{net['tau_syn']:g}, threshold {net['threshold']:g}, sigma_w = {net['sigma_w']:g}, "
            f"sigma_b = {net['sigma_b']:g}; exact delta true derivative) measures the SG-NTK "
            f"K(X, X) at depths {depths[0]}–{depths[-1]}: " + "; ".join(parts) +
            ". JSON in `experiments/lif_depth/results/summary.json`, figure "
            "`paper_figs/lif_depth/lif_depth.png`.")
    return _wrap(text)


def asgl(root) -> str:
    """Fixed-width SGL vs ASGL over the initial width (paper_figs/asgl/summary.json; issue 11)."""
    d = _load(root, "paper_figs", "asgl", "summary.json")
    tasks = sorted(d["tasks"])
    head = ("| task | width alpha (sharpness) | fixed-width SGL | ASGL "
            "| ASGL learnt alpha (median) | cond J~J~^T at init: SGL / ASGL "
            "| after training: SGL / ASGL |")
    lines = [head, "|" + "---|" * 7]
    n_seeds, sizes = set(), {}
    for task in tasks:
        ent = d["tasks"][task]["entries"]
        for a in sorted({e["alpha0"] for e in ent}, reverse=True):
            by = {e["mode"]: e for e in ent if e["alpha0"] == a}
            sgl, asg = by["sgl"], by["asgl"]
            n_seeds |= {len(sgl["test_accuracy"]), len(asg["test_accuracy"])}
            sizes[task] = (sgl["n_train"], sgl["n_test"])
            last = str(max(int(k) for k in sgl["condition"]["sg_gram"]))
            cs, ca = sgl["condition"]["sg_gram"], asg["condition"]["sg_gram"]
            lines.append(
                f"| {task} | {a:.3g} ({sgl['sharpness0']:.3g}) "
                f"| {sgl['mean']:.3f} ± {sgl['std']:.3f} | {asg['mean']:.3f} ± {asg['std']:.3f} "
                f"| {asg['alpha_final_median']:.3g} | {cs['0']:.3g} / {ca['0']:.3g} "
                f"| {cs[last]:.3g} / {ca[last]:.3g} |")
    rho = {t: d["tasks"][t]["spearman_sgl_accuracy_vs_cond0"] for t in tasks}
    corr = "; ".join(f"{t}: {rho[t]['sg_gram']:+.2f} (J~J~^T), {rho[t]['sgntk']:+.2f} (SG-NTK)"
                     for t in tasks)
    p100 = d["paper"]["cifar100"]
    paper = ", ".join(f"alpha {a:g}: {s:.1f} / {g:.1f} %" for a, s, g in
                      zip(d["paper"]["alpha"], p100["sgl"], p100["asgl"]))
    grid = []
    for t in tasks:
        g = d["tasks"][t]["kernel_grid"]
        for a in (max(r["alpha"] for r in g), min(r["alpha"] for r in g)):
            rs = sorted((r for r in g if r["mode"] == "asgl" and r["alpha"] == a),
                        key=lambda r: r["noise_rate"])
            grid.append(f"{t}, alpha {a:.3g}: " + ", ".join(
                f"p = {r['noise_rate']:g}: {r['cond_sg_gram']:.3g}" for r in rs))
    text = ("Test accuracy of the hard network (mean ± standard deviation over "
            f"{'/'.join(str(n) for n in sorted(n_seeds))} seeds; "
            + ", ".join(f"{t}: {a} training / {b} test examples" for t, (a, b) in sizes.items())
            + "), condition numbers of the surrogate Gram on the probe batch (median over seeds). "
            f"Spearman correlation over widths between fixed-width SGL accuracy and the condition "
            f"number at initialisation: {corr}. The paper (CIFAR-100, SGL / ASGL): "
            f"{paper}. Condition number of the ASGL network's surrogate Gram at initialisation "
            f"vs the spike-mode rate p (median over seeds; p = 1 is fixed-width SGL): "
            + "; ".join(grid) + ". "
            f"Cost: the {d['unit_seconds']['n_training']} training units took "
            f"{d['unit_seconds']['training'] / 60:.0f} min and the "
            f"{d['unit_seconds']['n_kernel_grid']} kernel grids "
            f"{d['unit_seconds']['kernel_grid'] / 60:.0f} min (sum of the units' wall times; "
            "shared 2-core CPU, two processes at a time, with other jobs running).")
    long_path = os.path.join(root, "paper_figs", "asgl", "long", "summary.json")
    if os.path.exists(long_path):
        dl = _load(root, "paper_figs", "asgl", "long", "summary.json")
        parts = []
        for t in sorted(dl["tasks"]):
            ent = dl["tasks"][t]["entries"]
            epochs = max(int(k) for e in ent for k in e["condition"]["sg_gram"])
            for a in sorted({e["alpha0"] for e in ent}, reverse=True):
                by = {e["mode"]: e for e in ent if e["alpha0"] == a}
                per_seed = ", ".join(
                    f"{acc:.2f} at learnt alpha {1 / (4 * b):.2g}" for acc, b in
                    zip(by["asgl"]["test_accuracy"], by["asgl"]["sharpness_final"]))
                parts.append(f"{t}, alpha {a:.3g}: SGL {by['sgl']['mean']:.3f} ± "
                             f"{by['sgl']['std']:.3f}, ASGL {by['asgl']['mean']:.3f} ± "
                             f"{by['asgl']['std']:.3f} (seeds: {per_seed})")
        seeds = sorted({len(e["test_accuracy"]) for t in dl["tasks"]
                        for e in dl["tasks"][t]["entries"]})
        text += (f" Four times longer training ({epochs} epochs, `experiments/asgl/long.json`, "
                 f"{'/'.join(map(str, seeds))} seeds): " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n\n" + _wrap(text)


def qif(root) -> str:
    """LIF vs QIF at matched hyper-parameter budgets (experiments/qif/results/summary.json; issue 11)."""
    d = _load(root, "experiments", "qif", "results", "summary.json")
    cfg, res = d["config"], d["results"]
    ls_cfg = cfg["landscape"]

    def pm(e, fmt="{:.3f}"):
        return fmt.format(e["mean"]) + ("" if e["se"] is None else " ± " + fmt.format(e["se"]))

    lines = ["| task | neuron | chosen lr / beta | test accuracy | hidden spikes / step | "
             "per-example loss jumps | of which spikes only moved | per-example spike-count "
             f"changes | batch-loss jumps > {ls_cfg['large_jump']:g} nats | roughness "
             "| gradient increment ratio |", "|" + "---|" * 11]
    for key in sorted(res):
        r = res[key]
        ls = r["landscape"]
        lines.append(
            f"| {r['task']} | {r['neuron'].upper()} | {r['chosen']['lr']:g} / {r['chosen']['beta']:g} "
            f"| {pm(r['test_accuracy'])} | {r['hidden_rate_per_step']:.3f} "
            f"| {pm(ls['example_jump_frac'])} | {pm(ls['example_shift_frac'])} "
            f"| {pm(ls['example_count_change_frac'])} | {pm(ls['large_jump_frac'])} "
            f"| {pm(ls['roughness'], '{:.1f}')} "
            f"| {pm(ls['grad_incr'], '{:.2g}')} |")
    tr, grid = cfg["train"], cfg["grid"]
    n_lines = sorted({r["n_lines"] for r in res.values()})
    text = (f"`python experiments/qif/run.py` ({tr['n_hidden']} hidden, {tr['epochs']} epochs of "
            f"Adam, batch {tr['batch_size']}, max-over-time readout; the same grid for both "
            f"neurons, lr {grid['lr']} x beta {grid['beta']}, chosen on validation accuracy with "
            f"seed {cfg['select_seed']}, then seeds {cfg['seeds']}; accuracy: mean ± standard error over "
            f"seeds). Landscape (mean ± standard error over lines): "
            f"{'/'.join(str(n) for n in n_lines)} lines (seeds x "
            f"{ls_cfg['n_directions']} random filter-normalised directions in the hidden "
            f"weights) of {ls_cfg['n_points']} points in [-{ls_cfg['radius']:g}, "
            f"{ls_cfg['radius']:g}], cross-entropy on {ls_cfg['n_examples']} test examples; "
            "fractions are per grid step (per-example: per grid step and example). Compute time: "
            f"{d['unit_seconds']['grid'] / 60:.0f} min grid + {d['unit_seconds']['final'] / 60:.0f} "
            "min final runs (summed over units) on the shared 2-core CPU. Units in "
            "`experiments/qif/results/units/`, figure `paper_figs/qif/qif.png`.")
    return "\n".join(lines) + "\n\n" + _wrap(text)


def select_cost(root) -> str:
    """The cost of a ``sgntk select`` grid point (``benchmarks/results/bench_select.json``)."""
    d = _load(root, "benchmarks", "results", "bench_select.json")
    est = d["estimated_default_grid_s"] / 60.0
    verdict = "within" if est < 10.0 else "beyond"
    return _wrap(
        f"* Cost (`python benchmarks/bench_select.py`, `benchmarks/results/bench_select.json`; "
        f"one-hidden-layer LIF network of width {d['width']}, kernels averaged over "
        f"{d['n_networks']} networks, {d['n_samples']} randman samples of T = {d['steps']} steps): "
        f"the first grid point of a surrogate shape and reset {d['first_point_s']:.1f} s "
        f"(compilation included), each further point {d['warm_point_s']:.1f} s, "
        f"{d['warm_over_train']:.2f}x one training run of the same network measured in the "
        f"same process; the default 200-point grid (10 shape/reset signatures) extrapolates to "
        f"{est:.1f} min in one process, {verdict} the 10 minutes aimed at (load average "
        f"{d['load_average'][0]:.1f} on the 2-core machine)." + _select_grid_run(root))


def _select_grid_run(root) -> str:
    """The measured end-to-end default grid (``bench_select.py --full-grid``), if run."""
    path = os.path.join(root, "benchmarks", "results", "bench_select_grid.json")
    if not os.path.exists(path):
        return ""
    g = _load(root, "benchmarks", "results", "bench_select_grid.json")
    verdict = "within" if g["wall_s"] < 600.0 else "beyond"
    return (f" Measured end to end (`python benchmarks/bench_select.py --full-grid --workers "
            f"{g['workers']}`, i.e. `sgntk select --data randman --n-samples {g['n_samples']} "
            f"--workers {g['workers']}`, fresh folder, compilation included): {g['n_points']} "
            f"points in {g['wall_s'] / 60:.1f} min with {g['workers']} local worker processes on "
            f"{g['cpus']} cores, {verdict} the 10 minutes (load average "
            f"{g['load_average_start'][0]:.1f} at start, {g['load_average_end'][0]:.1f} at end).")


# (results folder, task, grid label) of the validation grids, in the order the README lists them
SELECTION_GRIDS = (("selection", "randman", "randman, main grid"),
                   ("selection", "digits", "digits, main grid"),
                   ("selection-blind", "randman", "randman, blind grid 1"),
                   ("selection-blind2", "randman", "randman, blind grid 2"),
                   ("selection-blind2", "digits", "digits, blind grid 2"))


def selection_predictors(root) -> str:
    """The fixed predictors (``validation.PREREGISTERED``) and the baselines on every validation
    grid, with the seeds' noise ceiling (``fixed_predictors``, ``noise_ceiling`` of each
    ``experiments/results/<grid>/<task>/validation.json``)."""
    lines = ["| grid | configs x seeds | seeds' ceiling | conditioning: Spearman vs test accuracy "
             "[95 % CI] | status of conditioning | its best pick: measured rank | "
             "Herranz-Celotti | kernel-fit score |", "|---|---|---|---|---|---|---|---|"]
    for folder, task, label in SELECTION_GRIDS:
        path = os.path.join(root, "experiments", "results", folder, task, "validation.json")
        if not os.path.exists(path):
            continue
        d = _load(root, "experiments", "results", folder, task, "validation.json")
        fp = d.get("fixed_predictors")
        if not fp:
            continue
        c, h = fp["conditioning"], fp["hc_score"]
        fit = d["correlations"]["all"]["score"]["vs_accuracy"]
        nc = d.get("noise_ceiling") or {}
        status = ("preregistered (fresh)" if "conditioning" in d.get("preregistered", [])
                  else "seen before it was fixed")
        lines.append(
            f"| {label} | {d['n_configs']} x {len(d['seeds'])} | "
            + (f"{nc['ceiling']:.2f}" if nc.get("ceiling") == nc.get("ceiling") and nc else "-")
            + f" | {c['vs_accuracy']['rho']:+.2f} [{c['vs_accuracy']['ci95'][0]:+.2f}, "
            f"{c['vs_accuracy']['ci95'][1]:+.2f}] | {status} | {c['best_measured_rank']} of "
            f"{d['n_configs']} | {h['vs_accuracy']['rho']:+.2f} [{h['vs_accuracy']['ci95'][0]:+.2f}"
            f", {h['vs_accuracy']['ci95'][1]:+.2f}] | {fit['rho']:+.2f} |")
    if len(lines) == 2:
        raise ValueError("no experiments/results/selection*/<task>/validation.json with "
                         "fixed_predictors")
    return "\n".join(lines)


BLOCKS = {
    "selection-validation": selection_validation,
    "selection-predictors": selection_predictors,
    "surrogate-shapes": surrogate_shapes,
    "conversion-table": conversion_table,
    "eilers-agreement": eilers_agreement,
    "eilers-paper-values": eilers_paper_values,
    "eilers-fig3-paper": eilers_fig3_paper,
    "randman-accuracy": randman_accuracy,
    "lif-reset-recurrence": lif_reset_recurrence,
    "benchmarks": benchmarks,
    "sharding-scaling": sharding_scaling,
    "lif-kernel-speed": lif_kernel_speed,
    "lif-depth": lif_depth,
    "asgl": asgl,
    "qif": qif,
    "select-cost": select_cost,
}


# ------------------------------------------------------------------------------- README
def _pattern(name):
    return re.compile(rf"(<!-- generated: {re.escape(name)} -->\n)(.*?)(\n<!-- /generated: "
                      rf"{re.escape(name)} -->)", re.DOTALL)


def blocks_in(text: str) -> dict:
    """The current content of every generated block of ``text`` (name -> content)."""
    out = {}
    for name in BLOCKS:
        m = _pattern(name).search(text)
        if m is None:
            raise ValueError(f"README has no block '<!-- generated: {name} -->' ... "
                             f"'<!-- /generated: {name} -->'")
        out[name] = m.group(2)
    return out


def render(root: str = ROOT) -> dict:
    """What every generated block should contain (name -> content), from the results."""
    return {name: fn(root) for name, fn in BLOCKS.items()}


def update(text: str, blocks: dict) -> str:
    """``text`` with each generated block replaced by ``blocks[name]``."""
    blocks_in(text)  # every marker present
    for name, content in blocks.items():
        text = _pattern(name).sub(lambda m, c=content: m.group(1) + c + m.group(3), text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    ap.add_argument("--root", default=ROOT)
    args = ap.parse_args(argv)
    path = os.path.join(args.root, README)
    text = _read(args.root, README)
    new = update(text, render(args.root))
    if args.check:
        if new != text:
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                       "README.md", "generated"))
            return 1
        return 0
    if new != text:
        with open(path, "w") as f:
            f.write(new)
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
