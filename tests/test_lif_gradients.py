"""Issue 13 for LIF: derivatives of the analytic no-reset LIF kernels are finite and exact.

``jax.grad`` (reverse mode: :func:`jax.jacrev`, one gradient per kernel entry) of the NNGP and the SG-NTK of
:func:`sgntk.lif_kernels.lif_kernel_fn` with respect to the surrogate's sharpness and
dampening (and tail for ``q_pseudo_spike``), sigma_w and sigma_b, for every shape in
:data:`sgntk.surrogates.SHAPES`, against central finite differences, entry by entry, on
``K(X, [X; X'])``: it contains ``K(X, X)`` with its diagonal, where the membrane correlation
is exactly 1 and the conditional variance exactly 0 (the infinite partial derivatives there
must not leak), and ``K(X, X')``.

Tolerance: relative 1e-5 per entry (plus 1e-9 of the largest derivative, for entries whose
derivative vanishes, e.g. the dampening derivative of the NNGP). Central differences with step
``h = 1e-4 |p|`` in float64 have truncation error ~h^2 |f'''| ~ 1e-8 relative and rounding error
~1e-16 |f| / h ~ 1e-12, far below it; the remaining difference is the derivative's own error.
The diagonal values are exact (perfect correlation is snapped), not noisy at ~1e-8.
"""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgntk import lif
from sgntk import lif_kernels as LK
from sgntk import surrogates as sg

T, N_IN = 8, 5
RTOL = 1e-5


def _inputs():
    rng = np.random.default_rng(13)
    x = (rng.random((3, T, N_IN)) < np.array([0.2, 0.35, 0.5])[:, None, None]).astype(float)
    xp = (rng.random((2, T, N_IN)) < np.array([0.3, 0.6])[:, None, None]).astype(float)
    return x, np.concatenate([x, xp])      # unequal norms: the SG-NTK is asymmetric


# Readout on two steps only (fewer entries: the quadrature shapes stay fast); same-step pairs
# of one input are the degenerate diagonal, different-step pairs are not.
STEPS = (4, 7)
_FN = LK.lif_kernel_fn(which=("nngp", "sgntk"), steps=STEPS)
_WEIGHTS = np.zeros(T)
_WEIGHTS[list(STEPS)] = (0.7, 1.0)


_FN_GRAM = LK.lif_kernel_fn(which=("sg_gram",), steps=STEPS)


def _kernels(p, shape, x1, x2, fn=_FN, which=("nngp", "sgntk")):
    sur = sg.Surrogate(shape, p["dampening"], p["sharpness"], p.get("tail", 2.0))
    cfg = lif.LIFConfig(tau_mem=10.0, tau_syn=5.0, threshold=0.5, reset="none", surrogate=sur)
    k = fn(x1, x2, cfg, jnp.asarray(_WEIGHTS), p["sigma_w"], p["sigma_b"])
    return jnp.stack([getattr(k, w) for w in which])


def _check_gradients(shape, fn, which, tail=3.0):
    """jacrev of the kernels ``which`` == central differences in every parameter; returns
    the kernels at the base point, ``(len(which), n1, n2)``."""
    x1, x2 = _inputs()
    with jax.enable_x64(True):
        p0 = {k: jnp.float64(v) for k, v in
              dict(sharpness=2.0, dampening=0.8, sigma_w=1.3, sigma_b=0.3).items()}
        if shape == "q_pseudo_spike":
            p0["tail"] = jnp.float64(tail)
        kern = lambda p: _kernels(p, shape, x1, x2, fn, which)      # noqa: E731
        f = jax.jit(kern)
        jac = jax.jit(jax.jacrev(kern))(p0)
        k0 = np.asarray(f(p0))
        for name in p0:
            g = np.asarray(jac[name])                      # (len(which), n1, n2)
            assert np.all(np.isfinite(g)), (shape, name)
            h = 1e-4 * float(p0[name])
            fd = np.asarray(f({**p0, name: p0[name] + h}) - f({**p0, name: p0[name] - h})) / (2 * h)
            if shape == "straight_through" and name == "sharpness":   # psi' = dampening
                np.testing.assert_array_equal(g, 0.0)
                np.testing.assert_array_equal(fd, 0.0)
                continue
            err = np.abs(g - fd) / (np.abs(fd) + 1e-9 * np.abs(fd).max())
            assert err.max() < RTOL, (shape, name, float(err.max()), np.unravel_index(
                err.argmax(), err.shape))
    return k0


# Every shape runs with -m slow; the default run keeps one closed-form and one tabulated shape.
@pytest.mark.parametrize("shape", [s if s in ("gaussian", "fast_sigmoid") else
                                   pytest.param(s, marks=pytest.mark.slow) for s in sg.SHAPES])
def test_kernel_gradients_equal_finite_differences(shape):
    k0 = _check_gradients(shape, _FN, ("nngp", "sgntk"))
    # Sanity: the diagonal of K(X, X) is in the set, and the SG-NTK there is asymmetric.
    assert np.all(np.diag(k0[0][:, :3]) > 0)
    sgn = k0[1][:, :3]
    assert abs(sgn[0, 1] - sgn[1, 0]) > 1e-6 * abs(sgn[0, 1])


# q_pseudo_spike at its default tail q = 2 takes fast_sigmoid's moment table (issue 9) and the
# tail derivative from the scale-mixture sum (custom JVP): the finite differences step to
# q = 2 +- h, off the table, so this checks the table route against the exact one as well.
@pytest.mark.slow
def test_q_pseudo_spike_tabulated_tail_gradient():
    _check_gradients("q_pseudo_spike", _FN, ("nngp", "sgntk"), tail=2.0)


