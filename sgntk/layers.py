"""One network definition, stax-style: every layer is ``(init, apply, kernel)``.

Each layer is a small NamedTuple of pure functions (after neural-tangents' ``stax``):

* ``init(key, in_dim) -> (out_dim, params)`` -- all weights and biases iid N(0, 1);
* ``apply(params, x)`` -- the finite network's forward pass. Spikes are the custom-JVP
  functions :func:`sgntk.surrogates.sign`/:func:`~sgntk.surrogates.heaviside` (and custom-JVP
  twins for ``erf`` and smooth callables), so **autodiff of apply is surrogate-gradient
  learning**; an activation built with ``surrogate=None`` is differentiated truly instead;
* ``kernel(k: Kernel) -> Kernel`` -- the infinite-width map of the :class:`Kernel` pytree.

Network (NTK parameterisation; Eilers, Memmesheimer & Goedeke, NeurIPS 2024, Sec. 2)::

    Dense:       h = sigma_w / sqrt(n) W a + sigma_b b,        W, b iid N(0, 1), n = dim of a
    activation:  a = phi(h)    (backward pass: psi'(h) in place of phi'(h))

Kernel maps (paper Eq. 7-9 and Thm. 3.3), with ``(u, v) ~ N(0, [[var1, nngp], [nngp, var2]])``::

    Dense:       S -> sigma_w^2 S + sigma_b^2           for S in (nngp, var1, var2)
                 K -> sigma_w^2 K + S_new               for K in (ntk, sgntk, sg_gram)
    activation:  nngp -> E[phi(u) phi(v)],  var1 -> E[phi(u)^2],  var2 -> E[phi(v)^2]
                 ntk -> ntk E[phi'(u) phi'(v)]           (naive NTK, J J^T)
                 sgntk -> sgntk E[phi'(u) psi'(v)]       (SG-NTK I = J(x) J~(x')^T)
                 sg_gram -> sg_gram E[psi'(u) psi'(v)]   (J~ J~^T)

Starting from :func:`input_kernel` (``nngp = <x, x'>/n_0``, ``ntk = sgntk = sg_gram = 0``),
``serial(Dense, phi, Dense, phi, ..., Dense)`` gives exactly the recursion of
:mod:`sgntk.kernels`: ``S_1 = sigma_w^2 <x, x'>/n_0 + sigma_b^2``, ``K_1 = S_1`` and
``K_{l+1} = S_{l+1} + K_l sigma_w^2 E[...]``. The SG-NTK keeps its orientation: the true
derivative on the ``x1`` (row, evaluation) side, the surrogate on the ``x2`` (column,
training) side. The expectations are those of :mod:`sgntk.expectations`.

Every numeric hyper-parameter (``sigma_w``, ``sigma_b``, ``sharpness``, the surrogate's leaves)
is captured as given: build the layers *inside* the function you ``jit``/``vmap``/``grad``
(as :func:`sgntk.kernels.mlp_kernel_fn` does) and they are traced array leaves. Python
numbers are validated (``ValueError`` naming the parameter); tracers pass through.

Checked in ``tests/test_layers.py``: every layer's kernel map against Monte Carlo over wide
finite networks built from the same layers' ``init``/``apply``; ``apply``'s autodiff against a
hand-written psi' backward pass; :func:`mlp` against the paper's check values.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from . import expectations as E
from . import surrogates as S
from ._util import check_int, check_positive

__all__ = ["KERNELS", "Kernel", "input_kernel", "ExpectationMaps", "DenseLayer",
           "ActivationLayer", "Network", "MLPParams", "Dense", "Sign", "Step", "Erf",
           "Elementwise", "activation_layer", "serial", "mlp", "mlp_layer_params"]

KERNELS = ("nngp", "ntk", "sgntk", "sg_gram")
_GRADIENT_KERNELS = ("ntk", "sgntk", "sg_gram")


# ------------------------------------------------------------------------------ kernel pytree
class Kernel(NamedTuple):
    """Kernels between ``x1`` (n1 rows) and ``x2`` (n2 rows) at one layer; a pytree.

    nngp: S(x, x') ``(n1, n2)``, the covariance of the layer's outputs.
    ntk: J(x) J(x')^T, sgntk: J(x) J~(x')^T, sg_gram: J~(x) J~(x')^T ``(n1, n2)``, or None
      when not tracked (layers leave None alone).
    var1: S(x, x) ``(n1, 1)``; var2: S(x', x') ``(1, n2)`` (the diagonals the expectations need;
      0-d when every input has the same variance, as after ``sign``/``step``, which lets
      :mod:`sgntk.expectations` use its scalar-variance fast paths).

    Layers update it by replacement (``k._replace(...)``).
    """

    nngp: jax.Array
    ntk: Optional[jax.Array] = None
    sgntk: Optional[jax.Array] = None
    sg_gram: Optional[jax.Array] = None
    var1: Optional[jax.Array] = None
    var2: Optional[jax.Array] = None


def input_kernel(x1, x2=None, which=KERNELS) -> Kernel:
    """The kernel of the inputs: ``nngp = x1 x2^T / d``, ``var = |x|^2 / d`` and zero
    gradient kernels for those named in ``which`` (the others None). ``x: (n, d)``."""
    x2 = x1 if x2 is None else x2
    d = x1.shape[-1]
    nngp = x1 @ x2.T / d
    zero = jnp.zeros_like(nngp)
    grads = {k: (zero if k in which else None) for k in _GRADIENT_KERNELS}
    return Kernel(nngp=nngp, var1=jnp.sum(x1 * x1, -1)[:, None] / d,
                  var2=jnp.sum(x2 * x2, -1)[None, :] / d, **grads)


# ------------------------------------------------------------------------------ layer types
class DenseLayer(NamedTuple):
    """Fully connected layer in NTK parameterisation (:func:`Dense`).

    init, apply, kernel: the stax triple (module docstring).
    param_gram: ``(a1, a2) -> sigma_w^2 a1 a2^T / n + sigma_b^2``, the inner product of the
      gradients of one output unit with respect to this layer's (W, b) at inputs a1 and a2
      (the structured empirical kernel, :func:`sgntk.empirical.network_empirical`).
    """

    init: Callable
    apply: Callable
    kernel: Callable
    param_gram: Callable


class ExpectationMaps(NamedTuple):
    """The Gaussian expectations of one activation, ``(u, v) ~ N(0, [[a, r], [r, b]])``.

    nngp(a, b, r) = E[phi(u) phi(v)]; second_moment(a) = E[phi(u)^2];
    ntk(a, b, r) = E[phi'(u) phi'(v)]; sgntk(a, b, r) = E[phi'(u) psi'(v)];
    sg_gram(a, b, r) = E[psi'(u) psi'(v)]  (psi' = phi' when the surrogate is None).
    """

    nngp: Callable
    second_moment: Callable
    ntk: Callable
    sgntk: Callable
    sg_gram: Callable


class ActivationLayer(NamedTuple):
    """Elementwise activation with a surrogate derivative (:func:`Sign`, :func:`Step`,
    :func:`Erf`, :func:`Elementwise`).

    init, apply, kernel: the stax triple; ``apply((), z)`` has the true forward value and,
      under autodiff, the derivative psi' (phi' if the surrogate is None).
    fn: ``z -> phi(z)`` whose autodiff derivative is the true phi' (0 for jumps).
    derivative: ``(z, jump_width=None) -> phi'(z)`` for finite networks; for jumps 0, or with
      ``jump_width = eps`` the smoothed Dirac ``c exp(-z^2 / (2 eps^2)) / sqrt(2 pi eps^2)``.
    surrogate_derivative: ``z -> psi'(z)`` (phi'(z) if the surrogate is None).
    maps: :class:`ExpectationMaps` behind ``kernel``.
    """

    init: Callable
    apply: Callable
    kernel: Callable
    fn: Callable
    derivative: Callable
    surrogate_derivative: Callable
    maps: ExpectationMaps


class Network(NamedTuple):
    """A composition of layers (:func:`serial`, :func:`mlp`): the stax triple and its layers."""

    init: Callable
    apply: Callable
    kernel: Callable
    layers: tuple


class MLPParams(NamedTuple):
    """Parameters of :func:`mlp`: ``weights[l]: (n_l, n_{l+1})``, ``biases[l]: (n_{l+1},)``."""

    weights: tuple
    biases: tuple


# ------------------------------------------------------------------------------ Dense
def _key_pair(key):
    """(weight key, bias key): a key is split in two; a stack of two keys is used as given."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if key.ndim == (1 if typed else 2):
        return key[0], key[1]
    kw, kb = jax.random.split(key)
    return kw, kb


