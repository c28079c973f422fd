"""Make neural-tangents 0.6.5 importable and usable on current JAX (tested on 0.10.2).

Install it with ``pip install --no-deps neural-tangents frozendict`` (the release pins
TensorFlow, which is only needed for its ``experimental`` TF-conversion module).

Usage::

    from sgntk.nt_compat import import_neural_tangents
    nt = import_neural_tangents()

Importing this module is free: it imports neither ``neural_tangents`` nor touches any
JAX config. :func:`import_neural_tangents` installs the shims below (once, under a lock)
and imports the package.

Shims
-----
Verified against JAX 0.10.2.  Each shim is applied *only where the name is absent*,
so on a JAX that still has a name the real object is used.  "Removed by 0.10" means
absent in 0.10.2 (the exact release is given where JAX's own deprecation table says).

A. Import-time shims, needed while ``neural_tangents`` runs ``from jax.X import Y``.
   They exist only during the import (under a lock) and are deleted afterwards, so
   nothing leaks into the user's program (``hasattr``-style feature detection in other
   libraries keeps seeing the real JAX):

* ``neural_tangents.experimental`` (sys.modules entry) -> stub module.  The real one
  imports ``jax.experimental.jax2tf`` -> TensorFlow.  Its two functions
  (``empirical_ntk_fn_tf``, ``get_apply_fn_and_params``) raise :class:`ImportError`
  saying TF conversion is disabled.  This stub *stays* (it lives in the
  ``neural_tangents`` namespace; no ``tensorflow`` module is ever faked).
* ``jax.core.{Jaxpr, JaxprEqn, Literal, Var, Primitive}`` -> ``jax.extend.core.*``
  (moved to ``jax.extend.core``; the ``jax.core`` aliases were removed by 0.10).
* ``jax.util`` (module: ``safe_map``, ``safe_zip``) -> ``jax._src.util.safe_map/
  safe_zip`` (the public ``jax.util`` module was removed by 0.10).
* ``jax.interpreters.ad.zeros_like_p`` -> an inert placeholder ``Primitive``.  The
  primitive no longer exists (removed by 0.10; JAX no longer emits it), and NT only
  uses it as a key of its structured-derivative rule tables, so a key that never
  occurs in a jaxpr is exactly equivalent.

B. Run-time shims, used while computing (all inside ``STRUCTURED_DERIVATIVES``,
   ``implementation=3``).  NT looks these up through the module globals ``core``,
   ``ad``, ``lu`` of ``neural_tangents._src.empirical``; we rebind those three globals
   *inside neural_tangents* to small proxy modules (delegating everything else to the
   JAX module), so JAX is not modified:

* ``core.get_aval`` -> ``jax.typeof`` (deprecated in JAX 0.8.2, removed in 0.10.0).
* ``core.DShapedArray`` (dynamic-shape avals, removed by 0.10) -> a private class that
  no aval is an instance of (NT only does ``type(a) is core.DShapedArray``).
* ``core.Var``, ``core.Primitive`` -> ``jax.extend.core`` (as in A).
* ``ad`` -> proxy of ``jax._src.interpreters.ad`` instead of public
  ``jax.interpreters.ad``, which no longer re-exports ``source_info_util`` and
  ``reducing_transposes`` (the latter deprecated 0.9.0, removed from the public module
  in 0.10.0; still present, and empty, in ``jax._src``).
* ``ad.linearize``: the internal signature changed (JAX 0.4.36+ "direct linearize",
  FlatTree form by 0.10) from ``linearize(WrappedFun, *flat_primals, has_aux)
  -> (primals_out, out_pvals, jaxpr, consts)`` to ``linearize(callable, FlatTree, ...)
  -> (out_primals FlatTree, out_zeros, jaxpr, consts)``.  The proxy provides the old
  signature as an adapter; ``out_pvals[i].is_known()`` <=> output ``i`` has a
  symbolically-zero tangent (the only thing NT reads from the partial values).
* ``ad.config.jax_enable_checks`` (``jax._src.config`` no longer has ``jax_``-prefixed
  attributes) -> always False: the guarded block is a debug-only assertion built on
  ``core.lattice_join``/``strip_named_shape``, which were also removed.
* ``lu.wrap_init(f)`` -> same, plus a ``DebugInfo`` (omitting it is deprecated in
  JAX 0.5+ and emits a DeprecationWarning).
* ``jax._src.core.Primitive.map_primitive = False`` (class attribute, removed with
  the old pmap/xmap map-primitive machinery by 0.10).  This is the one shim placed on
  a JAX object at run time, because NT reads ``eqn.primitive.map_primitive`` on
  primitive instances; restoring the old default ``False`` is exactly right since no
  map primitives exist any more.

Not shimmed (still work on 0.10.2 but emit DeprecationWarnings from NT code, and will
break when JAX finalises them): ``jnp.dtype(array)`` in ``_get_fx_axis_and_dtype`` and
``jnp.size(ShapeDtypeStruct)`` in ``_std_basis`` (both in ``_src/empirical.py``).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

__all__ = ["available", "import_neural_tangents", "INSTALL_HINT"]

INSTALL_HINT = "pip install --no-deps neural-tangents frozendict"

_LOCK = threading.RLock()
_NT = None  # the imported module, once done


def available() -> bool:
    """True if ``neural_tangents`` (and its ``frozendict`` dependency) are installed."""
    try:
        return (importlib.util.find_spec("neural_tangents") is not None
                and importlib.util.find_spec("frozendict") is not None)
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------- stubs
def _experimental_stub() -> types.ModuleType:
    mod = types.ModuleType(
        "neural_tangents.experimental",
        "Stub installed by sgntk.nt_compat: the real module needs TensorFlow.")
    mod.__sgntk_stub__ = True

    def _disabled(name):
        def fn(*args, **kwargs):
            raise ImportError(
                f"neural_tangents.experimental.{name} (TensorFlow conversion) is "
                "disabled by sgntk.nt_compat: it requires TensorFlow and "
                "jax.experimental.jax2tf, which sgntk does not support.")
        fn.__name__ = name
        return fn

    for name in ("empirical_ntk_fn_tf", "get_apply_fn_and_params"):
        setattr(mod, name, _disabled(name))
    return mod


class _PlaceholderDShapedArray:
    """Stand-in for the removed ``jax.core.DShapedArray``: no aval is of this type."""


class _NoChecksConfig:
    """``ad.config`` stand-in: NT's only use is a debug-only ``jax_enable_checks`` branch."""

    jax_enable_checks = False


