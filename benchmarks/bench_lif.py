"""LIF forward+backward throughput: sgntk.lif vs snnTorch and Spyx, CPU.

    python benchmarks/bench_lif.py [--batch 250] [--T 100] [--n-in 20] [--hidden 100]
                                   [--n-out 10] [--repeat 7] [--threads 2]

Same network in both libraries: ``n_in -> hidden`` current-based LIF (snnTorch
``Synaptic(alpha=b_syn, beta=b_mem)``, reset by subtraction, reset detached -- snnTorch's
default -- and ``sgntk.lif.LIFConfig(reset="subtract", detach_reset=True)``) -> ``n_out``
leaky non-spiking readout (snnTorch ``Synaptic(alpha=b_syn, beta=b_ro,
reset_mechanism="none")`` membrane; :func:`sgntk.lif.readout_layer`), max over time,
cross-entropy, gradients of all weights. Surrogate fast_sigmoid: snnTorch ``slope = 10``
equals sgntk ``fast_sigmoid(sharpness=5)`` (``1 / (10 |x| + 1)^2``, see
:mod:`sgntk.conversions`). The two libraries' membrane updates differ by snnTorch's missing
``(1 - beta)`` input factor and one step of delay: the same operations per step, so the
throughput comparison is fair. float32 on both sides.

Timings: forward+backward of one batch (compilation / warm-up excluded), ``--repeat``
repetitions of every variant, interleaved round robin (load changes of the shared machine
hit all variants alike), median reported; per-sample time = batch time / batch. sgntk is
timed through the public API ``snn_apply`` on the whole batch (one ``lax.scan`` over time,
batched matmuls), through ``jax.vmap(snn_apply)`` over single examples, through ``lif_cell``
in a ``lax.scan(..., unroll=4)`` (the inner loop, vmapped over the batch), and through the
route ``snn_apply`` took before issue 12 (``lif_layer`` then ``readout_layer`` per example,
vmapped: the baseline of the change, measured in the same run); all four give the same loss
(asserted). snnTorch is timed in
two styles: ``tutorial`` (both ``nn.Linear`` layers inside the time loop, as in the snnTorch
tutorials) and ``hoisted`` (input projection for all steps at once before the loop,
readout projection after it; only the neuron updates loop over time) -- the ratio is
reported against the fastest. Each is timed at ``torch.set_num_threads(n)`` for every ``n``
in ``--threads`` (default 2 and 1: on a loaded 2-core machine torch's 2-thread intra-op pool
can be several times slower than 1 thread); JAX uses the same cores (XLA's CPU thread
pool). The machine is shared: the load average is printed.

Spyx (the JAX SNN library; ``spyx.nn.CuBaLIF`` hidden layer with ``spyx.axn.superspike(k=10)``
= the same fast-sigmoid surrogate, ``flax.nnx.Linear`` projections without bias, run by
``spyx.nn.run`` -- a ``lax.scan`` over time, time-major -- jitted ``jax.value_and_grad`` of the
split nnx state) is the JAX peer. Spyx has no non-spiking current-based readout, so the
readout is a 6-line ``nnx.Module`` with CuBaLIF's update minus the spike
(``I = alpha I + x; V = beta V + I``). Its neuron updates are snnTorch's (no ``(1 - beta)``
input factor); same weights as sgntk.

snnTorch and Spyx are optional dependencies of this benchmark only (``pip install -e
".[bench]"``); without them only the sgntk numbers are printed.
"""
import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sgntk import lif
from sgntk import surrogates as sg


def sgntk_runners(x, y, args):
    """``{name: run}`` for sgntk.lif, and the hidden firing rate."""
    cfg = lif.LIFConfig(reset="subtract", detach_reset=True, readout="max",
                        surrogate=sg.get("fast_sigmoid", sharpness=5.0))
    params = lif.init_snn(jax.random.PRNGKey(0), args.n_in, args.hidden, args.n_out,
                          init="gaussian", config=cfg, sigma_w=3.0)
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def xent(logits, yb):
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def loss_apply(p, xb, yb):          # the public API on the batch: one scan over time
        return xent(lif.snn_apply(p, xb, config=cfg).logits, yb)

    def loss_vmap(p, xb, yb):           # the public API vmapped over single examples
        return xent(jax.vmap(lambda s: lif.snn_apply(p, s, config=cfg).logits)(xb), yb)

    def loss_layers(p, xb, yb):         # snn_apply's route before issue 12 (the baseline)
        def one(s):
            h = lif.lif_layer(p.hidden[0], s, config=cfg).spikes
            return lif.reduce_readout(lif.readout_layer(p.readout, h, config=cfg), "max")
        return xent(jax.vmap(one)(xb), yb)

    def forward_cell(p, s):             # the cell API in a scan unrolled 4x, one example
        n = p.hidden[0].w_in.shape[1]
        st0 = lif.LIFState(jnp.zeros((n,), s.dtype), jnp.zeros((n,), s.dtype))
        _, (spk, _) = jax.lax.scan(lambda st, xs: lif.lif_cell(p.hidden[0], st, xs, config=cfg),
                                   st0, s, unroll=4)
        return lif.readout_layer(p.readout, spk, config=cfg).max(0)

    def loss_cell(p, xb, yb):
        return xent(jax.vmap(lambda s: forward_cell(p, s))(xb), yb)

    runners = {}
    for name, loss in (("snn_apply", loss_apply), ("vmap(snn_apply)", loss_vmap),
                       ("lif_cell, unroll 4", loss_cell), ("old layer route", loss_layers)):
        step = jax.jit(jax.value_and_grad(loss))

        def run(step=step):
            val, g = step(params, xj, yj)
            jax.block_until_ready(g)
            return val

        runners[name] = run
    vals = [float(r()) for r in runners.values()]
    assert max(vals) - min(vals) < 1e-4 * max(1.0, abs(vals[0])), vals
    rate = float(jnp.mean(lif.snn_apply(params, xj, config=cfg).spikes[0]))
    return runners, rate, params


