"""Surrogate-gradient learning (BPTT) of LIF networks with optax; the randman benchmark.

Loss per minibatch (``B`` examples, hidden spike counts ``c_bi = sum_n S_i[n]`` per example)::

    L = CE(softmax(logits), label)                                    # logits: readout over time
        + lower_strength * mean_i relu(lower_threshold - mean_b c_bi)^2   # silent-neuron penalty
        + upper_strength * mean_b relu(mean_i c_bi - upper_threshold)^2   # population-rate cap

(the lower bound acts per neuron, the upper bound on each example's mean count, as the
``LowerBoundL2`` / ``UpperBoundL2`` activity regularisers of stork, Rossbroich et al. 2022).
Gradients are BPTT through :func:`sgntk.lif.snn_apply` on the whole minibatch (one
``lax.scan`` over time with batched matmuls, no per-example ``vmap``); the spike
nonlinearity's derivative is the configured surrogate. One epoch (shuffle + all minibatch updates) is a single jitted
``lax.scan``.

:func:`train_randman` runs the reference setup (Zenke & Vogels 2021; reference notes
section 6) and writes ``summary.json`` atomically. Tests: ``tests/test_lif.py``.

``TrainConfig(mode="asgl")`` trains by adaptive smoothing gradient learning instead
(:mod:`sgntk.asgl`; Wang et al. 2023): the same loss on the noisy dual-mode network (spike
mode with probability ``asgl_noise_rate`` per neuron and step, the smooth step ``G`` of the
configured surrogate shape otherwise), one learnable inverse width per hidden layer
(initialised at the configured sharpness) updated by its own Adam (``asgl_width_lr``) next to
the weights' optimiser, and validation/test on the hard network. ``mode="sgl"`` (default) is
the fixed-width surrogate-gradient learning above, unchanged. Tests: ``tests/test_asgl.py``.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import asgl as _asgl
from . import data as _data
from . import lif as _lif
from . import surrogates as _sg
from ._util import check_positive, versions, write_json

__all__ = ["TrainConfig", "TrainState", "MODES", "make_lif_config", "loss_fn", "asgl_loss_fn",
           "validate", "train", "evaluate", "train_randman", "write_json_atomic"]

MODES = ("sgl", "asgl")


@dataclasses.dataclass
class TrainConfig:
    """Everything a randman/SGL run depends on (JSON round-trips via ``asdict``/``from_dict``).

    ``beta`` is SuperSpike's beta in the reference's convention, ``psi'(x) = 1 / (beta|x| + 1)^2``
    for ``surrogate="fast_sigmoid"``; it is passed to :func:`sgntk.surrogates.get` as
    ``sharpness = beta / 2`` (sgntk's profile is ``1/(1 + 2u)^2``). For other shapes
    ``sharpness = beta`` is passed unchanged.

    ``mode``: ``"sgl"`` (fixed-width surrogate gradient, default) or ``"asgl"`` (module
    docstring; the sharpness above is the initial inverse width of every hidden layer,
    ``dampening`` must stay 1 since ASGL's gradient is ``G'``, and ``surrogate`` must have a
    smooth step, i.e. not ``straight_through``). ``asgl_noise_rate``: probability of the spike
    mode in [0, 1] (the public code's ``--p`` is ``1 - asgl_noise_rate``); ``asgl_width_lr`` >
    0: Adam learning rate of the widths (public code: 3e-4); ``asgl_width_param``:
    ``"inverse"`` (the public code's raw ``1/alpha``) or ``"log"`` (:mod:`sgntk.asgl`).
    """

    # data (randman)
    nb_classes: int = 10
    nb_units: int = 20
    nb_steps: int = 100
    dim_manifold: int = 1
    alpha: float = 1.0
    nb_samples: int = 1000
    step_frac: float = 1.0
    data_seed: int | None = None  # None: same as seed
    # network
    n_hidden: int = 100
    recurrent: bool = False
    tau_mem: float = 10.0
    tau_syn: float = 5.0
    tau_readout: float = 20.0
    threshold: float = 1.0
    dt: float = 1.0
    reset: str = "zero"
    detach_reset: bool = True
    readout: str = "max"
    neuron: str = "lif"           # "lif" or "qif" (sgntk.lif.LIFConfig.neuron)
    v_peak: float | None = None   # QIF divergence cut-off; None: +inf (spike at the divergence)
    v_reset: float | None = None  # QIF reset value; None: -inf
    surrogate: str = "fast_sigmoid"
    beta: float = 10.0
    dampening: float = 1.0
    tail: float | None = None     # q of q_pseudo_spike (> 1); None: its default q = 2
    # init
    init: str = "fluctuation"
    target_mean: float = 0.0
    xi: float = 2.0  # threshold distance from the free-membrane mean, in stds
    sigma_w: float = 1.0  # for init="gaussian"
    sigma_out: float = 1.0
    hidden_rate: float = 0.02  # assumed hidden rate (per dt) for deeper/recurrent weights
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-2
    batch_size: int = 250
    epochs: int = 60
    lower_strength: float = 1.0
    lower_threshold: float = 1.0  # spikes per neuron per example (batch average)
    upper_strength: float = 0.0
    upper_threshold: float = 10.0  # mean spikes per neuron per example
    seed: int = 0
    # adaptive smoothing gradient learning (mode="asgl")
    mode: str = "sgl"
    asgl_noise_rate: float = 0.8
    asgl_width_lr: float = 3e-4
    asgl_width_param: str = "inverse"

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**d)


class TrainState(NamedTuple):
    params: _lif.SNNParams
    opt_state: Any
    key: jax.Array


def make_lif_config(cfg: TrainConfig) -> _lif.LIFConfig:
    """The :class:`sgntk.lif.LIFConfig` of a :class:`TrainConfig` (validated)."""
    name = _sg.canonical_shape(cfg.surrogate)
    sharp = cfg.beta / 2.0 if name == "fast_sigmoid" else cfg.beta
    sur = _sg.get(name, sharpness=sharp, dampening=cfg.dampening, tail=cfg.tail)
    return _lif.LIFConfig(tau_mem=cfg.tau_mem, tau_syn=cfg.tau_syn, tau_readout=cfg.tau_readout,
                          threshold=cfg.threshold, dt=cfg.dt, surrogate=sur, reset=cfg.reset,
                          detach_reset=cfg.detach_reset, readout=cfg.readout,
                          neuron=cfg.neuron,
                          v_peak=float("inf") if cfg.v_peak is None else cfg.v_peak,
                          v_reset=float("-inf") if cfg.v_reset is None else cfg.v_reset,
                          ).validate()


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check the training mode and its ASGL fields (ValueError naming the field); return ``cfg``."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {cfg.mode!r}")
    if cfg.mode == "asgl":
        _asgl.check_shape(cfg.surrogate)
        _asgl.check_noise_rate(cfg.asgl_noise_rate)
        check_positive("asgl_width_lr", cfg.asgl_width_lr)
        if cfg.asgl_width_param not in _asgl.WIDTH_PARAMS:
            raise ValueError(f"asgl_width_param must be one of {_asgl.WIDTH_PARAMS}; got "
                             f"{cfg.asgl_width_param!r}")
        if cfg.dampening != 1.0:
            raise ValueError("dampening is not used by mode='asgl' (the gradient is G', of unit "
                             f"area); leave it at 1; got dampening={cfg.dampening!r}")
    return cfg


def _optimizer(cfg: TrainConfig):
    opts = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd, "adamax": optax.adamax}
    if cfg.optimizer not in opts:
        raise ValueError(f"optimizer must be one of {sorted(opts)}; got {cfg.optimizer!r}")
    return opts[cfg.optimizer](cfg.lr)


def loss_fn(params, spikes, labels, *, lif_config: _lif.LIFConfig, reg: dict):
    """Mean cross-entropy plus activity regularisers on a batch ``(B, T, n_in)``.

    Returns ``(loss, aux)`` with ``aux = dict(ce, acc, counts)``; ``counts`` are the hidden
    spike counts ``(B, n_hidden)`` of the last hidden layer.
    """
    out = _lif.snn_apply(params, spikes, config=lif_config)  # the batch in one scan
    return _loss_terms(out, labels, reg)


def asgl_loss_fn(params: _asgl.ASGLParams, spikes, labels, key, *, lif_config: _lif.LIFConfig,
                 reg: dict, noise_rate, width_param: str = "inverse"):
    """:func:`loss_fn` on ASGL's noisy dual-mode network (:func:`sgntk.asgl.asgl_apply`, masks
    drawn from ``key``); its gradient is ASGL's for the weights and the widths."""
    out = _asgl.asgl_apply(params, spikes, config=lif_config, noise_rate=noise_rate, key=key,
                           width_param=width_param)
    return _loss_terms(out, labels, reg)


def _loss_terms(out, labels, reg):
    ce = optax.softmax_cross_entropy_with_integer_labels(out.logits, labels).mean()
    counts = out.spikes[-1].sum(axis=1)  # (B, n)
    low = jnp.mean(jax.nn.relu(reg["lower_threshold"] - counts.mean(axis=0)) ** 2)
    up = jnp.mean(jax.nn.relu(counts.mean(axis=1) - reg["upper_threshold"]) ** 2)
    loss = ce + reg["lower_strength"] * low + reg["upper_strength"] * up
    acc = jnp.mean(jnp.argmax(out.logits, -1) == labels)
    return loss, dict(ce=ce, acc=acc, counts=counts)


def _reg(cfg: TrainConfig) -> dict:
    return {k: jnp.float32(getattr(cfg, k)) for k in
            ("lower_strength", "lower_threshold", "upper_strength", "upper_threshold")}


def _make_epoch(cfg: TrainConfig, lif_config, opt, n_train: int):
    bs = min(cfg.batch_size, n_train)
    n_batches = n_train // bs  # drop the ragged last batch (it changes every epoch)
    reg = _reg(cfg)

    def update(carry, idx, xs, ys):
        params, opt_state = carry
        (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(
            params, xs[idx], ys[idx], lif_config=lif_config, reg=reg)
        upd, opt_state = opt.update(g, opt_state, params)
        params = optax.apply_updates(params, upd)
        return (params, opt_state), (loss, aux["ce"], aux["acc"])

    @jax.jit
    def epoch(state: TrainState, xs, ys):
        key, sub = jax.random.split(state.key)
        perm = jax.random.permutation(sub, n_train)[: n_batches * bs].reshape(n_batches, bs)
        (params, opt_state), (loss, ce, acc) = jax.lax.scan(
            lambda c, i: update(c, i, xs, ys), (state.params, state.opt_state), perm)
        return TrainState(params, opt_state, key), dict(loss=loss.mean(), ce=ce.mean(),
                                                          acc=acc.mean())

    return epoch


def _make_asgl_epoch(cfg: TrainConfig, lif_config, opt, wopt, n_train: int):
    """One ASGL epoch: weights by ``opt``, widths by ``wopt`` (own Adam), fresh masks per batch."""
    bs = min(cfg.batch_size, n_train)
    n_batches = n_train // bs
    reg = _reg(cfg)
    p, wp = jnp.float32(cfg.asgl_noise_rate), cfg.asgl_width_param

    def update(carry, inp, xs, ys):
        params, (opt_state, wstate) = carry
        idx, k = inp
        (loss, aux), g = jax.value_and_grad(asgl_loss_fn, has_aux=True)(
            params, xs[idx], ys[idx], k, lif_config=lif_config, reg=reg, noise_rate=p,
            width_param=wp)
        upd, opt_state = opt.update(g.net, opt_state, params.net)
        wupd, wstate = wopt.update(g.width, wstate, params.width)
        params = _asgl.ASGLParams(optax.apply_updates(params.net, upd),
                                  _asgl.project(optax.apply_updates(params.width, wupd), wp))
        return (params, (opt_state, wstate)), (loss, aux["ce"], aux["acc"])

    @jax.jit
    def epoch(state: TrainState, xs, ys):
        key, sub, kmask = jax.random.split(state.key, 3)
        perm = jax.random.permutation(sub, n_train)[: n_batches * bs].reshape(n_batches, bs)
        (params, opt_state), (loss, ce, acc) = jax.lax.scan(
            lambda c, i: update(c, i, xs, ys), (state.params, state.opt_state),
            (perm, jax.random.split(kmask, n_batches)))
        return TrainState(params, opt_state, key), dict(loss=loss.mean(), ce=ce.mean(),
                                                          acc=acc.mean())

    return epoch


def evaluate(params, spikes, labels, *, lif_config, batch_size: int = 1000) -> dict:
    """Accuracy, mean CE and hidden spike statistics on a data set ``(N, T, n_in)``.

    An :class:`sgntk.asgl.ASGLParams` is evaluated on its hard network (the plain SNN)."""
    if isinstance(params, _asgl.ASGLParams):
        params = params.net
    n = len(labels)
    correct, ce_sum, counts = 0.0, 0.0, []
    for s in range(0, n, batch_size):
        c, e, k = _eval_batch(params, jnp.asarray(spikes[s:s + batch_size]),
                              jnp.asarray(labels[s:s + batch_size]), lif_config)
        correct += float(c)
        ce_sum += float(e)
        counts.append(np.asarray(k))
    counts = np.concatenate(counts)  # (N, n_hidden)
    T = spikes.shape[1]
    return dict(accuracy=correct / n, ce=ce_sum / n,
                mean_spikes_per_neuron=float(counts.mean()),
                rate_per_step=float(counts.mean() / T),
                frac_silent_neurons=float(np.mean(counts.sum(0) == 0)))


@jax.jit
def _eval_batch(params, xs, ys, lif_config):
    out = _lif.snn_apply(params, xs, config=lif_config)
    ce = optax.softmax_cross_entropy_with_integer_labels(out.logits, ys).sum()
    return jnp.sum(jnp.argmax(out.logits, -1) == ys), ce, out.spikes[-1].sum(1)


def train(cfg: TrainConfig, splits: _data.Split, *, progress: bool = True, log=None,
          callback=None):
    """Train an SNN on ``splits`` (train/val/test :class:`sgntk.data.SpikeData`).

    ``callback(epoch, params)``, if given, is called with the initial parameters (epoch 0)
    and after every epoch (1, 2, ...).

    Returns:
      ``(params, history)``; ``history`` has per-epoch ``loss``, ``ce``, ``train_acc``
      (running, during the epoch) and ``val_acc``. With ``mode="asgl"``, ``params`` is an
      :class:`sgntk.asgl.ASGLParams` and ``history["sharpness"]`` the per-layer inverse widths
      after each epoch (``train_acc`` is that of the noisy network, ``val_acc`` of the hard one).
    """
    from tqdm.auto import tqdm

    validate(cfg)
    lif_config = make_lif_config(cfg)
    tr = splits.train
    n_in = tr.spikes.shape[2]
    n_out = int(max(tr.labels.max(), splits.test.labels.max())) + 1
    rate = float(tr.spikes.mean())  # input spikes per step per unit
    key = jax.random.key(cfg.seed)
    k_init, k_train = jax.random.split(key)
    params = _lif.init_snn(
        k_init, n_in, cfg.n_hidden, n_out, init=cfg.init, recurrent=cfg.recurrent,
        config=lif_config, rate=rate / cfg.dt, sigma_w=cfg.sigma_w, sigma_out=cfg.sigma_out,
        target_mean=cfg.target_mean, xi=cfg.xi, hidden_rate=cfg.hidden_rate / cfg.dt)
    opt = _optimizer(cfg)
    asgl = cfg.mode == "asgl"
    if asgl:
        params = _asgl.init_params(params, lif_config.surrogate.sharpness, cfg.asgl_width_param)
        wopt = optax.adam(cfg.asgl_width_lr)
        state = TrainState(params, (opt.init(params.net), wopt.init(params.width)), k_train)
        epoch = _make_asgl_epoch(cfg, lif_config, opt, wopt, len(tr.labels))
    else:
        state = TrainState(params, opt.init(params), k_train)
        epoch = _make_epoch(cfg, lif_config, opt, len(tr.labels))
    xs, ys = jnp.asarray(tr.spikes), jnp.asarray(tr.labels)
    hist = dict(loss=[], ce=[], train_acc=[], val_acc=[])
    if asgl:
        hist["sharpness"] = []
    if callback is not None:
        callback(0, state.params)
    bar = tqdm(range(cfg.epochs), disable=not progress, desc=f"seed {cfg.seed}")
    for e in bar:
        state, m = epoch(state, xs, ys)
        val = evaluate(state.params, splits.val.spikes, splits.val.labels, lif_config=lif_config)
        hist["loss"].append(float(m["loss"]))
        hist["ce"].append(float(m["ce"]))
        hist["train_acc"].append(float(m["acc"]))
        hist["val_acc"].append(val["accuracy"])
        if asgl:
            hist["sharpness"].append(np.asarray(_asgl.sharpness(
                state.params.width, cfg.asgl_width_param)).tolist())
        if callback is not None:
            callback(e + 1, state.params)
        bar.set_postfix(loss=f"{hist['loss'][-1]:.3f}", val=f"{val['accuracy']:.3f}")
        if log is not None:
            log(hist)
    return state.params, hist


def write_json_atomic(path, obj) -> None:
    """Deprecated alias of :func:`sgntk._util.write_json` (atomic JSON write)."""
    import warnings
    warnings.warn("sgntk.lif_train.write_json_atomic is deprecated; the summary is written by "
                  "sgntk._util.write_json", DeprecationWarning, stacklevel=2)
    write_json(path, obj)


def train_randman(config: TrainConfig | dict | None = None, *, out_dir=None,
                  progress: bool = True) -> dict:
    """Generate randman data, train, evaluate; return (and write) a summary.

    Args:
      config: :class:`TrainConfig` or a dict of its fields (defaults: the reference setup,
        10 classes x 1000 samples, 20 inputs, 100 steps, 100 hidden, D = 1, alpha = 1,
        800/100/100 per class).
      out_dir: if given, ``out_dir/summary.json`` is written atomically.
    Returns:
      dict with ``config``, ``seed``, ``history`` (per-epoch ``loss``, ``ce``, ``train_acc``,
      ``val_acc``), ``test_accuracy``, ``test`` (CE and hidden spike statistics),
      ``wall_time_s`` (data + training + evaluation) and ``versions``.
    """
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    t0 = time.perf_counter()
    dseed = config.seed if config.data_seed is None else config.data_seed
    ds = _data.randman(nb_classes=config.nb_classes, nb_units=config.nb_units,
                       nb_steps=config.nb_steps, dim_manifold=config.dim_manifold,
                       alpha=config.alpha, nb_samples=config.nb_samples,
                       step_frac=config.step_frac, seed=dseed)
    splits = _data.split(ds, (0.8, 0.1, 0.1), seed=dseed)
    t_data = time.perf_counter() - t0
    params, hist = train(config, splits, progress=progress)
    lif_config = make_lif_config(config)
    test = evaluate(params, splits.test.spikes, splits.test.labels, lif_config=lif_config)
    train_stats = evaluate(params, splits.train.spikes, splits.train.labels, lif_config=lif_config)
    summary = dict(
        config=dataclasses.asdict(config), seed=config.seed, data_seed=dseed,
        sizes=dict(train=len(splits.train.labels), val=len(splits.val.labels),
                   test=len(splits.test.labels)),
        history=hist, test_accuracy=test["accuracy"], final_val_accuracy=hist["val_acc"][-1],
        final_train_accuracy=train_stats["accuracy"], test=test,
        spike_rates=dict(hidden_rate_per_step=test["rate_per_step"],
                         hidden_rate_hz=test["rate_per_step"] / (config.dt * 1e-3),
                         mean_spikes_per_neuron=test["mean_spikes_per_neuron"],
                         frac_silent_neurons=test["frac_silent_neurons"],
                         input_rate_per_step=float(splits.train.spikes.mean())),
        wall_time_s=time.perf_counter() - t0, data_time_s=t_data, versions=versions())
    if out_dir is not None:
        write_json(os.path.join(os.fspath(out_dir), "summary.json"), summary)
    return summary