def _linearize_old_api(traceable, *primals, has_aux=False):
    """Pre-JAX-0.4.36 ``ad.linearize`` signature on top of the current one.

    ``traceable`` is a ``lu.WrappedFun`` taking flat primals and returning a flat list.
    Returns ``(primals_out, out_pvals, jaxpr, consts)`` where ``out_pvals[i].is_known()``
    is True iff output ``i`` has a symbolically-zero tangent (so it has no jaxpr outvar),
    which is all neural-tangents uses of the partial values.
    """
    from jax._src.interpreters import ad as _ad
    from jax._src.tree_util import FlatTree

    if has_aux:
        raise NotImplementedError("has_aux=True is not used by neural-tangents.")

    def fn(*xs):
        return traceable.call_wrapped(*xs)

    primals_ft = FlatTree.flatten(tuple(primals))
    out_primals_ft, out_zeros, jaxpr, consts = _ad.linearize(fn, primals_ft)[:4]
    out_primals = list(out_primals_ft.unflatten())
    pvals = [_KnownFlag(z) for z in out_zeros]
    return out_primals, pvals, jaxpr, consts


class _KnownFlag:
    __slots__ = ("_known",)

    def __init__(self, known: bool):
        self._known = bool(known)

    def is_known(self) -> bool:
        return self._known


def _proxy_module(name: str, base: types.ModuleType, extra: dict) -> types.ModuleType:
    """A module object exposing ``extra`` and falling back to ``base`` for the rest."""
    mod = types.ModuleType(name, f"sgntk.nt_compat proxy of {base.__name__}")

    def __getattr__(attr):
        return getattr(base, attr)

    mod.__getattr__ = __getattr__
    for k, v in extra.items():
        setattr(mod, k, v)
    return mod


# ----------------------------------------------------------------------- install
_JAX_UTIL_DOC = "sgntk.nt_compat temporary shim of the removed jax.util module"