def Dense(sigma_w=1.0, sigma_b=0.0, *, width: Optional[int] = None) -> DenseLayer:
    """``h = sigma_w / sqrt(n) W a + sigma_b b`` (NTK parameterisation), W, b iid N(0, 1).

    Args:
      sigma_w: weight scale > 0; sigma_b: bias scale >= 0 (array leaves; traced values pass).
      width: output dimension, needed by ``init`` only (kernels are width-independent).

    Kernel map: ``S -> sigma_w^2 S + sigma_b^2`` for nngp/var1/var2 and
    ``K -> sigma_w^2 K + S_new`` for ntk/sgntk/sg_gram (module docstring).
    ``init(key, in_dim)`` accepts a key (split into weight and bias keys) or a stack of two keys.
    """
    sigma_w = check_positive("sigma_w", sigma_w)
    sigma_b = check_positive("sigma_b", sigma_b, inclusive=True)
    if width is not None:
        width = check_int("width", width, minimum=1)

    def init(key, in_dim):
        if width is None:
            raise ValueError("Dense(width=None) has no finite width to initialise: pass width=")
        kw, kb = _key_pair(key)
        return width, (jax.random.normal(kw, (in_dim, width)), jax.random.normal(kb, (width,)))

    def apply(params, x):
        w, b = params
        return sigma_w / jnp.sqrt(x.shape[-1]) * x @ w + sigma_b * b

    def affine(s):
        return sigma_w**2 * s + sigma_b**2

    def kernel(k: Kernel) -> Kernel:
        nngp = affine(k.nngp)
        grads = {n: sigma_w**2 * getattr(k, n) + nngp
                 for n in _GRADIENT_KERNELS if getattr(k, n) is not None}
        return k._replace(nngp=nngp, var1=affine(k.var1), var2=affine(k.var2), **grads)

    def param_gram(a1, a2):
        return affine(a1 @ a2.T / a1.shape[-1])

    return DenseLayer(init, apply, kernel, param_gram)