# The surrogate Gram J~ J~^T: on K(X, X)'s same-step pairs of one input the membrane
# correlation is 1 (u = v), where E[psi'(u - theta) psi'(v - theta)] = E[psi'(u - theta)^2].
# Every shape with -m slow (10 s each and more; the default run keeps the NNGP / SG-NTK
# gradient test above).
@pytest.mark.slow
@pytest.mark.parametrize("shape", sg.SHAPES)
def test_sg_gram_gradients_equal_finite_differences(shape):
    k0 = _check_gradients(shape, _FN_GRAM, ("sg_gram",))
    gram = k0[0][:, :3]
    # Symmetric, unlike the SG-NTK, to the routes' accuracy: the bump sum integrates the two
    # sides differently (profile nodes on one, conditional moments on the other), each within
    # 1e-8 of the nested reference quadrature (measured asymmetry: 6e-12 for exponential).
    np.testing.assert_allclose(gram, gram.T, rtol=1e-8)
    assert np.all(np.diag(gram) > 0)


@pytest.mark.slow
def test_sharpness_gradient_vanishes_where_it_must():
    # On a same-time, same-input pair (u = v) E[delta(u - theta) psi'(v - theta)] =
    # p(theta) psi'(0) = p(theta) * dampening: independent of the sharpness. With the readout
    # on the last step only, K(x, x) has that single pair, so its sharpness derivative is 0;
    # off the diagonal it is not.
    x1, _ = _inputs()
    with jax.enable_x64(True):
        fn = LK.lif_kernel_fn(which=("sgntk",), steps=(T - 1,))

        def k(beta):
            sur = sg.get("fast_sigmoid", sharpness=beta, dampening=0.8)
            cfg = lif.LIFConfig(tau_mem=10.0, tau_syn=5.0, threshold=0.5, reset="none",
                                surrogate=sur)
            return fn(x1, x1, cfg, jnp.zeros(T).at[-1].set(1.0), 1.3, 0.3).sgntk

        g = np.asarray(jax.jacrev(k)(jnp.float64(2.0)))
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(np.diag(g), 0.0, atol=1e-14)
    assert np.all(np.abs(g[~np.eye(3, dtype=bool)]) > 1e-6)


def _gradient_at_realistic_size(shape, which, cap_gib=4):
    """``jax.grad`` of the summed kernels ``which`` w.r.t. (sigma_w, sharpness, threshold,
    dampening, tail) at 100 inputs x T = 100 in a subprocess whose address space is capped at
    ``cap_gib`` GiB: finite, and equal to forward mode (``jax.jacfwd``) on the first 10
    inputs to 1e-10. Returns the subprocess's line: seconds, peak MB, the gradient."""
    code = textwrap.dedent(f"""
        import resource, time
        resource.setrlimit(resource.RLIMIT_AS, ({cap_gib} * 2**30, resource.RLIM_INFINITY))
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        from sgntk import lif, lif_kernels as LK, surrogates as sg
        rng = np.random.default_rng(3)
        x = (rng.random((100, 100, 20)) < rng.uniform(0.05, 0.3, (100, 1, 1))).astype(float)
        fn = LK.lif_kernel_fn(which={which!r})

        def loss(p, x):
            cfg = lif.LIFConfig(tau_mem=10.0, tau_syn=5.0, threshold=p[2], reset="none",
                                surrogate=sg.Surrogate({shape!r}, p[3], p[1], p[4]))
            k = fn(x, None, cfg, jnp.ones(100), p[0], 0.3)
            return sum(jnp.sum(getattr(k, w)) for w in {which!r})

        p0 = jnp.array([1.5, 3.0, 0.5, 0.8, 2.0])
        t0 = time.perf_counter()
        g = np.asarray(jax.jit(jax.grad(loss))(p0, x))
        t1 = time.perf_counter()
        assert np.isfinite(g).all(), g
        small = np.asarray(jax.jit(jax.grad(loss))(p0, x[:10]))
        fwd = np.asarray(jax.jit(jax.jacfwd(loss))(p0, x[:10]))
        np.testing.assert_allclose(small, fwd, rtol=1e-10, atol=1e-12 * np.abs(fwd).max())
        print(f"{{t1 - t0:.0f}} s,", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
              "MB,", g)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=7200, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    return res.stdout.strip()


# Realistic size (issue 9; the standards: every shape at hundreds of inputs x T = 100, with
# finite gradients in bounded memory). The kernel's block map is rematerialised
# (jax.checkpoint): without it reverse mode kept ~0.5-1 kB per (input pair, time pair) entry
# (triangular surrogate Gram: 3.5 GB at 24 inputs, over 8 GiB at 40).
@pytest.mark.slow
@pytest.mark.parametrize("shape", sg.SHAPES)
def test_sgntk_gradient_at_realistic_size_under_memory_limit(shape):
    """NNGP + SG-NTK, every shape (the tail derivative of q_pseudo_spike at its tabulated
    q = 2 included)."""
    print(shape, _gradient_at_realistic_size(shape, ("nngp", "sgntk")))


@pytest.mark.slow
@pytest.mark.parametrize("shape", ("triangular", "rectangular"))
def test_sg_gram_gradient_at_realistic_size_under_memory_limit(shape):
    """The surrogate Gram of the compact shapes, whose closed form has its own custom JVP
    (6 float64 per entry). The scale-mixture shapes' Gram takes minutes forward at this size
    (README); its gradients are checked at small size
    (:func:`test_sg_gram_gradients_equal_finite_differences`)."""
    print(shape, _gradient_at_realistic_size(shape, ("sg_gram",)))
