"""Throughput of ensemble training (sgntk.train) at the paper's Fig. 3 shapes.

    python benchmarks/bench_train.py [--width 500] [--nets 32] [--steps 200] [--loop-nets 4]

Measured in one run (compilation excluded, best of ``--repeat``):

* ``vmapped``: :func:`sgntk.train.train_ensemble`, one chunk of ``nets`` networks (vmap over
  networks, ``lax.scan``/``fori_loop`` over steps).
* ``loop_steps``: a per-network Python loop over networks *and* steps, each step one jitted
  SGD update (the straightforward PyTorch-style loop). Timed on ``--loop-nets`` networks and
  scaled to ``nets``.
* ``loop_scan``: a per-network Python loop over networks, each trained by the same scanned
  trainer with ``n_networks=1`` (the strongest loop baseline).
* ``matmul``: dense matmul throughput at the same shapes, a jitted batched
  ``(nets, n_train, width) @ (nets, width, width)``. This is *not* the machine's limit: a
  15-row product does 2 * 15 FLOP per weight it reads (7.5 FLOP/byte in float32), so it is
  bound by how fast the weights arrive, and training at "179 % of matmul" (an earlier run)
  only meant the training loop kept its weights in cache better than this reference did.
* The limits the shapes can hit, measured in the same run (issue 12):

  - ``peak FLOP/s``: a large square GEMM (``--gemm`` x ``--gemm``, float32), the machine's
    compute limit;
  - ``memory bandwidth``: a streaming ``y = a x + b`` over a 256 MiB array (bytes read +
    written / time), the DRAM limit;
  - ``weight-traffic bound``: each step reads the width x width weights for the forward and
    the backward product, reads them and writes them back in the SGD update and writes the
    weight gradient: ``5 * 4 width^2`` bytes per network and step, at the measured bandwidth.

  ``roofline time`` = max(FLOPs / peak FLOP/s, weight bytes / bandwidth) and ``efficiency``
  = roofline time / measured time; above 100 % means the weights stayed in cache (the DRAM
  bound does not apply), and the FLOP bound is the one that counts. The training FLOP count
  per network and step is ``6 n_train width^2`` (forward, backward and weight-gradient
  products of the width x width layer; the O(width) layers are left out).
* Where the vmapped ensemble's time goes: the ``gemm skeleton`` runs only the three
  ``width x width`` products and the SGD update of every step (no activations, surrogates or
  small layers), in two batchings: ``grouped`` as ``train_ensemble`` does it (``lax.map`` over
  groups of ``inner_batch`` networks, each group running all its steps while its weights stay
  in cache; ``inner_batch = max(1, 2**19 // width**2)``) and ``all nets`` (every network as
  one batched-matmul dimension at every step, i.e. plain ``vmap``). The grouped skeleton's
  share of the vmapped time is the share of the big products; the rest is elementwise work
  and the small layers.
* ``batching ceiling`` = per-network scanned loop time / FLOP-roofline time: the largest
  speed-up *any* batching of the networks (vmap, networks as a batched-matmul dimension, or
  one wide block-diagonal product) could give over the per-network loop on this machine.
  ``sgntk.train`` already batches networks as a matmul dimension (``vmap`` of ``x @ W``
  lowers to one batched ``dot_general`` over networks), so when the loop is already near the
  FLOP roofline (width 500) no batching reaches the old 20x goal; at width 20 the loop is
  dominated by per-step overhead and batching pays.

The machine is shared: the load average is printed with the results.
"""
import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sgntk import train as T
from sgntk.empirical import mlp_init


