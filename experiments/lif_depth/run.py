"""Conditioning of the LIF SG-NTK vs depth and vs surrogate scale (issue 9).

    python experiments/lif_depth/run.py [--config experiments/lif_depth/config.json]
                                        [--out experiments/lif_depth/results]

``P`` Bernoulli spike trains (rates uniform in [rate_low, rate_high], ``T`` steps, ``n_in``
channels), feed-forward LIF networks without reset of depth 1-4 (NTK parameterisation, readout
``sum``), analytic infinite-width kernels :func:`sgntk.lif_kernels.lif_kernels` (exact Dirac true
derivative). For every (surrogate shape, depth, sharpness) unit the NNGP and the SG-NTK
``K = K(X, X)`` (asymmetric) are computed and summarised by

* ``eig_min_real`` / ``eig_max_abs``: smallest real part and largest modulus of the eigenvalues
  of ``K`` (gradient flow ``df/dt = -K (f - y)`` on the training inputs decays along every
  eigen-direction iff all real parts are > 0);
* ``cond``: 2-norm condition number ``sigma_max / sigma_min`` of ``K``;
* ``sym_eig_min``: smallest eigenvalue of the symmetric part ``(K + K^T)/2``;
* ``nngp_cond``: condition number of the NNGP.

One unit per (shape, depth, sharpness) through :func:`sgntk.runner.map_units` (atomic JSON per
unit, resumable); the summary ``results/summary.json`` collects them. Figure:
``paper_figs/lif_depth.py``.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _inputs(cfg):
    c = cfg["inputs"]
    rng = np.random.default_rng(c["seed"])
    rates = rng.uniform(c["rate_low"], c["rate_high"], c["P"])[:, None, None]
    return (rng.random((c["P"], c["T"], c["n_in"])) < rates).astype(np.float64)


def unit(config):
    """One (shape, depth, sharpness) cell: kernel spectra summary (JSON)."""
    from sgntk import lif
    from sgntk import lif_kernels as LK
    from sgntk import surrogates as sg
    net = config["network"]
    lcfg = lif.LIFConfig(tau_mem=net["tau_mem"], tau_syn=net["tau_syn"],
                         threshold=net["threshold"], reset="none", readout=net["readout"],
                         surrogate=sg.get(config["shape"], sharpness=config["sharpness"]))
    x = _inputs(config)
    k = LK.lif_kernels(x, config=lcfg, depth=config["depth"], sigma_w=net["sigma_w"],
                       sigma_b=net["sigma_b"], sigma_o=net["sigma_o"], which=("nngp", "sgntk"))
    K, G = np.asarray(k.sgntk), np.asarray(k.nngp)
    ev = np.linalg.eigvals(K)
    sv = np.linalg.svd(K, compute_uv=False)
    return dict(shape=config["shape"], depth=config["depth"], sharpness=config["sharpness"],
                eig_min_real=float(ev.real.min()), eig_max_abs=float(np.abs(ev).max()),
                eig_max_imag=float(np.abs(ev.imag).max()), cond=float(sv[0] / sv[-1]),
                sym_eig_min=float(np.linalg.eigvalsh(0.5 * (K + K.T)).min()),
                nngp_cond=float(np.linalg.cond(G)), trace=float(np.trace(K)),
                asymmetry=float(np.linalg.norm(K - K.T) / np.linalg.norm(K)))


def main(argv=None):
    from sgntk._util import versions, write_json
    from sgntk.runner import Unit, map_units
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(HERE, "config.json"))
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    with open(args.config) as fh:
        cfg = json.load(fh)
    base = {k: cfg[k] for k in ("version", "inputs", "network")}
    cells = {(s, d, b) for s in cfg["surrogates"] for d in cfg["depths"]
             for b in cfg["sharpness"]}
    units = [Unit(f"{s}/depth{d}_sharpness{b:g}", unit,
                  dict(base, shape=s, depth=d, sharpness=b), fmt="json")
             for s, d, b in sorted(cells)]
    res = map_units(units, args.out, desc="lif_depth")
    rows = [res.values[u.name] for u in units]
    for r in rows:
        print(f"{r['shape']:<13} depth {r['depth']} sharpness {r['sharpness']:<5g} "
              f"cond {r['cond']:10.3g}  min Re eig {r['eig_min_real']:10.3g}  "
              f"sym min eig {r['sym_eig_min']:10.3g}  NNGP cond {r['nngp_cond']:10.3g}")
    write_json(os.path.join(args.out, "summary.json"),
               dict(config=cfg, rows=rows, versions=versions()))


if __name__ == "__main__":
    main()