def spyx_runner(x, y, args, params):
    """Spyx 1.x (flax.nnx): Linear -> CuBaLIF -> Linear -> current-based leaky readout."""
    import spyx
    import spyx.nn as snn
    from flax import nnx

    cfg = lif.LIFConfig()
    b_syn = float(lif.decay(cfg.tau_syn, cfg.dt))
    b_mem = float(lif.decay(cfg.tau_mem, cfg.dt))
    b_ro = float(lif.decay(cfg.tau_readout, cfg.dt))

    class CuBaLI(nnx.Module):  # CuBaLIF's update without spike and reset (non-spiking readout)
        def __init__(self, n, alpha, beta):
            self.n, self.alpha, self.beta = n, alpha, beta

        def __call__(self, x, vi):
            v, i = jnp.split(vi, 2, -1)
            i = self.alpha * i + x
            v = self.beta * v + i
            return v, jnp.concatenate([v, i], -1)

        def initial_state(self, batch_size):
            return jnp.zeros((batch_size, 2 * self.n))

    rngs = nnx.Rngs(0)
    fc1 = nnx.Linear(args.n_in, args.hidden, use_bias=False, rngs=rngs)
    fc2 = nnx.Linear(args.hidden, args.n_out, use_bias=False, rngs=rngs)
    fc1.kernel[...] = jnp.asarray(params.hidden[0].w_in)  # the same weights as sgntk
    fc2.kernel[...] = jnp.asarray(params.readout.w)
    model = snn.Sequential(fc1, snn.CuBaLIF((args.hidden,), alpha=b_syn, beta=b_mem,
                                            activation=spyx.axn.superspike(k=10), rngs=rngs),
                           fc2, CuBaLI(args.n_out, b_syn, b_ro))
    graphdef, state = nnx.split(model)
    xt = jnp.asarray(np.swapaxes(x, 0, 1))  # time-major, spyx.nn.run's default
    yj = jnp.asarray(y)

    def loss(st):
        out, _ = snn.run(nnx.merge(graphdef, st), xt)
        return optax.softmax_cross_entropy_with_integer_labels(out.max(0), yj).mean()

    step = jax.jit(jax.value_and_grad(loss))

    def run():
        val, g = step(state)
        jax.block_until_ready(g)
        return val

    return run


