"""Convert surrogate gradients of snnTorch, SpikingJelly, Norse and stork to :class:`Surrogate`.

The four libraries name and parameterise their surrogates differently: a parameter called
``alpha``/``slope``/``k``/``beta`` is sometimes an inverse width at fixed peak (snnTorch
``fast_sigmoid``), sometimes an inverse width at fixed *area* (SpikingJelly ``ATan``, peak
``alpha/2``), sometimes a pure scale (SpikingJelly ``SuperSpike``), and Norse 1.1 ignores its
``alpha`` for ``super`` altogether. Each ``from_<library>(name, **params)`` below returns the
:class:`~sgntk.surrogates.Surrogate` whose ``derivative(x)`` equals that library's backward-pass
derivative ``dS/dx`` (same ``x = membrane - threshold``), up to floating-point rounding;
omitted parameters take the library's defaults. Formulas were read from the released sources
(snnTorch 1.0.0 ``snntorch/surrogate.py``; SpikingJelly 2.0.0
``spikingjelly/activation_based/surrogate.py``; Norse 1.1.0 (and 1.0.0)
``norse/torch/functional/{threshold,superspike}.py``; stork ``stork/activations.py`` from
github.com/fmi-basel/stork) and are checked in ``tests/test_conversions.py``, against the
libraries' own autograd where they are installed.

Not every library surrogate is a symmetric bump ``gamma g(beta x)``: those that are not
(sign-changing, shifted, with a constant floor, batch-normalised, ...) are listed in
:data:`CONVERSION_TABLE` with ``shape=None`` and the reason; converting them raises ValueError.

Spike conventions also differ: snnTorch, Norse and stork spike for ``x > 0`` (as
:func:`sgntk.surrogates.heaviside`), SpikingJelly for ``x >= 0``; this only matters for the
forward pass at ``x == 0`` exactly.

>>> from_snntorch("atan")          # snnTorch's default spike_grad, alpha = 2
Surrogate(shape='cauchy', dampening=1.0, sharpness=1.0, tail=2.0)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

from . import surrogates as _sg

__all__ = [
    "Conversion",
    "CONVERSION_TABLE",
    "LIBRARIES",
    "from_snntorch",
    "from_spikingjelly",
    "from_norse",
    "from_stork",
    "convert",
    "conversion_table_markdown",
]

_SQRT_PI = math.sqrt(math.pi)


@dataclasses.dataclass(frozen=True)
class Conversion:
    """One row of :data:`CONVERSION_TABLE`.

    Attributes:
      library: ``"snntorch"``, ``"spikingjelly"``, ``"norse"`` or ``"stork"``.
      name: the library's name of the surrogate (function, class or method string).
      formula: the library's backward derivative ``dS/dx``, in its own parameters.
      defaults: the library's default parameter values.
      shape: our shape (one of :data:`sgntk.surrogates.SHAPES`), or None if not representable.
      dampening, sharpness, tail: our parameters as formulas in the library's parameters
        (``tail`` only for ``q_pseudo_spike``).
      spike: the library's forward spike convention.
      note: caveats; for ``shape=None`` the reason it does not map.
    """

    library: str
    name: str
    formula: str
    defaults: dict
    shape: str | None
    dampening: str
    sharpness: str
    tail: str | None
    spike: str
    note: str = ""
    mapper: Callable | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def representable(self) -> bool:
        return self.shape is not None


def _row(library, name, formula, defaults, shape, dampening, sharpness, mapper, spike,
         note="", tail=None):
    return Conversion(library, name, formula, dict(defaults), shape, dampening, sharpness,
                      tail, spike, note, mapper)


def _nomap(library, name, formula, defaults, spike, reason):
    return Conversion(library, name, formula, dict(defaults), None, "-", "-", None, spike,
                      reason, None)


_GT = "S = [x > 0]"
_GE = "S = [x >= 0]"

# mapper: params dict -> (shape, dampening, sharpness, tail or None)
_SNNTORCH = (
    _row("snntorch", "fast_sigmoid", "1 / (slope |x| + 1)^2", {"slope": 25},
         "fast_sigmoid", "1", "slope / 2",
         lambda p: ("fast_sigmoid", 1.0, p["slope"] / 2, None), _GT,
         "SuperSpike; fixed peak 1, area 2/slope"),
    _row("snntorch", "atan", "(alpha/2) / (1 + (pi alpha x / 2)^2)", {"alpha": 2.0},
         "cauchy", "alpha / 2", "alpha / 2",
         lambda p: ("cauchy", p["alpha"] / 2, p["alpha"] / 2, None), _GT,
         "default spike_grad of snnTorch neurons; fixed area 1"),
    _row("snntorch", "sigmoid", "slope e^(-slope x) / (e^(-slope x) + 1)^2", {"slope": 25},
         "sigmoid", "slope / 4", "slope / 4",
         lambda p: ("sigmoid", p["slope"] / 4, p["slope"] / 4, None), _GT,
         "fixed area 1; their formula overflows to NaN for slope x < -710 (ours gives ~0)"),
    _row("snntorch", "straight_through_estimator", "1", {}, "straight_through", "1", "(any)",
         lambda p: ("straight_through", 1.0, 1.0, None), _GT),
    _nomap("snntorch", "triangular", "threshold for x < 0, -threshold for x >= 0",
           {"threshold": 1}, _GT,
           "sign-changing (the derivative of a triangle, not a triangle): no bump g(beta x)"),
    _nomap("snntorch", "spike_rate_escape", "slope exp(-beta |x - 1|)",
           {"beta": 1, "slope": 25}, _GT,
           "centred at x = 1, not at the threshold x = 0 (a shifted exponential)"),
    _nomap("snntorch", "heaviside", "[x > 0] (backward = grad * spike)", {}, _GT,
           "a step, not a bump: not integrable"),
    _nomap("snntorch", "SFS", "[x > B] / (slope |x| + 1)^2", {"slope": 25, "B": 1}, _GT,
           "truncated below B: not symmetric"),
    _nomap("snntorch", "SSO", "1 for x > 0, (U[-0.5, 0.5) + mean) variance otherwise",
           {"mean": 0, "variance": 0.2}, _GT, "stochastic"),
)

_SPIKINGJELLY = (
    _row("spikingjelly", "Sigmoid", "alpha sig(alpha x) (1 - sig(alpha x))", {"alpha": 4.0},
         "sigmoid", "alpha / 4", "alpha / 4",
         lambda p: ("sigmoid", p["alpha"] / 4, p["alpha"] / 4, None), _GE,
         "default surrogate of SpikingJelly neurons; fixed area 1"),
    _row("spikingjelly", "ATan", "(alpha/2) / (1 + (pi alpha x / 2)^2)", {"alpha": 2.0},
         "cauchy", "alpha / 2", "alpha / 2",
         lambda p: ("cauchy", p["alpha"] / 2, p["alpha"] / 2, None), _GE, "fixed area 1"),
    _row("spikingjelly", "PiecewiseQuadratic", "max(alpha - alpha^2 |x|, 0)", {"alpha": 1.0},
         "triangular", "alpha", "alpha",
         lambda p: ("triangular", p["alpha"], p["alpha"], None), _GE, "fixed area 1"),
    _row("spikingjelly", "PiecewiseExp", "(alpha/2) exp(-alpha |x|)", {"alpha": 1.0},
         "exponential", "alpha / 2", "alpha / 2",
         lambda p: ("exponential", p["alpha"] / 2, p["alpha"] / 2, None), _GE, "fixed area 1"),
    _row("spikingjelly", "SoftSign", "alpha / (2 (1 + |alpha x|)^2)", {"alpha": 2.0},
         "fast_sigmoid", "alpha / 2", "alpha / 2",
         lambda p: ("fast_sigmoid", p["alpha"] / 2, p["alpha"] / 2, None), _GE,
         "fixed area 1"),
    _row("spikingjelly", "SuperSpike", "alpha / (1 + |x|)^2", {"alpha": 1.0},
         "fast_sigmoid", "alpha", "1 / 2",
         lambda p: ("fast_sigmoid", p["alpha"], 0.5, None), _GE,
         "alpha is a pure scale (width fixed at 1)"),
    _row("spikingjelly", "Erf", "(alpha / sqrt(pi)) exp(-alpha^2 x^2)", {"alpha": 2.0},
         "gaussian", "alpha / sqrt(pi)", "alpha / sqrt(pi)",
         lambda p: ("gaussian", p["alpha"] / _SQRT_PI, p["alpha"] / _SQRT_PI, None), _GE,
         "fixed area 1; equivalently erf with dampening alpha/2, sharpness alpha"),
    _row("spikingjelly", "QPseudoSpike", "(1 + 2 |x| / (alpha - 1))^(-alpha)", {"alpha": 2.0},
         "q_pseudo_spike", "1", "1",
         lambda p: ("q_pseudo_spike", 1.0, 1.0, p["alpha"]), _GE,
         "alpha is the tail fatness q > 1; peak 1, area 1", tail="alpha"),
    _row("spikingjelly", "Rect", "alpha [|x| < 0.5 / alpha]", {"alpha": 1.0},
         "rectangular", "alpha", "alpha",
         lambda p: ("rectangular", p["alpha"], p["alpha"], None), _GE,
         "fixed area 1 (boundary points |x| = 0.5/alpha may round either way)"),
    _row("spikingjelly", "PiecewiseLeakyReLU", "1/(2w) for |x| < w, c otherwise",
         {"w": 1.0, "c": 0.01}, "rectangular", "1 / (2 w)", "1 / (2 w)",
         lambda p: _plrelu(p), _GE,
         "only c = 0 maps (the default c = 0.01 is a non-integrable floor): pass c=0"),
    _row("spikingjelly", "DeterministicPass", "1", {}, "straight_through", "1", "(any)",
         lambda p: ("straight_through", 1.0, 1.0, None), _GE),
    _nomap("spikingjelly", "NonzeroSignLogAbs", "1 / (1/alpha + |x|)", {"alpha": 1.0}, _GE,
           "tails ~ 1/|x|: not integrable"),
    _nomap("spikingjelly", "S2NN", "alpha sig(alpha x)(1 - sig(alpha x)) for x < 0, "
           "beta / (x + 1) for x >= 0", {"alpha": 4.0, "beta": 1.0}, _GE, "asymmetric"),
    _nomap("spikingjelly", "LeakyKReLU", "k for x >= 0, leak otherwise",
           {"leak": 0.0, "k": 1.0}, _GE, "a step, not a bump"),
)


def _plrelu(p):
    if p["c"] != 0:
        raise ValueError(
            "spikingjelly 'PiecewiseLeakyReLU' maps to a Surrogate only with c=0 (its "
            f"derivative is c outside |x| < w, a non-integrable floor); got c={p['c']!r}")
    return ("rectangular", 1.0 / (2 * p["w"]), 1.0 / (2 * p["w"]), None)


def _norse_super(p):
    version = tuple(int(v) for v in str(p["version"]).split(".")[:2] if v.isdigit())
    if version < (1, 1):
        return ("fast_sigmoid", 1.0, p["alpha"] / 2, None)
    return ("fast_sigmoid", 1.0, 0.5, None)


_NORSE_DEFAULT = {"alpha": 100.0}
_NORSE_NOTE = "alpha default = LIFParameters.alpha = 100 (passed by threshold())"
_NORSE = (
    _row("norse", "super", "1 / (|x| + 1)^2  (norse <= 1.0: 1 / (alpha |x| + 1)^2)",
         {"alpha": 100.0, "version": "1.1"}, "fast_sigmoid", "1",
         "1 / 2  (norse <= 1.0: alpha / 2)", _norse_super, _GT,
         "norse 1.1.0 ignores alpha in SuperSpike.backward; pass version='1.0' for the "
         "older 1/(alpha|x|+1)^2. LIFParameters default method"),
    _row("norse", "triangle", "alpha max(1 - |x|, 0)", _NORSE_DEFAULT,
         "triangular", "alpha", "1",
         lambda p: ("triangular", p["alpha"], 1.0, None), _GT,
         "alpha is a pure scale; " + _NORSE_NOTE + " (triangle_fn's own default is 0.3)"),
    _row("norse", "tanh", "1 - tanh(alpha x)^2", _NORSE_DEFAULT, "sigmoid", "1", "alpha / 2",
         lambda p: ("sigmoid", 1.0, p["alpha"] / 2, None), _GT,
         "HeaviTanh; peak 1, area 2/alpha; " + _NORSE_NOTE),
    _row("norse", "logistic", "1 - tanh(k x)^2", {"k": 100.0}, "sigmoid", "1", "k / 2",
         lambda p: ("sigmoid", 1.0, p["k"] / 2, None),
         "S ~ Bernoulli(1/2 + tanh(k x)/2)",
         "logistic_fn(x, k) (stochastic forward; no default k in norse: 100 as for alpha)"),
    _row("norse", "heavi_erfc", "(2 / sqrt(pi)) exp(-(alpha x)^2)", _NORSE_DEFAULT,
         "erf", "1", "alpha",
         lambda p: ("erf", 1.0, p["alpha"], None), _GT,
         "HeaviErfc; peak 2/sqrt(pi), area 2/alpha; norse computes sqrt(pi) in float32 "
         "(relative difference 3e-8); " + _NORSE_NOTE),
    _nomap("norse", "circ", "alpha^3 / (alpha^2 + x^2)^(3/2)", _NORSE_DEFAULT, _GT,
           "HeaviCirc: (1 + (x/alpha)^2)^(-3/2) is not one of our profiles"),
    _nomap("norse", "heaviside", "0 (torch.gt has no gradient)", {}, _GT,
           "no surrogate: the gradient is zero"),
)

_STORK = (
    _row("stork", "SuperSpike", "1 / (beta |x| + 1)^2", {"beta": 20.0},
         "fast_sigmoid", "1", "beta / 2",
         lambda p: ("fast_sigmoid", 1.0, p["beta"] / 2, None), _GT,
         "set via the class attribute SuperSpike.beta; peak 1, area 2/beta"),
    _row("stork", "SuperSpike_asymptote", "beta / (beta |x| + 1)^2", {"beta": 100.0},
         "fast_sigmoid", "beta", "beta / 2",
         lambda p: ("fast_sigmoid", p["beta"], p["beta"] / 2, None), _GT, "area 2"),
    _row("stork", "SuperSpike_rescaled", "(beta + 1)^2 / (beta |x| + 1)^2", {"beta": 20.0},
         "fast_sigmoid", "(beta + 1)^2", "beta / 2",
         lambda p: ("fast_sigmoid", (p["beta"] + 1) ** 2, p["beta"] / 2, None), _GT),
    _row("stork", "SigmoidSpike", "sig(beta x) (1 - sig(beta x))", {"beta": 100.0},
         "sigmoid", "1 / 4", "beta / 4",
         lambda p: ("sigmoid", 0.25, p["beta"] / 4, None), _GT,
         "peak 1/4, area 1/beta (older stork releases)"),
    _row("stork", "EsserSpike", "max(0, 1 - |beta x|)", {"beta": 1.0},
         "triangular", "1", "beta",
         lambda p: ("triangular", 1.0, p["beta"], None), _GT),
    _row("stork", "CustomSpike:SuperSpike", "1 / (beta |x| + 1)^2", {"beta": 10.0},
         "fast_sigmoid", "1", "beta / 2",
         lambda p: ("fast_sigmoid", 1.0, p["beta"] / 2, None), _GT,
         "CustomSpike.surrogate_type = 'SuperSpike', beta in CustomSpike.surrogate_params "
         "(forward per escape_noise_type, default 'step')"),
    _row("stork", "CustomSpike:sigmoid", "beta sig(beta x) (1 - sig(beta x))", {"beta": 10.0},
         "sigmoid", "beta / 4", "beta / 4",
         lambda p: ("sigmoid", p["beta"] / 4, p["beta"] / 4, None), _GT, "area 1"),
    _row("stork", "CustomSpike:scaled_sigmoid", "sig(beta x) (1 - sig(beta x))",
         {"beta": 10.0}, "sigmoid", "1 / 4", "beta / 4",
         lambda p: ("sigmoid", 0.25, p["beta"] / 4, None), _GT, "area 1/beta"),
    _nomap("stork", "TanhSpike", "1 + (1 - tanh(beta x)^2)", {"beta": 100.0}, _GT,
           "constant floor 1: not integrable"),
    _nomap("stork", "HardTanhSpike", "1 + hardtanh(beta x)", {"beta": 100.0}, _GT,
           "monotone, not a bump"),
    _nomap("stork", "SuperSpike_MemClamp", "1 / (beta relu(-x) + 1)^2", {"beta": 20.0}, _GT,
           "equals 1 for all x > 0: not a bump"),
    _nomap("stork", "SuperSpike_norm", "SuperSpike / (xi + ||mean_batch SuperSpike||)",
           {"beta": 100.0, "xi": 0.01}, _GT, "normalised by the batch: not elementwise"),
    _nomap("stork", "CustomSpike:exponential", "(p0 / delta_u) exp(x / delta_u)",
           {"p0": 0.01, "delta_u": 0.133}, _GT, "monotone, not a bump"),
)

#: One :class:`Conversion` per (library, name); ``shape=None`` rows do not map.
CONVERSION_TABLE: tuple[Conversion, ...] = _SNNTORCH + _SPIKINGJELLY + _NORSE + _STORK
LIBRARIES: tuple[str, ...] = ("snntorch", "spikingjelly", "norse", "stork")


def _key(name: str) -> str:
    return str(name).lower().replace("-", "_").replace(".", ":")


_INDEX = {(row.library, _key(row.name)): row for row in CONVERSION_TABLE}


def lookup(library: str, name: str) -> Conversion:
    """The :data:`CONVERSION_TABLE` row of ``(library, name)`` (name case-insensitive)."""
    lib = str(library).lower()
    if lib not in LIBRARIES:
        raise ValueError(f"unknown library {library!r}; supported: {', '.join(LIBRARIES)}")
    row = _INDEX.get((lib, _key(name)))
    if row is None:
        ok = [r.name for r in CONVERSION_TABLE if r.library == lib and r.representable]
        no = [r.name for r in CONVERSION_TABLE if r.library == lib and not r.representable]
        raise ValueError(f"unknown {lib} surrogate {name!r}; supported: {', '.join(ok)}"
                         f" (known but not representable: {', '.join(no)})")
    return row


def convert(library: str, name: str, **params) -> _sg.Surrogate:
    """The :class:`Surrogate` equal to ``library``'s surrogate ``name`` with ``params``.

    Raises:
      ValueError: unknown library or name (supported names listed), unknown parameter, a
        surrogate that is not a bump ``gamma g(beta x)`` (reason given), or parameters that
        give sharpness/dampening <= 0 or tail <= 1.
    """
    row = lookup(library, name)
    if not row.representable:
        ok = [r.name for r in CONVERSION_TABLE if r.library == row.library and r.representable]
        raise ValueError(f"{row.library} {row.name!r} (dS/dx = {row.formula}) has no "
                         f"sgntk Surrogate: {row.note}. Supported: {', '.join(ok)}")
    unknown = set(params) - set(row.defaults)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {row.library} "
                         f"{row.name!r}; accepted: {sorted(row.defaults) or 'none'}")
    shape, dampening, sharpness, tail = row.mapper({**row.defaults, **params})
    return _sg.get(shape, dampening=dampening, sharpness=sharpness, tail=tail)


def from_snntorch(name: str, **params) -> _sg.Surrogate:
    """snnTorch ``snntorch.surrogate.<name>(**params)`` (e.g. ``"atan"``, ``alpha=2``)."""
    return convert("snntorch", name, **params)


def from_spikingjelly(name: str, **params) -> _sg.Surrogate:
    """SpikingJelly ``activation_based.surrogate.<Name>(**params)`` (e.g. ``"Sigmoid"``)."""
    return convert("spikingjelly", name, **params)


def from_norse(name: str, **params) -> _sg.Surrogate:
    """Norse ``threshold(x, method=name, alpha)`` (``"super"``, ``"triangle"``, ...).

    ``version`` (``"super"`` only, default ``"1.1"``): Norse 1.1 ignores ``alpha`` in
    SuperSpike's backward pass; ``version="1.0"`` gives the older ``1/(alpha|x|+1)^2``.
    """
    return convert("norse", name, **params)


def from_stork(name: str, **params) -> _sg.Surrogate:
    """stork ``stork.activations.<Name>`` with its class attribute ``beta``.

    ``CustomSpike`` is addressed as ``"CustomSpike:<surrogate_type>"``.
    """
    return convert("stork", name, **params)


def _fmt_defaults(d):
    return ", ".join(f"{k}={v}" for k, v in d.items()) or "-"


def conversion_table_markdown(library: str | None = None, *,
                              include_unrepresentable: bool = True) -> str:
    """Render :data:`CONVERSION_TABLE` (or one library's rows) as a Markdown table."""
    head = ("| library | name | their dS/dx | their defaults | sgntk shape | dampening "
            "| sharpness | spike | notes |")
    lines = [head, "|" + "---|" * 9]
    for r in CONVERSION_TABLE:
        if library is not None and r.library != str(library).lower():
            continue
        if not r.representable and not include_unrepresentable:
            continue
        shape = f"`{r.shape}`" if r.shape else "*(none)*"
        if r.tail is not None:
            shape += f" (tail = {r.tail})"
        cells = [r.library, f"`{r.name}`", f"`{r.formula}`", _fmt_defaults(r.defaults),
                 shape, r.dampening, r.sharpness, f"`{r.spike}`", r.note]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
