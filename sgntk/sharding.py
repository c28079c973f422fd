"""Kernel matrices on every device, or streamed to disk: one tile mapper for every kernel.

Every kernel of sgntk is a *tile function* ``tile_fn(xa, xb, *args) -> {name: (ta, tb) array}``
(a dict or a NamedTuple such as :class:`sgntk.kernels.MLPKernel`; ``None`` entries are dropped):
the kernels between a block of rows ``xa`` and a block of columns ``xb``. :func:`map_tiles` runs
one over all ``(row tile, column tile)`` pairs of ``x1 x x2`` on all devices of a
``jax.sharding.Mesh`` (``shard_map``: each device computes its own tile, one tile per device
at a time), in one of two modes:

* **sharded in memory** (``out=None``): the rows of the result are split over the devices,
  device ``d`` holding rows ``[d R, (d + 1) R)``, ``R = ceil(n1 / D)``; each device fills its
  own block tile by tile (donated buffer, in place; the last tile of a row or column is
  shifted back to end at the edge, so nothing is padded or copied). The result is a
  ``jax.Array`` of shape ``(n1, n2)`` sharded as ``P(mesh axes, None)`` when ``D`` divides
  ``n1``; otherwise the last device's padded rows are cut off on the host and a ``numpy``
  array comes back.
* **streamed to disk** (``out="folder"``): one ``numpy`` ``.npy`` file per kernel,
  ``<out>/<name>.npy``, filled tile by tile (``os.pwrite``): ``D`` tiles are computed at once
  (one per device) and written while the next ``D`` are computed. The tiles already written are
  recorded in ``<out>/tiles_done.npz`` (atomically, after the data are ``fsync``-ed), so an
  interrupted run **resumes** where it stopped (with the same inputs, arguments and tile size,
  checked against ``<out>/tiles.json``; any device count). Returns read-only memory maps.

Memory per device (in-memory mode), for ``K`` kernels of ``b`` bytes per entry (8: float64),
``D`` devices and tile size ``t``::

    b K ceil(n1 / D) n2      (its rows of the result)
    + w b t^2                (one tile's working set)

with ``w`` the working-set multiplier of the kernel route (about 16 for closed forms and up to
about 320 for the piecewise surrogate Gram; README "cost per pair" table). On disk the device
holds only the working set plus ``K`` tiles in and out: ``(w + 2 K) b t^2``; the host keeps
``2 D K`` tiles in flight. Example: the N = 100 000 float64 SG-NTK alone is 80 GB, i.e. 10 GB per
device on 8 devices plus about 16 x 8 x 1024^2 B = 134 MB for ``t = 1024``
(:func:`memory_per_device`).

Multi-host (``jax.distributed.initialize()`` then a mesh over ``jax.devices()``): the
in-memory mode builds each step's inputs with ``jax.make_array_from_callback`` (every process
holds ``x1``, ``x2``: they are small) and never gathers the result, so it runs unchanged, one
shard of rows per device (the device count must divide ``n1`` there: the host cannot cut off
padded rows of shards it does not hold); this is not tested here (no multi-host machine). The
on-disk mode needs every device addressable from this process (one host) and raises otherwise.

Entry points: :func:`map_tiles` (any tile function: ``kernels.mlp_kernel_fn``,
``lif_kernels.lif_kernel_fn``, ...), ``kernels.mlp(..., mesh=, tiles=)``,
:func:`network_empirical` / :func:`mlp_empirical` (empirical kernels of one finite network),
:func:`device_mesh`. Tested in ``tests/test_sharding.py`` with 4 forced host CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``, set before JAX starts): sharded ==
unsharded to 1e-12, resume of the on-disk mode; throughput vs device count in
``benchmarks/bench_sharding.py``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from typing import Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._util import check_int, pad_rows, read_npz, write_json, write_npz

__all__ = ["device_mesh", "map_tiles", "network_empirical", "mlp_empirical", "memory_per_device"]

_DONE = "tiles_done.npz"
_META = "tiles.json"


# ------------------------------------------------------------------------------ meshes
def device_mesh(devices: Optional[Sequence] = None, axis_name: str = "devices") -> Mesh:
    """A 1-D mesh over ``devices`` (default ``jax.devices()``: every device of every process,
    after ``jax.distributed.initialize()`` on a multi-host job)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices must be a non-empty sequence of jax devices")
    return Mesh(np.asarray(devices), (axis_name,))


