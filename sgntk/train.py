"""Ensembles of finite MLPs trained at once: true gradient descent or surrogate-gradient learning.

The networks are :func:`sgntk.layers.mlp` (the one MLP definition shared with the kernels):
``init`` draws the parameters, ``apply`` with a surrogate is the SGL network (custom-JVP
spikes) and without one the true network. One jitted function trains a whole chunk of
networks: the parameters are ``init`` vmapped over split keys, the steps are a ``lax.scan`` over *record segments*
(a ``fori_loop`` of plain steps between two entries of ``record_steps``, then the test
outputs), and the chunk is ``jax.vmap`` of that over networks. There is no Python loop over
networks or steps; only over chunks (``chunk_size``) to bound memory, and the network keys are
split from ``key`` *before* chunking, so results do not depend on the chunk size
(``tests/test_train.py``).

Network (NTK parameterisation, :mod:`sgntk.layers`) with an output scale ``kappa``::

    f(x) = kappa * layers.mlp(...).apply(params, x)  (``output_scale``; the paper's appendix: 0.2)

i.e. the *whole output* is multiplied by ``kappa`` -- all empirical and analytic kernels of
``f`` are ``kappa**2`` times those of the unscaled network (NNGP, NTK and SG-NTK alike).
Gradients: ``surrogate=None`` differentiates the true network (erf_m nets; for
``sign``/``step`` only the read-out learns); a surrogate (name or
:class:`~sgntk.surrogates.Surrogate`) differentiates the SGL twin (custom-JVP spikes: psi'
replaces phi' in the backward pass). Test: ``tests/test_train.py`` (autodiff == a hand-written
psi' backward pass; vmapped ensemble == per-network loop).

Loss and time (Eilers et al. 2024, Sec. 4): ``L = 1/(2 n) sum_i (f(x_i) - y_i)^2`` (half the
mean squared error over the ``n`` training points), full-batch gradient descent
``theta <- theta - eta grad L`` (``optax.sgd(eta)``, default ``eta = 0.1``) or any optax
optimiser. In the kernel regime step ``k`` is gradient-flow time ``t = k`` with learning rate
``eta`` and ``loss_normalization="mean"`` in :func:`sgntk.predict.gp_predict`
(``df/dt = -eta/n I(x, X) (f(X) - Y)``).
"""
from __future__ import annotations

import functools
import time
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import layers as L
from .empirical import mlp_empirical
from .kernels import KERNELS, MLPKernel
from .surrogates import get as get_surrogate

__all__ = ["EnsembleResult", "network_fn", "train_ensemble", "ensemble_keys"]


class EnsembleResult(NamedTuple):
    """Recorded quantities of an ensemble (numpy arrays; leading axis = network).

    Attributes:
      record_steps: ``(R,)`` the steps at which outputs were recorded (0 = initialisation).
      outputs: ``(N, R, n_test)`` network outputs ``f(x_test)`` at ``record_steps``.
      train_loss: ``(N, R)`` training loss ``1/(2n) sum (f - y)^2`` at ``record_steps``.
      kernels_init: :class:`~sgntk.kernels.MLPKernel` of ``(N, n1, n2)`` arrays at step 0
        (requested kernels only, others None), already multiplied by ``output_scale**2``;
        None if no kernel points were given.
      kernels_final: the same after the last step.
      seconds: wall-clock seconds of the training (compilation included).
    """

    record_steps: np.ndarray
    outputs: np.ndarray
    train_loss: np.ndarray
    kernels_init: Optional[MLPKernel]
    kernels_final: Optional[MLPKernel]
    seconds: float


def ensemble_keys(key, n_networks: int):
    """Per-network keys, split once from ``key`` (network ``i`` gets ``keys[i]`` whatever the chunking)."""
    return jax.random.split(key, n_networks)


