"""Internal helpers shared by every module: validation, tiling and atomic I/O.

One definition of each; modules import these instead of writing their own (no private name of
another public module is imported anywhere in sgntk).

* validation: :func:`is_traced`, :func:`check_positive`, :func:`check_int`, :func:`as_inputs`
* tiling: :func:`pad_rows`, :func:`tile_starts`
* atomic I/O: :func:`write_json`, :func:`write_npz`, :func:`write_text`, :func:`read_npz`,
  :func:`versions`
"""
from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from typing import Any

import jax
import numpy as np

__all__ = ["is_traced", "check_positive", "check_int", "as_inputs", "pad_rows", "tile_starts",
           "write_json", "write_npz", "write_text", "read_npz", "versions"]


# ------------------------------------------------------------------------------ validation
def is_traced(*xs) -> bool:
    """True if any argument (or leaf of a pytree argument) is a JAX tracer (under jit/vmap/grad).

    Traced values cannot be checked in Python; validators let them through.
    """
    return any(isinstance(leaf, jax.core.Tracer) for x in xs for leaf in jax.tree_util.tree_leaves(x))


def check_positive(name: str, value, *, minimum: float = 0.0, inclusive: bool = False):
    """Check that every entry of ``value`` is finite and ``> minimum`` (``>= minimum`` if
    ``inclusive``); raise ``ValueError`` naming ``name`` and the accepted range otherwise.

    Traced values pass through unchanged. Returns ``value`` (a Python float for scalars that
    were given as Python/NumPy scalars, so it can be used as a static number).
    """
    if is_traced(value):
        return value
    arr = np.asarray(value, dtype=float)
    bad = ~np.isfinite(arr) | ((arr < minimum) if inclusive else (arr <= minimum))
    if np.any(bad):
        rng = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise ValueError(f"{name} must be finite and {rng}; got {value!r}")
    if arr.ndim == 0 and not isinstance(value, jax.Array):
        return float(arr)
    return value


def check_int(name: str, value, *, minimum: int = 0) -> int:
    """Check that ``value`` is an integer (not bool) ``>= minimum``; return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def as_inputs(name: str, x, *, ndim: int = 2) -> np.ndarray:
    """``x`` as a finite float64 array with ``ndim`` dimensions (a single example of one
    dimension less gets a leading axis of 1); ``ValueError`` naming ``name`` otherwise."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == ndim - 1:
        arr = arr[None]
    if arr.ndim != ndim or 0 in arr.shape:
        raise ValueError(f"{name} must have {ndim} non-empty dimensions; got shape {np.shape(x)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf entries")
    return arr


# ------------------------------------------------------------------------------ tiling
def pad_rows(x, size: int):
    """Pad ``x`` along axis 0 to ``size`` rows by repeating its first row (keeps one compiled
    tile shape; the padded rows are sliced off by the caller)."""
    n = x.shape[0]
    if n == size:
        return x
    if n > size:
        raise ValueError(f"cannot pad {n} rows down to {size}")
    xp = jax.numpy if isinstance(x, jax.Array) else np
    return xp.concatenate([x, xp.repeat(x[:1], size - n, axis=0)])


def tile_starts(n: int, tile: int) -> list[int]:
    """Start indices of the tiles of size ``tile`` covering ``range(n)``."""
    return list(range(0, n, max(1, int(tile))))


# ------------------------------------------------------------------------------ atomic I/O
def _atomic(path, write, mode: str, suffix: str) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=suffix)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (np.ndarray, jax.Array)):
        return np.asarray(o).tolist()
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path, obj: Any, *, indent: int = 1) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file + ``os.replace``)."""
    def write(f):
        json.dump(obj, f, indent=indent, sort_keys=True, default=_json_default)
        f.write("\n")
    _atomic(path, write, "w", ".json")


def write_npz(path, **arrays) -> None:
    """``np.savez_compressed(path, **arrays)`` atomically."""
    _atomic(path, lambda f: np.savez_compressed(f, **arrays), "wb", ".npz")


def write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    _atomic(path, lambda f: f.write(text), "w", ".txt")


def read_npz(path) -> dict:
    """All arrays of an ``.npz`` file as a dict (the file is closed on return)."""
    with np.load(os.fspath(path)) as z:
        return {k: z[k] for k in z.files}


def versions() -> dict:
    """Versions of Python, sgntk, JAX, NumPy, SciPy and optax, the platform, the JAX backend and
    the git commit (when run from a checkout): recorded next to every result."""
    import scipy

    from . import __version__
    out = {"python": platform.python_version(), "platform": platform.platform(),
           "sgntk": __version__, "jax": jax.__version__, "numpy": np.__version__,
           "scipy": scipy.__version__, "backend": jax.default_backend()}
    try:
        import optax
        out["optax"] = optax.__version__
    except ImportError:  # pragma: no cover - optax is a dependency
        pass
    try:
        import subprocess
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)), timeout=10)
        if res.returncode == 0:
            out["git"] = res.stdout.strip()
    except Exception:  # noqa: BLE001 - no git is fine
        pass
    return out


# ------------------------------------------------------------------------------ renamed keywords
def renamed_keyword(new_name: str, new_value, old_name: str, old_value, *, default=None,
                    stacklevel: int = 3):
    """Resolve a keyword that was renamed from ``old_name`` to ``new_name``.

    The old keyword still works but emits a ``DeprecationWarning``; passing both raises
    ``ValueError``. ``None`` means "not given" for both; the result is ``default`` if neither
    was given. ``stacklevel`` points the warning at the caller of the public function (3 when
    this is called directly from it).
    """
    if old_value is None:
        return default if new_value is None else new_value
    if new_value is not None:
        raise ValueError(f"pass {new_name}= only ({old_name}= is its deprecated old name)")
    import warnings
    warnings.warn(f"{old_name}= is deprecated; use {new_name}= (same meaning)",
                  DeprecationWarning, stacklevel=stacklevel)
    return old_value