def _check_mesh(mesh) -> Mesh:
    if mesh is None or (isinstance(mesh, str) and mesh == "all"):
        return device_mesh()
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh, 'all' or None (all devices); got "
                         f"{type(mesh).__name__}")
    return mesh


def memory_per_device(n1: int, n2: int, *, devices: int, tile: int, kernels: int = 1,
                      bytes_per_entry: int = 8, working_set: float = 16) -> int:
    """Bytes per device of the in-memory mode of :func:`map_tiles` (module docstring): its
    ``ceil(n1 / devices)`` rows of ``kernels`` result matrices plus ``working_set``
    tile-sized arrays."""
    r = math.ceil(n1 / devices)
    t1, t2 = min(tile, r), min(tile, n2)
    return int(bytes_per_entry * (kernels * r * n2 + working_set * t1 * t2))


# ------------------------------------------------------------------------------ helpers
def _as_dict(res) -> dict:
    if hasattr(res, "_asdict"):
        res = res._asdict()
    if not isinstance(res, Mapping):
        raise ValueError("tile_fn must return a dict or a NamedTuple of (ta, tb) arrays; got "
                         f"{type(res).__name__}")
    return {k: v for k, v in res.items() if v is not None}


def _tile_sizes(tile) -> tuple:
    if isinstance(tile, (tuple, list)):
        if len(tile) != 2:
            raise ValueError(f"tile must be an integer >= 1 or a pair of them; got {tile!r}")
        return tuple(check_int("tile", t, minimum=1) for t in tile)
    t = check_int("tile", tile, minimum=1)
    return t, t


def _array(host: np.ndarray, sharding) -> jax.Array:
    """A global array with ``sharding`` from a host array every process holds in full."""
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def _fingerprint(x1, x2, args, keys, tile) -> str:
    h = hashlib.sha256()
    for a in (x1, x2):
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    leaves, tree = jax.tree_util.tree_flatten(args)
    h.update(str(tree).encode())
    for leaf in leaves:
        arr = np.asarray(leaf)
        h.update(str((arr.shape, arr.dtype.str)).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps([list(keys), list(tile)]).encode())
    return h.hexdigest()


def _nan_error(name, idx):
    return FloatingPointError(f"kernel {name!r} is NaN at {tuple(int(i) for i in idx)}; "
                              "please report this with the inputs")


# ------------------------------------------------------------------------------ compiled steps
@functools.lru_cache(maxsize=32)
def _memory_step(tile_fn, mesh, axes, keys):
    """jit(shard_map): every device computes the tile (its rows xa, columns xb) and writes it
    into its own block of the result at (i, j); buffers donated (in place)."""
    spec = P(axes)

    def local(bufs, xa, xb, args, i, j):
        vals = _as_dict(tile_fn(xa, xb, *args))
        return tuple(jax.lax.dynamic_update_slice(b, vals[k].astype(b.dtype), (i, j))
                     for b, k in zip(bufs, keys))

    fn = jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, P(), P(), P(), P()),
                       out_specs=spec, check_vma=False)
    return jax.jit(fn, donate_argnums=0)


@functools.lru_cache(maxsize=32)
def _stream_step(tile_fn, mesh, axes, keys):
    """jit(shard_map): device d computes the tile of rows xa[d], columns xb[d]."""
    spec = P(axes)

    def local(xa, xb, args):
        vals = _as_dict(tile_fn(xa[0], xb[0], *args))
        return tuple(vals[k][None] for k in keys)

    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, P()), out_specs=spec,
                                 check_vma=False))


# ------------------------------------------------------------------------------ map_tiles
def map_tiles(tile_fn: Callable, x1, x2=None, *, args: tuple = (), mesh=None, tile=1024,
              out=None, progress: Optional[bool] = None, check_nan: bool = True) -> dict:
    """Run ``tile_fn`` over all tiles of ``x1 x x2`` on every device of ``mesh``.

    Args:
      tile_fn: pure JAX function ``(xa, xb, *args) -> dict`` (or NamedTuple) of ``(ta, tb)``
        arrays, e.g. ``kernels.mlp_kernel_fn(...)`` (args: surrogate, sigma_w, sigma_b, m) or
        ``lif_kernels.lif_kernel_fn(...)`` (args: config, readout weights, sigma_w, sigma_b,
        sigma_o, spike_sharpness). Called on blocks of rows; rows beyond ``n1``/``n2`` are
        copies of the first row (cut off afterwards), so entries must depend only on their own
        pair of rows.
      x1: ``(n1, ...)`` inputs; x2: ``(n2, ...)`` (default ``x1``).
      args: pytree of further arguments, the same on every device (replicated).
      mesh: a ``jax.sharding.Mesh`` (rows are split over all its axes), ``"all"`` or None (all
        devices, :func:`device_mesh`).
      tile: rows (and columns) per tile, or ``(rows, columns)``.
      out: None (sharded in memory) or a folder to stream ``<out>/<name>.npy`` into (resumable).
      progress: tqdm bar over steps (default: more than 16 steps).
      check_nan: raise ``FloatingPointError`` (with the index) when a kernel has a NaN.

    Returns:
      dict name -> ``(n1, n2)`` array: a sharded ``jax.Array`` (in memory, ``D`` divides
      ``n1``), a ``numpy`` array (in memory, otherwise) or a read-only ``numpy.memmap``
      (``out`` given). Float dtypes as ``tile_fn`` returns them (run under
      ``jax.enable_x64(True)`` for float64).
    """
    mesh = _check_mesh(mesh)
    x1 = np.asarray(x1)
    x2 = x1 if x2 is None else np.asarray(x2)
    if x1.ndim < 1 or x2.ndim < 1 or 0 in (x1.shape[0], x2.shape[0]) or \
            x1.shape[1:] != x2.shape[1:]:
        raise ValueError("x1 and x2 must be non-empty arrays (n, ...) with the same trailing "
                         f"shape; got {x1.shape} and {x2.shape}")
    t1, t2 = _tile_sizes(tile)
    axes = tuple(mesh.axis_names)
    if out is None:
        return _map_in_memory(tile_fn, x1, x2, args, mesh, axes, t1, t2, progress, check_nan)
    return _map_to_disk(tile_fn, x1, x2, args, mesh, axes, t1, t2, os.fspath(out), progress,
                        check_nan)


def _shapes(tile_fn, xa, xb, args):
    shapes = _as_dict(jax.eval_shape(tile_fn, jax.ShapeDtypeStruct(xa.shape, xa.dtype),
                                     jax.ShapeDtypeStruct(xb.shape, xb.dtype), *args))
    for k, s in shapes.items():
        if s.shape != (xa.shape[0], xb.shape[0]):
            raise ValueError(f"tile_fn must return (rows, columns) arrays; {k!r} has shape "
                             f"{s.shape} for tiles of {xa.shape[0]} x {xb.shape[0]}")
    return shapes


def _bar(total, progress, desc):
    if progress is None:
        progress = total > 16
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="step", disable=not progress)


def _starts(n: int, t: int) -> list:
    """Tile starts covering ``range(n)`` with tiles of ``t <= n``: the last tile is shifted back
    to end at ``n`` (it overlaps its neighbour, whose entries it rewrites with the same values),
    so buffers need no padding and no copy to cut it off."""
    return [min(s, n - t) for s in range(0, n, t)]