def _import_time_shims():
    """(owner, attribute, value) triples for group A, only for names that are absent."""
    import jax.core
    import jax.extend.core
    import jax.interpreters.ad

    shims = []
    for name in ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive"):
        if not hasattr(jax.core, name):
            shims.append((jax.core, name, getattr(jax.extend.core, name)))
    if not hasattr(jax.interpreters.ad, "zeros_like_p"):
        shims.append((jax.interpreters.ad, "zeros_like_p",
                      jax.extend.core.Primitive("sgntk_nt_compat_zeros_like_placeholder")))
    return shims


def _import_with_shims():
    """Import ``neural_tangents`` with group-A shims present, then remove them."""
    import jax

    added_jax_util = False
    if "jax.util" not in sys.modules and importlib.util.find_spec("jax.util") is None:
        from jax._src import util as _util
        jax_util = types.ModuleType("jax.util", _JAX_UTIL_DOC)
        jax_util.safe_map = _util.safe_map
        jax_util.safe_zip = _util.safe_zip
        sys.modules["jax.util"] = jax_util
        added_jax_util = True

    applied = []
    try:
        for owner, name, value in _import_time_shims():
            setattr(owner, name, value)
            applied.append((owner, name))
        return importlib.import_module("neural_tangents")
    finally:
        for owner, name in applied:
            delattr(owner, name)
        if added_jax_util:
            sys.modules.pop("jax.util", None)
            if getattr(vars(jax).get("util"), "__doc__", None) == _JAX_UTIL_DOC:
                delattr(jax, "util")


def _install_runtime_shims(nt_empirical):
    """Group B: rebind ``core``/``ad``/``lu`` inside ``neural_tangents._src.empirical``."""
    import inspect

    import jax
    import jax.core
    import jax.extend.core
    import jax.extend.linear_util as _lu
    from jax._src import api_util as _api_util
    from jax._src import core as _src_core
    from jax._src.interpreters import ad as _src_ad

    core_extra = {}
    if not hasattr(jax.core, "DShapedArray"):
        core_extra["DShapedArray"] = _PlaceholderDShapedArray
    if not hasattr(jax.core, "get_aval"):
        core_extra["get_aval"] = jax.typeof
    for name in ("Var", "Primitive"):
        if not hasattr(jax.core, name):
            core_extra[name] = getattr(jax.extend.core, name)
    if core_extra:
        nt_empirical.core = _proxy_module("sgntk_nt_compat.core", jax.core, core_extra)

    ad_extra = {}
    if not hasattr(_src_ad.config, "jax_enable_checks"):
        ad_extra["config"] = _NoChecksConfig
    if "primals_ft" in inspect.signature(_src_ad.linearize).parameters:
        ad_extra["linearize"] = _linearize_old_api
    nt_empirical.ad = _proxy_module("sgntk_nt_compat.ad", _src_ad, ad_extra)

    if "debug_info" in inspect.signature(_lu.wrap_init).parameters:
        def wrap_init(f, params=None, *, debug_info=None):
            if debug_info is None:
                debug_info = _api_util.debug_info("neural_tangents", f, (), {})
            return _lu.wrap_init(f, params, debug_info=debug_info)
        nt_empirical.lu = _proxy_module("sgntk_nt_compat.lu", _lu,
                                        {"wrap_init": wrap_init})

    if not hasattr(_src_core.Primitive, "map_primitive"):
        _src_core.Primitive.map_primitive = False


def import_neural_tangents():
    """Import and return ``neural_tangents`` after installing the compatibility shims.

    Idempotent and thread-safe (double-checked under a lock).  Raises
    :class:`ImportError` with the install command if neural-tangents or frozendict is
    not installed.
    """
    global _NT
    if _NT is not None:
        return _NT
    with _LOCK:
        if _NT is not None:
            return _NT
        if not available():
            raise ImportError(
                "neural-tangents is not installed; install it (without its TensorFlow "
                f"pin) with:  {INSTALL_HINT}")
        if "neural_tangents" not in sys.modules:
            sys.modules.setdefault("neural_tangents.experimental", _experimental_stub())
            nt = _import_with_shims()
        else:  # already imported (e.g. on an old JAX where it imports natively)
            nt = sys.modules["neural_tangents"]
        _install_runtime_shims(importlib.import_module("neural_tangents._src.empirical"))
        _NT = nt
        return nt