# ------------------------------------------------------------------------------ activations
@jax.custom_jvp
def _erf_twin(z, sharpness, surrogate):
    """``erf(sharpness z)`` whose derivative (in z) is ``surrogate.derivative(z)``."""
    return jax.scipy.special.erf(sharpness * z)


@_erf_twin.defjvp
def _erf_twin_jvp(primals, tangents):
    z, sharpness, surrogate = primals
    return _erf_twin(z, sharpness, surrogate), surrogate.derivative(z) * tangents[0]


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _smooth_twin(fn, z, surrogate):
    """``fn(z)`` whose derivative (in z) is ``surrogate.derivative(z)``."""
    return fn(z)


@_smooth_twin.defjvp
def _smooth_twin_jvp(fn, primals, tangents):
    z, surrogate = primals
    return fn(z), surrogate.derivative(z) * tangents[0]


def _identity_init(key, in_dim):
    return in_dim, ()


def _activation(name, fn, derivative, twin, surrogate, sharpness=1.0) -> ActivationLayer:
    """Assemble an :class:`ActivationLayer` from phi (``fn``), phi' and the SGL twin.

    ``name`` selects the closed forms of :mod:`sgntk.expectations` (``"sign"``, ``"step"``,
    ``"erf"``) or is the callable integrated by quadrature.
    """
    sur = None if surrogate is None else S.get(surrogate)
    m = sharpness

    def nngp(a, b, r):
        return E.nngp_expectation(name, a, b, r, m)

    def second_moment(a):
        return E.second_moment(name, a, m)

    def ntk(a, b, r):
        return E.true_derivative_expectation(name, a, b, r, m)

    if sur is None:
        maps = ExpectationMaps(nngp, second_moment, ntk, ntk, ntk)
        psi = functools.partial(derivative, jump_width=None)

        def apply(params, z):
            return fn(z)
    else:
        def sgntk(a, b, r):
            return E.mixed_derivative_expectation(name, a, b, r, sur, m)

        def sg_gram(a, b, r):
            return E.surrogate_expectation(a, b, r, sur)

        maps = ExpectationMaps(nngp, second_moment, ntk, sgntk, sg_gram)
        psi = sur.derivative

        def apply(params, z):
            return twin(z, sur)

    def kernel(k: Kernel) -> Kernel:
        a, b, r = k.var1, k.var2, k.nngp
        grads = {n: getattr(k, n) * getattr(maps, n)(a, b, r)
                 for n in _GRADIENT_KERNELS if getattr(k, n) is not None}
        return k._replace(nngp=maps.nngp(a, b, r), var1=maps.second_moment(a),
                          var2=maps.second_moment(b), **grads)

    return ActivationLayer(_identity_init, apply, kernel, fn, derivative, psi, maps)


