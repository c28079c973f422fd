"""Scoped float64: the library's entry points run under ``jax.enable_x64(True)``.

sgntk never flips the global ``jax_enable_x64`` flag at import time; each public kernel
entry point is wrapped with :func:`float64`, so a user program that works in float32
is left as it was once the call returns (the returned arrays stay float64).
"""
from __future__ import annotations

import functools

import jax


def float64(fn):
    """Decorator: run ``fn`` with 64-bit JAX types enabled, restoring the flag after."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapped
