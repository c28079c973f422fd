"""sgntk: surrogate-gradient neural tangent kernels for binary and spiking networks.

Modules (one concept each):

* :mod:`sgntk.surrogates`  -- surrogate derivatives psi', custom-JVP spike functions, Gaussian moments
* :mod:`sgntk.conversions` -- snnTorch / SpikingJelly / Norse / stork surrogate names -> sgntk
* :mod:`sgntk.expectations` -- bivariate Gaussian expectations of activations and surrogates
* :mod:`sgntk.kernels`     -- infinite-width NNGP, NTK, SG-NTK and surrogate Gram of MLPs
* :mod:`sgntk.empirical`   -- empirical kernels of finite networks
* :mod:`sgntk.monte_carlo` -- Monte-Carlo kernel estimates with standard errors
* :mod:`sgntk.predict`     -- trained-network distributions under an (asymmetric) kernel
* :mod:`sgntk.stax`        -- neural-tangents layers with SG-NTK kernels (optional dependency)
* :mod:`sgntk.train`       -- ensembles of MLPs trained by GD or SGL (vmap over seeds)
* :mod:`sgntk.lif`, :mod:`sgntk.lif_train`, :mod:`sgntk.data` -- LIF networks, training, data
* :mod:`sgntk.asgl`        -- adaptive smoothing gradient learning (noisy spike, learnt width)
* :mod:`sgntk.lif_kernels` -- LIF kernels: empirical, analytic (no reset), Monte Carlo (reset)
* :mod:`sgntk.runner`      -- resumable units of work (atomic files, config hashes, executors)
* :mod:`sgntk.sharding`    -- kernel tiles on every device (rows sharded) or streamed to disk
* :mod:`sgntk.diagnostics` -- SG-NTK spectrum, kernel-predicted training, backward gain, Herranz-Celotti
* :mod:`sgntk.select`      -- rank surrogates and initialisations by the diagnostics (``sgntk select``)

Not imported here: :mod:`sgntk.plotting` (optional figures, needs matplotlib), :mod:`sgntk.cli`
(``sgntk demo``, ``sgntk reproduce <study>``; the studies live in ``experiments/`` of the
checkout).

Importing sgntk changes no JAX setting: kernel entry points run in float64 internally.
"""
from . import (asgl, conversions, data, diagnostics, empirical, expectations, kernels, lif,
               lif_kernels, lif_train, monte_carlo, predict, runner, select, sharding,
               surrogates, train)

__version__ = "0.1.0"
__all__ = ["asgl", "conversions", "data", "diagnostics", "empirical", "expectations", "kernels",
           "lif", "lif_kernels", "lif_train", "monte_carlo", "predict", "runner", "select",
           "sharding", "surrogates", "train"]