def _jump_derivative(c):
    def derivative(z, jump_width=None):
        if jump_width is None:
            return jnp.zeros_like(z)
        eps = jump_width
        return c * jnp.exp(-0.5 * (z / eps) ** 2) / (jnp.sqrt(2 * jnp.pi) * eps)
    return derivative


def _step(z):
    return jnp.where(z > 0, 1.0, 0.0).astype(jnp.result_type(z, float))


def Sign(surrogate="erf") -> ActivationLayer:
    """``sign(z)`` (``sign(0) = 0``, jump 2) with surrogate derivative psi' (default erf', the
    paper's; ``None``: the true derivative, 0 almost everywhere).

    Kernel closed forms (:mod:`sgntk.expectations`): ``E[sgn u sgn v] = (2/pi) arcsin(rho)``,
    ``E[2 delta(u) psi'(v)] = 2 / sqrt(2 pi a) E_{N(0, b - r^2/a)}[psi']``.
    """
    return _activation("sign", jnp.sign, _jump_derivative(E.JUMPS["sign"]), S.sign, surrogate)


def Step(surrogate="fast_sigmoid") -> ActivationLayer:
    """Heaviside ``[z > 0]`` (jump 1) with surrogate derivative psi' (``None``: true, 0 a.e.).

    Kernel closed forms: ``E[Theta(u) Theta(v)] = 1/4 + arcsin(rho) / (2 pi)``,
    ``E[delta(u) psi'(v)] = 1 / sqrt(2 pi a) E_{N(0, b - r^2/a)}[psi']``.
    """
    return _activation("step", _step, _jump_derivative(E.JUMPS["step"]), S.heaviside,
                       surrogate)


def Erf(sharpness=1.0, surrogate="erf") -> ActivationLayer:
    """``erf(sharpness z)`` (the paper's erf_m, ``m = sharpness``; -> sign as m -> inf) with
    surrogate derivative psi' (default erf' of sharpness 1, the paper's; ``None``: the true
    ``erf_m'(z) = 2 m / sqrt(pi) exp(-m^2 z^2)``, the naive NTK's).

    With ``surrogate=sgntk.surrogates.get("erf", sharpness=m, dampening=m)`` (= erf_m') the
    SG-NTK equals the NTK (``tests/test_kernels.py``, against neural-tangents' ``stax.Erf``).
    """
    m = check_positive("sharpness", sharpness)

    def fn(z):
        return jax.scipy.special.erf(m * z)

    def derivative(z, jump_width=None):
        return 2.0 * m / jnp.sqrt(jnp.pi) * jnp.exp(-(m * z) ** 2)

    def twin(z, sur):
        return _erf_twin(z, m, sur)

    return _activation("erf", fn, derivative, twin, surrogate, m)