def _best(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--nets", type=int, default=32)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--loop-nets", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--gemm", type=int, default=2048, help="size of the peak-FLOP GEMM")
    args = ap.parse_args(argv)
    w, n, s = args.width, args.nets, args.steps
    a = 2 * np.pi * np.arange(15) / 15 - np.pi
    x = np.stack([np.sin(a), np.cos(a)], 1).astype(np.float32)
    y = (4 * x[:, 0] * x[:, 1] ** 2 + 1.2 * x[:, 1] ** 2).astype(np.float32)
    xt = x[:4]
    key = jax.random.PRNGKey(0)
    kw = dict(width=w, steps=s, activation="sign", surrogate="erf", sigma_b=0.1,
              record_steps=[0, s])

    # vmapped ensemble (compile first)
    T.train_ensemble(key, x, y, xt, n_networks=n, chunk_size=n, **kw)
    t_vmap = _best(lambda: T.train_ensemble(key, x, y, xt, n_networks=n, chunk_size=n, **kw),
                   args.repeat)

    # per-network loop over networks and steps (jitted single step)
    f = T.network_fn(activation="sign", surrogate="erf", sigma_b=0.1)
    opt = optax.sgd(0.1)

    @jax.jit
    def step(p, st):
        g = jax.grad(lambda q: 0.5 * jnp.mean((f(q, x) - y) ** 2))(p)
        u, st = opt.update(g, st, p)
        return optax.apply_updates(p, u), st

    keys = T.ensemble_keys(key, n)

    def loop_steps():
        for i in range(args.loop_nets):
            p = mlp_init(keys[i], 2, w, 2)
            st = opt.init(p)
            for _ in range(s):
                p, st = step(p, st)
            jax.block_until_ready(p)

    loop_steps()
    t_loop_steps = _best(loop_steps, 1) * n / args.loop_nets

    def loop_scan():
        for i in range(args.loop_nets):
            T.train_ensemble(keys[i], x, y, xt, n_networks=1, chunk_size=1, **kw)

    loop_scan()
    t_loop_scan = _best(loop_scan, 1) * n / args.loop_nets

    # dense matmul throughput at the same shapes
    ka, kb = jax.random.split(key)
    A = jax.random.normal(ka, (n, 15, w), jnp.float32)
    B = jax.random.normal(kb, (n, w, w), jnp.float32)
    reps = 50

    @jax.jit
    def mm(A, B):
        def body(i, acc):
            return acc + jnp.einsum("bij,bjk->bik", A + i, B)
        return jax.lax.fori_loop(0, reps, body, jnp.zeros((n, 15, w), jnp.float32))

    jax.block_until_ready(mm(A, B))
    t_mm = _best(lambda: jax.block_until_ready(mm(A, B)), 3)
    mm_flops = reps * 2 * n * 15 * w * w / t_mm
    train_flops = n * s * 6 * 15 * w * w / t_vmap

    # the machine's limits: a large GEMM (FLOP/s) and a streaming axpy (bytes/s)
    g = args.gemm
    G = jax.random.normal(ka, (g, g), jnp.float32)
    gemm = jax.jit(lambda a: a @ a)
    jax.block_until_ready(gemm(G))
    peak_flops = 2 * g ** 3 / _best(lambda: jax.block_until_ready(gemm(G)), 3)
    big = jnp.ones((64 * 2 ** 20,), jnp.float32)  # 256 MiB
    axpy = jax.jit(lambda v: 1.0001 * v + 0.5)
    jax.block_until_ready(axpy(big))
    bw = 2 * big.nbytes / _best(lambda: jax.block_until_ready(axpy(big)), 3)
    del big

    # the GEMM skeleton of the vmapped step: forward W h, backward W^T d, gradient h^T d,
    # SGD update, batched over networks; nothing else
    H = jax.random.normal(kb, (n, 15, w), jnp.float32) * 0.01
    W0 = B * (1.0 / np.sqrt(w))

    def steps(W, h):
        def body(i, carry):
            W, h = carry
            z = jnp.einsum("bij,bjk->bik", h, W)                     # forward
            d = jnp.einsum("bik,bjk->bij", z, W)                     # backward
            gW = jnp.einsum("bij,bik->bjk", h, z)                    # weight gradient
            return W - 1e-3 * gW, h + 1e-3 * d
        return jax.lax.fori_loop(0, s, body, (W, h))

    group = max(1, 2 ** 19 // (w * w))  # train_ensemble's automatic inner_batch
    skel_all = jax.jit(steps)
    skel_grp = jax.jit(lambda W, h: jax.lax.map(lambda a: steps(a[0][None], a[1][None]),
                                                (W, h), batch_size=group))
    jax.block_until_ready(skel_all(W0, H))
    jax.block_until_ready(skel_grp(W0, H))
    t_skel_all = _best(lambda: jax.block_until_ready(skel_all(W0, H)), args.repeat)
    t_skel = _best(lambda: jax.block_until_ready(skel_grp(W0, H)), args.repeat)
    flops = n * s * 6 * 15 * w * w
    t_flop = flops / peak_flops
    t_bytes = n * s * 5 * 4 * w * w / bw
    t_roof = max(t_flop, t_bytes)

    load = os.getloadavg()
    print(f"ensemble training, sign nets L=2, width {w}, {n} nets, {s} steps, 15 training "
          f"points, float32, {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  vmapped ensemble         {t_vmap:8.2f} s   {n * s / t_vmap:10.0f} net-steps/s")
    print(f"  loop (nets x steps)      {t_loop_steps:8.2f} s   -> vmapped is "
          f"{t_loop_steps / t_vmap:6.1f}x faster (goal >= 20x; timed on {args.loop_nets} nets)")
    print(f"  loop (nets, scanned)     {t_loop_scan:8.2f} s   -> vmapped is "
          f"{t_loop_scan / t_vmap:6.1f}x faster")
    print(f"  dense matmul ({n}x15x{w} @ {n}x{w}x{w}): {mm_flops / 1e9:7.1f} GFLOP/s; "
          f"training {train_flops / 1e9:7.1f} GFLOP/s = {100 * train_flops / mm_flops:5.1f} % "
          f"of matmul (a 15-row product: not the machine's limit, see below)")
    print(f"  machine limits: peak {peak_flops / 1e9:7.1f} GFLOP/s ({g}x{g} GEMM), memory "
          f"bandwidth {bw / 1e9:6.1f} GB/s (256 MiB axpy)")
    cached = t_bytes > t_vmap  # faster than streaming the weights from DRAM: cache-resident
    print(f"  roofline: FLOP bound {t_flop:7.3f} s, weight-traffic bound {t_bytes:7.3f} s "
          f"({'FLOP' if t_flop >= t_bytes else 'memory'}-bound); vmapped training at "
          f"{100 * t_roof / t_vmap:5.1f} % of the roofline, {100 * t_flop / t_vmap:5.1f} % of "
          f"peak FLOP/s" + (" (faster than the DRAM bound: the weights stay in cache, so peak "
                            "FLOP/s is the limit that applies)" if cached else ""))
    print(f"  gemm skeleton (3 width x width products + update per step), grouped by {group} "
          f"nets as train_ensemble: {t_skel:7.3f} s = {100 * t_skel / t_vmap:5.1f} % of the "
          f"vmapped time (the rest: activations, surrogates, small layers); all {n} nets as "
          f"one batched-matmul dimension per step: {t_skel_all:7.3f} s "
          f"({t_skel_all / t_skel:4.2f}x the grouped skeleton)")
    print(f"  batching ceiling: scanned loop / FLOP roofline = {t_loop_scan / t_flop:6.1f}x "
          f"(the most any batching of networks could gain over the loop here); achieved "
          f"{t_loop_scan / t_vmap:5.1f}x")
    return dict(t_vmap=t_vmap, t_loop_steps=t_loop_steps, t_loop_scan=t_loop_scan,
                mm_gflops=mm_flops / 1e9, train_gflops=train_flops / 1e9, load=load,
                peak_gflops=peak_flops / 1e9, bandwidth_gbs=bw / 1e9, t_skeleton=t_skel,
                t_skeleton_all=t_skel_all,
                t_roofline=t_roof)


if __name__ == "__main__":
    main()