def network_fn(*, activation, surrogate=None, m=1.0, sigma_w=1.0, sigma_b=0.0,
               output_scale=1.0):
    """``f(params, x) -> (n,)``: the scaled network whose autodiff gives the training gradient.

    ``params`` are :class:`sgntk.layers.MLPParams`; ``f`` is ``output_scale`` times
    ``layers.mlp(...).apply``: with ``surrogate=None`` the true network (autodiff gives the true
    derivative), otherwise the SGL twin (forward unchanged, psi' in the backward pass).
    """
    sur = None if surrogate is None else get_surrogate(surrogate)

    def f(params, x):
        net = L.mlp(depth=len(params.weights) - 1, activation=activation, surrogate=sur,
                    sigma_w=sigma_w, sigma_b=sigma_b, sharpness=m)
        return output_scale * net.apply(params, x)[..., 0]

    return f


def _train_chunk(keys, x_train, y_train, x_test, kx1, kx2, seg_lengths, hp, sur, ksur, *,
                 in_dim, width, depth, activation, opt, kernels, jump_width, inner_batch):
    """Train ``len(keys)`` networks (vmapped); returns outputs, losses and kernels.

    ``hp`` (m, sigma_w, sigma_b, output_scale) and the surrogates are traced arguments, so
    one compilation serves a whole grid of them (see :func:`_compiled`).
    """
    net = dict(activation=activation, m=hp["m"], sigma_w=hp["sigma_w"],
               sigma_b=hp["sigma_b"], output_scale=hp["output_scale"])
    f_grad = network_fn(surrogate=sur, **net)
    f_true = network_fn(surrogate=None, **net)

    def kernel_fn(p, a, b):
        k = mlp_empirical(p, a, b, activation=activation, surrogate=ksur,
                          sigma_w=hp["sigma_w"], sigma_b=hp["sigma_b"], m=hp["m"],
                          jump_width=jump_width, which=kernels)
        return MLPKernel(*(None if v is None else hp["output_scale"] ** 2 * v for v in k))

    def loss(p):
        return 0.5 * jnp.mean((f_grad(p, x_train) - y_train) ** 2)

    def one(key):
        params = L.mlp(depth=depth, width=width).init(key, in_dim)[1]
        params = jax.tree_util.tree_map(lambda a: a.astype(x_train.dtype), params)
        k0 = kernel_fn(params, kx1, kx2) if kernels else None

        def step(_, carry):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        def segment(carry, n):
            carry = jax.lax.fori_loop(0, n, step, carry)
            p = carry[0]
            return carry, (f_true(p, x_test),
                           0.5 * jnp.mean((f_true(p, x_train) - y_train) ** 2))

        (p, _), (outs, losses) = jax.lax.scan(segment, (params, opt.init(params)), seg_lengths)
        k1 = kernel_fn(p, kx1, kx2) if kernels else None
        return outs, losses, k0, k1

    if inner_batch is None or inner_batch >= keys.shape[0]:
        return jax.vmap(one)(keys)
    # sequential over groups of `inner_batch` vmapped networks: each group runs all its steps
    # while its parameters stay in cache (a full vmap streams every network's weights through
    # memory at every step; at width 500 that is memory-bound on a CPU)
    return jax.lax.map(one, keys, batch_size=inner_batch)


@functools.lru_cache(maxsize=None)
def _sgd(learning_rate):
    return optax.sgd(learning_rate)


@functools.lru_cache(maxsize=128)
def _compiled(in_dim, width, depth, activation, opt, kernels, jump_width, inner_batch):
    """One jitted chunk trainer per static configuration (m, scales, surrogate are traced)."""
    return jax.jit(functools.partial(_train_chunk, in_dim=in_dim, width=width, depth=depth,
                                     activation=activation, opt=opt, kernels=kernels,
                                     jump_width=jump_width, inner_batch=inner_batch))