def Elementwise(fn: Callable, surrogate=None) -> ActivationLayer:
    """A smooth activation ``fn`` (scalar -> scalar, JAX-differentiable) with surrogate psi'.

    Kernels by quadrature (:mod:`sgntk.expectations`: 2-D trapezoid rule in standardised
    coordinates; accurate when fn varies on scales above ~0.3 pre-activation std). ``None``
    (default): the true derivative ``jax.grad(fn)``.
    """
    if not callable(fn):
        raise ValueError(f"fn must be a callable phi(z); got {fn!r}")
    grad = jnp.vectorize(jax.grad(fn))

    def derivative(z, jump_width=None):
        return grad(z)

    return _activation(fn, fn, derivative, functools.partial(_smooth_twin, fn), surrogate)


def activation_layer(activation, surrogate=None, sharpness=1.0) -> ActivationLayer:
    """The layer for an activation name (``"sign"``, ``"step"``, ``"erf"`` with
    ``erf(sharpness z)``), a smooth callable (:func:`Elementwise`) or an
    :class:`ActivationLayer` (returned as is)."""
    if isinstance(activation, ActivationLayer):
        return activation
    activation = E.check_activation(activation)
    if activation == "sign":
        return Sign(surrogate)
    if activation == "step":
        return Step(surrogate)
    if activation == "erf":
        return Erf(sharpness, surrogate)
    return Elementwise(activation, surrogate)


# ------------------------------------------------------------------------------ composition
def serial(*layers) -> Network:
    """Compose layers: ``init`` threads the dimension (one key per layer, split from ``key``),
    ``apply`` and ``kernel`` apply the layers in order; params are a tuple, one entry per layer."""
    for i, layer in enumerate(layers):
        if not all(callable(getattr(layer, f, None)) for f in ("init", "apply", "kernel")):
            raise ValueError(f"layers[{i}] is not a layer with init/apply/kernel; got {layer!r}")

    def init(key, in_dim):
        params = []
        for k, layer in zip(jax.random.split(key, len(layers)), layers):
            in_dim, p = layer.init(k, in_dim)
            params.append(p)
        return in_dim, tuple(params)

    def apply(params, x):
        for layer, p in zip(layers, params):
            x = layer.apply(p, x)
        return x

    def kernel(k: Kernel) -> Kernel:
        for layer in layers:
            k = layer.kernel(k)
        return k

    return Network(init, apply, kernel, tuple(layers))


def mlp(*, depth: int, activation="sign", surrogate=None, sigma_w=1.0, sigma_b=0.0,
        sharpness=1.0, width: Optional[int] = None) -> Network:
    """The MLP of the paper: ``serial(Dense, phi, Dense, phi, ..., Dense(width=1))``.

    ``depth`` hidden layers of ``width`` units (``width`` only for ``init``), scalar output;
    ``activation`` as :func:`activation_layer` (``sharpness`` of ``erf``), ``surrogate`` its psi'
    (None: true derivatives). ``init(key, in_dim) -> (1, MLPParams)`` draws layer ``l``'s
    weights from ``split(key, 2 (depth + 1))[2 l]`` and biases from ``[2 l + 1]``;
    ``apply(params: MLPParams, x: (n, d)) -> (n, 1)``.
    """
    depth = check_int("depth", depth, minimum=0)
    act = activation_layer(activation, surrogate, sharpness)
    hidden = Dense(sigma_w, sigma_b, width=width)
    body = serial(*([hidden, act] * depth), Dense(sigma_w, sigma_b, width=1))

    def init(key, in_dim):
        keys = jax.random.split(key, 2 * (depth + 1))
        ws, bs = [], []
        for i, layer in enumerate(body.layers[::2]):
            in_dim, (w, b) = layer.init(keys[2 * i:2 * i + 2], in_dim)
            ws.append(w)
            bs.append(b)
        return in_dim, MLPParams(tuple(ws), tuple(bs))

    def apply(params: MLPParams, x):
        return body.apply(mlp_layer_params(params), x)

    return Network(init, apply, body.kernel, body.layers)


def mlp_layer_params(params: MLPParams) -> tuple:
    """:class:`MLPParams` as the per-layer params of :func:`mlp`'s layers (``()`` for activations)."""
    out = []
    for w, b in zip(params.weights, params.biases):
        out += [(w, b), ()]
    return tuple(out[:-1])