def _map_in_memory(tile_fn, x1, x2, args, mesh, axes, t1, t2, progress, check_nan):
    d = mesh.devices.size
    n1, n2 = x1.shape[0], x2.shape[0]
    r = math.ceil(n1 / d)                  # rows per device
    if d * r != n1 and jax.process_count() > 1:
        raise ValueError(f"on a multi-host mesh the number of devices ({d}) must divide the "
                         f"number of rows of x1 ({n1}); pad x1 or use out=...")
    t1, t2 = min(t1, r), min(t2, n2)
    rows, cols = _starts(r, t1), _starts(n2, t2)
    x1p = pad_rows(x1, d * r)              # device d: rows x1p[d r : (d + 1) r]
    shapes = _shapes(tile_fn, x1p[:t1], x2[:t2], args)
    keys = tuple(shapes)
    row_sharding = NamedSharding(mesh, P(axes))
    replicated = NamedSharding(mesh, P())
    bufs = tuple(jax.jit(lambda dt=shapes[key].dtype: jnp.zeros((d * r, n2), dt),
                         out_shardings=row_sharding)() for key in keys)
    step = _memory_step(tile_fn, mesh, axes, keys)
    args = jax.tree_util.tree_map(lambda a: _array(np.asarray(a), replicated), args)
    xcols = [_array(x2[j:j + t2], replicated) for j in cols]
    x1d = x1p.reshape((d, r) + x1.shape[1:])
    with _bar(len(rows) * len(cols), progress, f"kernel tiles ({d} devices)") as bar:
        for i in rows:
            xa = _array(np.ascontiguousarray(x1d[:, i:i + t1]).reshape((d * t1,) + x1.shape[1:]),
                        row_sharding)
            for j, xb in zip(cols, xcols):
                bufs = step(bufs, xa, xb, args, jnp.int32(i), jnp.int32(j))
                bar.update()
    res = dict(zip(keys, bufs))           # (d r, n2), rows sharded
    if check_nan:
        for key, v in res.items():
            if bool(jnp.isnan(v).any()):
                host = np.asarray(v)[:n1]
                bad = np.argwhere(np.isnan(host))
                if bad.size:
                    raise _nan_error(key, bad[0])
    if d * r != n1:   # padded rows: cut off on the host (uneven shardings do not exist)
        res = {key: np.asarray(v)[:n1] for key, v in res.items()}
    return res


def _map_to_disk(tile_fn, x1, x2, args, mesh, axes, t1, t2, out, progress, check_nan):
    from numpy.lib.format import open_memmap

    if jax.process_count() > 1 or any(dev.process_index != jax.process_index()
                                      for dev in mesh.devices.flat):
        raise ValueError("map_tiles(out=...) streams from one process: the mesh must hold only "
                         "this process's devices (use out=None on a multi-host mesh)")
    d = mesh.devices.size
    n1, n2 = x1.shape[0], x2.shape[0]
    t1, t2 = min(t1, n1), min(t2, n2)
    rows, cols = math.ceil(n1 / t1), math.ceil(n2 / t2)
    shapes = _shapes(tile_fn, x1[:t1] if n1 >= t1 else pad_rows(x1, t1), pad_rows(x2[:t2], t2),
                     args)
    keys = tuple(shapes)
    meta = dict(shape=[n1, n2], tile=[t1, t2], kernels=list(keys),
                dtypes={key: np.dtype(shapes[key].dtype).str for key in keys},
                fingerprint=_fingerprint(x1, x2, args, keys, (t1, t2)))
    os.makedirs(out, exist_ok=True)
    meta_path, done_path = os.path.join(out, _META), os.path.join(out, _DONE)
    paths = {key: os.path.join(out, f"{key}.npy") for key in keys}
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            old = json.load(f)
        if old != meta:
            raise ValueError(f"{out} holds tiles of another computation (inputs, arguments, "
                             f"kernels or tile size differ: {meta_path}); use a new folder")
        done = (read_npz(done_path)["done"] if os.path.exists(done_path)
                else np.zeros((rows, cols), bool))
    else:
        done = np.zeros((rows, cols), bool)
        for key, p in paths.items():     # header + sparse file of the full size
            m = open_memmap(p, mode="w+", dtype=shapes[key].dtype, shape=(n1, n2))
            m.flush()
            del m
        write_json(meta_path, meta)
    files = {key: _NpyTiles(p) for key, p in paths.items()}
    todo = [(i, j) for i in range(rows) for j in range(cols) if not done[i, j]]
    x1p, x2p = pad_rows(x1, rows * t1), pad_rows(x2, cols * t2)
    spec = NamedSharding(mesh, P(axes))
    replicated = NamedSharding(mesh, P())
    step = _stream_step(tile_fn, mesh, axes, keys)
    args = jax.tree_util.tree_map(lambda a: _array(np.asarray(a), replicated), args)

    def launch(batch):
        padded = batch + [batch[-1]] * (d - len(batch))        # idle devices redo the last tile
        xa = np.stack([x1p[i * t1:(i + 1) * t1] for i, _ in padded])
        xb = np.stack([x2p[j * t2:(j + 1) * t2] for _, j in padded])
        return batch, step(_array(xa, spec), _array(xb, spec), args)

    def store(batch, vals):
        host = [np.asarray(v) for v in vals]
        for b, (i, j) in enumerate(batch):
            ra, rb = min(t1, n1 - i * t1), min(t2, n2 - j * t2)
            for key, v in zip(keys, host):
                tile_vals = v[b, :ra, :rb]
                if check_nan and np.isnan(tile_vals).any():
                    loc = np.argwhere(np.isnan(tile_vals))[0]
                    raise _nan_error(key, (i * t1 + loc[0], j * t2 + loc[1]))
                files[key].write(i * t1, j * t2, tile_vals)
        for f in files.values():
            f.sync()                       # data on disk before the tiles are marked done
        for i, j in batch:
            done[i, j] = True
        _save_done(done_path, done)

    batches = [todo[s:s + d] for s in range(0, len(todo), d)]
    try:
        with _bar(len(batches), progress, f"kernel tiles to disk ({d} devices)") as bar:
            pending = launch(batches[0]) if batches else None
            for nxt in batches[1:]:
                running = launch(nxt)           # dispatched before the previous one is written
                store(*pending)
                bar.update()
                pending = running
            if pending is not None:
                store(*pending)
                bar.update()
    finally:
        for f in files.values():
            f.close()
    return {key: np.load(p, mmap_mode="r") for key, p in paths.items()}


