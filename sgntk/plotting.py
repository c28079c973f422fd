"""Optional figures (matplotlib is imported lazily, only when a figure is drawn).

Nothing else in sgntk imports matplotlib; ``sgntk demo`` calls :func:`demo_figure` only when
:func:`available` is true (``pip install -e ".[plot]"``). Figures are drawn from saved results
only (``demo_kernels.json``), never recomputed. Checked by ``tests/test_cli.py``.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

__all__ = ["available", "demo_figure", "selection_heatmaps"]


def available() -> bool:
    """True if matplotlib can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except ValueError:  # sys.modules["matplotlib"] is None (blocked)
        return False


def demo_figure(result: dict, path) -> str:
    """Draw the ``sgntk demo`` figure from its results dict (``demo_kernels.json``) to ``path``.

    Left: the SG-NTK ``I_sign(x(0), x(a))`` for several surrogates with the Monte-Carlo
    estimate (+- 2 standard errors); right: ``asinh`` of the naive erf_m NTK, which diverges as
    ``m`` grows, and of the SG-NTK. Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result["curves"]
    grid = np.asarray(c["angles"])
    rows = result["rows"]
    mc = result["monte_carlo"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for s, y in c["sgntk"].items():
        axes[0].plot(grid, y, label=s)
    axes[0].errorbar([r["delta_angle"] for r in rows], [r["mc_mean"] for r in rows],
                     yerr=[2 * r["mc_stderr"] for r in rows], fmt="ko", ms=4,
                     label=f"MC erf' ({mc['n_networks']} nets, n={mc['width']})")
    axes[0].set(xlabel="angle difference", ylabel="I_sign(x(0), x(angle))",
                title="SG-NTK of sign networks by surrogate")
    axes[0].legend(fontsize=7)
    for m, y in c["naive_ntk"].items():
        axes[1].plot(grid, np.arcsinh(y), label=f"naive NTK erf_{m}")
    axes[1].plot(grid, np.arcsinh(c["sgntk"]["erf"]), "k--", label="SG-NTK I_sign")
    axes[1].set(xlabel="angle difference", ylabel="asinh(kernel)",
                title="naive NTK diverges as m grows")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return os.fspath(path)


def selection_heatmaps(rows, out, *, value: str = "score") -> list:
    """Heatmaps of a ``sgntk select`` grid (rows of :func:`sgntk.select.run_grid`) into ``out``.

    One PNG per pair of grid fields that take more than one value (shape, sharpness,
    dampening, tail, sigma_w, threshold, detach_reset, recurrent), the cell colour the best
    ``value`` over the other fields (for the score, whose unit is decades, the colour scale
    spans at most 5 decades below the best cell; the printed values are exact). Returns the
    paths written.
    """
    import itertools

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = [f for f in ("shape", "sharpness", "dampening", "tail", "sigma_w", "threshold",
                          "detach_reset", "recurrent")
              if len({str(r["point"].get(f)) for r in rows}) > 1]
    paths = []
    for fa, fb in itertools.combinations(fields, 2):
        va = sorted({str(r["point"].get(fa)) for r in rows})
        vb = sorted({str(r["point"].get(fb)) for r in rows})
        grid = np.full((len(va), len(vb)), np.nan)
        for r in rows:
            i, j = va.index(str(r["point"].get(fa))), vb.index(str(r["point"].get(fb)))
            grid[i, j] = np.nanmax([grid[i, j], r[value]])
        fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(vb), 1.0 + 0.45 * len(va)))
        lo, hi = np.nanmin(grid), np.nanmax(grid)
        if value == "score":   # decades: keep 5 below the best in colour (-300 = unusable)
            lo = max(lo, hi - 5.0)
        im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=lo, vmax=hi)
        ax.set(xticks=range(len(vb)), xticklabels=vb, yticks=range(len(va)), yticklabels=va,
               xlabel=fb, ylabel=fa, title=f"best {value}")
        for i, j in itertools.product(range(len(va)), range(len(vb))):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="w")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        path = os.path.join(os.fspath(out), f"select_{fa}_{fb}.png")
        os.makedirs(os.fspath(out), exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