def train_ensemble(key, x_train, y_train, x_test, *, n_networks: int, width: int,
                   steps: int, depth: int = 2, activation="sign", surrogate=None,
                   m: float = 1.0, sigma_w: float = 1.0, sigma_b: float = 0.1,
                   output_scale: float = 1.0, learning_rate: float = 0.1,
                   optimizer: Optional[optax.GradientTransformation] = None,
                   record_steps: Optional[Sequence[int]] = None,
                   kernel_x1=None, kernel_x2=None,
                   kernels: Sequence[str] = ("sgntk",), kernel_surrogate=None,
                   jump_width: Optional[float] = None, chunk_size: int = 100,
                   inner_batch: Optional[int] = -1, dtype="float32",
                   progress: bool = False) -> EnsembleResult:
    """Train ``n_networks`` independent MLPs on ``(x_train, y_train)`` and record outputs/kernels.

    Args:
      key: PRNG key; network ``i`` is initialised from ``jax.random.split(key, n_networks)[i]``
        (all weights and biases N(0, 1), :func:`sgntk.layers.mlp`'s ``init``).
      x_train: ``(n, d)``; y_train: ``(n,)``; x_test: ``(n_test, d)`` points whose outputs are
        recorded.
      n_networks, width, depth, steps: ensemble size, hidden width, hidden layers L, GD steps.
      activation, m, sigma_w, sigma_b: the network (:func:`sgntk.kernels.mlp` conventions;
        default the paper's ``sigma_w = 1``, ``sigma_b = 0.1``).
      surrogate: None -> true gradients; a surrogate name/:class:`Surrogate` -> SGL.
      output_scale: kappa, multiplies the network output (module docstring).
      learning_rate: eta of the default ``optax.sgd`` (ignored if ``optimizer`` is given).
      optimizer: any optax ``GradientTransformation`` (full batch, one update per step).
      record_steps: increasing steps in ``[0, steps]`` at which test outputs and the training
        loss are recorded (default ``[0, steps]``).
      kernel_x1, kernel_x2: if given, the empirical kernels ``kernels`` between them
        (:func:`sgntk.empirical.mlp_empirical`, e.g. ``("ntk",)`` or ``("sgntk",)``) are
        recorded at step 0 and at the end, times ``output_scale**2``.
      kernel_surrogate: psi' of the kernel's surrogate side (default ``surrogate``, else erf).
      jump_width: smoothed Dirac true derivative for sign/step nets (see ``mlp_empirical``).
      chunk_size: networks trained at once (memory ~ chunk_size x parameters x optimiser
        state); the last chunk is padded so one compilation serves all chunks.
      inner_batch: networks vmapped together *inside* a chunk; the chunk loops over such
        groups (``jax.lax.map(..., batch_size=inner_batch)``) so a group's weights stay in
        cache for all its steps. ``None``: vmap the whole chunk; ``-1`` (default): automatic,
        about 2**19 weights per group (``max(1, 2**19 // width**2)`` networks for depth >= 2).
      dtype: ``"float32"`` (default) or ``"float64"`` (runs under ``jax.enable_x64``).
      progress: tqdm bar over chunks.

    Returns:
      :class:`EnsembleResult`.
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if n_networks < 1 or width < 1 or depth < 1 or steps < 0 or chunk_size < 1:
        raise ValueError(f"need n_networks, width, depth, chunk_size >= 1 and steps >= 0; got "
                         f"{n_networks}, {width}, {depth}, {chunk_size}, {steps}")
    rec = np.asarray([0, steps] if record_steps is None else record_steps, dtype=np.int64)
    if rec.ndim != 1 or rec.size == 0 or np.any(np.diff(rec) < 0) or rec[0] < 0 \
            or rec[-1] > steps:
        raise ValueError(f"record_steps must be non-decreasing within [0, steps={steps}]; "
                         f"got {rec.tolist()}")
    with jax.enable_x64(dtype == "float64"):
        return _train(key, x_train, y_train, x_test, rec, n_networks=n_networks, width=width,
                      steps=steps, depth=depth, activation=activation, surrogate=surrogate,
                      m=m, sigma_w=sigma_w, sigma_b=sigma_b, output_scale=output_scale,
                      learning_rate=learning_rate, optimizer=optimizer, kernel_x1=kernel_x1,
                      kernel_x2=kernel_x2, kernels=tuple(kernels),
                      kernel_surrogate=kernel_surrogate, jump_width=jump_width,
                      chunk_size=chunk_size, inner_batch=inner_batch, dtype=dtype,
                      progress=progress)


def _train(key, x_train, y_train, x_test, rec, *, n_networks, width, steps, depth,
           activation, surrogate, m, sigma_w, sigma_b, output_scale, learning_rate, optimizer,
           kernel_x1, kernel_x2, kernels, kernel_surrogate, jump_width, chunk_size,
           inner_batch, dtype, progress):
    t0 = time.perf_counter()
    dt = jnp.dtype(dtype)
    x_train = jnp.asarray(x_train, dt)
    y_train = jnp.asarray(y_train, dt)
    x_test = jnp.asarray(x_test, dt)
    if x_train.ndim != 2 or y_train.shape != (x_train.shape[0],) or x_test.ndim != 2 \
            or x_test.shape[1] != x_train.shape[1]:
        raise ValueError(f"shapes: x_train {x_train.shape} must be (n, d), y_train "
                         f"{y_train.shape} (n,), x_test {x_test.shape} (n_test, d)")
    opt = optimizer if optimizer is not None else _sgd(float(learning_rate))
    if kernel_x1 is not None:
        bad = [k for k in kernels if k not in KERNELS]
        if bad or not kernels:
            raise ValueError(f"kernels must be a non-empty subset of {KERNELS}; got {kernels}")
        kx1 = jnp.asarray(kernel_x1, dt)
        kx2 = kx1 if kernel_x2 is None else jnp.asarray(kernel_x2, dt)
    else:
        kernels = ()
        kx1 = kx2 = jnp.zeros((1, x_train.shape[1]), dt)
    cast = lambda s: None if s is None else jax.tree_util.tree_map(  # noqa: E731
        lambda v: jnp.asarray(v, dt), get_surrogate(s))
    sur = cast(surrogate)
    ksur = cast(kernel_surrogate or surrogate or "erf")
    hp = {k: jnp.asarray(v, dt) for k, v in dict(m=m, sigma_w=sigma_w, sigma_b=sigma_b,
                                                 output_scale=output_scale).items()}
    seg = jnp.asarray(np.diff(np.concatenate([[0], rec])), jnp.int32)
    if inner_batch == -1:
        n_w = width * width if depth >= 2 else width * (x_train.shape[1] + 2)
        inner_batch = max(1, 2 ** 19 // n_w)
    fn = _compiled(x_train.shape[1], width, depth, activation, opt, tuple(kernels),
                   None if jump_width is None else float(jump_width),
                   None if inner_batch is None else int(inner_batch))
    keys = ensemble_keys(key, n_networks)
    chunk = min(chunk_size, n_networks)
    n_chunks = -(-n_networks // chunk)
    it = range(n_chunks)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=f"train n={width} x{n_networks}", leave=False)
    parts = []
    for c in it:
        ks = keys[c * chunk:(c + 1) * chunk]
        n_real = ks.shape[0]
        if n_real < chunk:  # pad with copies: one compiled shape for every chunk
            ks = jnp.concatenate([ks, jnp.repeat(ks[:1], chunk - n_real, axis=0)])
        out = fn(ks, x_train, y_train, x_test, kx1, kx2, seg, hp, sur, ksur)
        parts.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:n_real], out))
    cat = lambda *xs: np.concatenate(xs)  # noqa: E731
    outs, losses, k0, k1 = jax.tree_util.tree_map(cat, *parts)
    return EnsembleResult(rec, outs, losses, k0, k1, time.perf_counter() - t0)
