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
* ``matmul``: the machine's dense matmul throughput at the same shapes, a jitted batched
  ``(nets, n_train, width) @ (nets, width, width)``; the training FLOP count per network and
  step is ``6 n_train width^2`` (forward, backward and weight-gradient products of the
  width x width layer; the O(width) layers are left out), so ``efficiency`` = achieved training
  FLOP/s / matmul FLOP/s.

Goals (issue 3): vmapped >= 20x faster than the per-network loop; >= 50 % of matmul
throughput. The machine is shared: the load average is printed with the results.
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
          f"of matmul (goal >= 50 %)")
    return dict(t_vmap=t_vmap, t_loop_steps=t_loop_steps, t_loop_scan=t_loop_scan,
                mm_gflops=mm_flops / 1e9, train_gflops=train_flops / 1e9, load=load)


if __name__ == "__main__":
    main()