def snntorch_runner(x, y, args, style):
    import snntorch as snn
    import torch
    from snntorch import surrogate

    torch.manual_seed(0)
    cfg = lif.LIFConfig()
    b_syn = float(lif.decay(cfg.tau_syn, cfg.dt))
    b_mem = float(lif.decay(cfg.tau_mem, cfg.dt))
    b_ro = float(lif.decay(cfg.tau_readout, cfg.dt))
    spike_grad = surrogate.fast_sigmoid(slope=10)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(args.n_in, args.hidden, bias=False)
            self.lif1 = snn.Synaptic(alpha=b_syn, beta=b_mem, spike_grad=spike_grad,
                                     reset_mechanism="subtract")
            self.fc2 = torch.nn.Linear(args.hidden, args.n_out, bias=False)
            self.ro = snn.Synaptic(alpha=b_syn, beta=b_ro, spike_grad=spike_grad,
                                   reset_mechanism="none")
            with torch.no_grad():
                self.fc1.weight.normal_(0.0, 3.0 / np.sqrt(args.n_in))

        def forward(self, xb):  # xb: (T, B, n_in)
            syn1, mem1 = self.lif1.init_synaptic()
            syn2, mem2 = self.ro.init_synaptic()
            mems = []
            if style == "tutorial":
                for t in range(xb.shape[0]):
                    spk1, syn1, mem1 = self.lif1(self.fc1(xb[t]), syn1, mem1)
                    _, syn2, mem2 = self.ro(self.fc2(spk1), syn2, mem2)
                    mems.append(mem2)
            else:
                # unbind, not cur[t]: indexing a grad-requiring tensor costs a full-size
                # zero tensor per step in the backward pass (O(T^2) memory traffic).
                spikes = []
                for c in self.fc1(xb).unbind(0):          # input projection, all steps at once
                    spk1, syn1, mem1 = self.lif1(c, syn1, mem1)
                    spikes.append(spk1)
                for c in self.fc2(torch.stack(spikes)).unbind(0):
                    _, syn2, mem2 = self.ro(c, syn2, mem2)
                    mems.append(mem2)
            return torch.stack(mems).max(0).values

    net = Net()
    xt = torch.tensor(np.swapaxes(x, 0, 1), dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    lossf = torch.nn.CrossEntropyLoss()

    def run():
        net.zero_grad(set_to_none=True)
        loss = lossf(net(xt), yt)
        loss.backward()
        return loss.item()

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--n-in", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--n-out", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--threads", default="2,1",
                    help="comma-separated torch.set_num_threads values to time (best is used)")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    x = (rng.random((args.batch, args.T, args.n_in)) < 0.05).astype(np.float32)
    y = rng.integers(0, args.n_out, args.batch)
    print(f"network {args.n_in} -> {args.hidden} LIF -> {args.n_out} leaky readout, "
          f"T = {args.T}, batch {args.batch}, fast_sigmoid, forward+backward, float32")
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}, "
          f"jax {jax.__version__}")
    runners, rate, params = sgntk_runners(x, y, args)
    runners = {f"sgntk.lif {k}": (v, None) for k, v in runners.items()}
    try:
        import spyx
        from importlib.metadata import version
        runners[f"Spyx {version('spyx')} CuBaLIF"] = (spyx_runner(x, y, args, params), None)
    except ImportError:
        spyx = None
        print("spyx not installed: `pip install spyx` to compare")
    try:
        import snntorch
        import torch
    except ImportError:
        snntorch = None
        print("snntorch not installed: `pip install snntorch` to compare")
    if snntorch is not None:
        for threads in [int(v) for v in str(args.threads).split(",")]:
            for style in ("tutorial", "hoisted"):
                runners[f"snnTorch {snntorch.__version__} {style}, {threads} thr"] = (
                    snntorch_runner(x, y, args, style), threads)
    # Warm up everything, then time interleaved (round robin) so that load changes of the
    # shared machine hit all variants alike.
    times = {k: [] for k in runners}
    for rep in range(args.repeat + 1):
        for name, (run, threads) in runners.items():
            if threads is not None:
                torch.set_num_threads(threads)
            t0 = time.perf_counter()
            run()
            if rep:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, t in med.items():
        print(f"{k:34s} median {t * 1e3:8.2f} ms/batch {t / args.batch * 1e6:8.1f} us/sample "
              f"(min {min(times[k]) * 1e3:7.2f} ms)  runs (ms) {[round(v * 1e3, 1) for v in times[k]]}")
    print(f"hidden firing rate {rate:.3f} per neuron and step")
    jx = {k: t for k, t in med.items() if k.startswith("sgntk")}
    st = {k: t for k, t in med.items() if k.startswith("snnTorch")}
    sp = {k: t for k, t in med.items() if k.startswith("Spyx")}
    api = jx["sgntk.lif snn_apply"]
    print(f"snn_apply (batch) vs its route before issue 12 (vmapped lif_layer + readout_layer): "
          f"{jx['sgntk.lif old layer route'] / api:.2f}x faster; vs lif_cell inner loop: "
          f"{jx['sgntk.lif lif_cell, unroll 4'] / api:.2f}x")
    if st:
        bj, bs = min(jx, key=jx.get), min(st, key=st.get)
        print(f"speed-up, best vs best: {st[bs] / jx[bj]:.2f}x  ({bj}: {jx[bj] / args.batch * 1e6:.1f} "
              f"us/sample; {bs}: {st[bs] / args.batch * 1e6:.1f} us/sample)")
        print(f"speed-up of snn_apply (batch) vs best snnTorch: {st[bs] / api:.2f}x;  "
              f"best vs best on minima: "
              f"{min(min(times[k]) for k in st) / min(min(times[k]) for k in jx):.2f}x")
    if sp:
        (ks,) = sp
        print(f"speed-up of snn_apply (batch) vs Spyx: {sp[ks] / api:.2f}x "
              f"(Spyx {sp[ks] / args.batch * 1e6:.1f} us/sample)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