def _save_done(path, done):
    write_npz(path, done=done)


class _NpyTiles:
    """Writes tiles into the data block of an existing C-order ``.npy`` file with ``os.pwrite``
    (one call per tile row, one per tile when it spans whole rows) and ``fsync``; no memory map,
    so the resident memory stays a few tiles whatever the file size."""

    def __init__(self, path):
        m = np.load(path, mmap_mode="r")
        self.offset, (self.n1, self.n2), self.dtype = m.offset, m.shape, m.dtype
        del m
        self.fd = os.open(path, os.O_RDWR)

    def write(self, r0: int, c0: int, block) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        size = self.dtype.itemsize
        if c0 == 0 and block.shape[1] == self.n2:
            os.pwrite(self.fd, block.tobytes(), self.offset + r0 * self.n2 * size)
            return
        for r in range(block.shape[0]):
            os.pwrite(self.fd, block[r].tobytes(), self.offset + ((r0 + r) * self.n2 + c0) * size)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# ------------------------------------------------------------------------------ empirical kernels
def network_empirical(network, params, x1, x2=None, *, jump_width=None,
                      which: Sequence[str] = ("nngp", "ntk", "sgntk", "sg_gram"), mesh=None,
                      tile=1024, out=None, progress: Optional[bool] = None) -> dict:
    """:func:`sgntk.empirical.network_empirical` of one finite network, tiled over
    ``mesh``'s devices (or streamed to ``out``) by :func:`map_tiles`; dict name -> array."""
    from . import empirical
    from .kernels import check_which

    which = check_which(which)

    def tile_fn(xa, xb, p):
        return empirical.network_empirical(network, p, xa, xb, jump_width=jump_width,
                                           which=which)

    return map_tiles(tile_fn, x1, x2, args=(params,), mesh=mesh, tile=tile, out=out,
                     progress=progress)


def mlp_empirical(params, x1, x2=None, *, activation, surrogate, sigma_w=1.0, sigma_b=0.0,
                  m=1.0, jump_width=None, which: Sequence[str] = ("nngp", "ntk", "sgntk",
                                                                   "sg_gram"),
                  mesh=None, tile=1024, out=None, progress: Optional[bool] = None) -> dict:
    """:func:`sgntk.empirical.mlp_empirical` tiled over ``mesh``'s devices (or streamed to
    ``out``) by :func:`map_tiles`; dict name -> array."""
    from . import layers as L
    from .surrogates import get as get_surrogate

    net = L.mlp(depth=len(params.weights) - 1, activation=activation,
                surrogate=get_surrogate(surrogate), sigma_w=sigma_w, sigma_b=sigma_b,
                sharpness=m)
    return network_empirical(net, L.mlp_layer_params(params), x1, x2, jump_width=jump_width,
                             which=which, mesh=mesh, tile=tile, out=out, progress=progress)
